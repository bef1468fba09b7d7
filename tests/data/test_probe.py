import numpy as np

from rnncap.data.probe import linear_probe, probe_targets, ridge_classifier


def obj(shape, colour, size, row, col):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col}


def test_probe_targets_by_hand():
    truths = [[obj("circle", "red", "small", 0, 0)],
              [obj("square", "blue", "large", 0, 0), obj("triangle", "green", "small", 2, 2)]]
    t = probe_targets(truths)
    np.testing.assert_array_equal(t["count"][0][0], [1, 2])
    np.testing.assert_array_equal(t["occupied"][0][0], [1, 1])   # cell (0, 0)
    np.testing.assert_array_equal(t["occupied"][8][0], [0, 1])   # cell (2, 2)
    np.testing.assert_array_equal(t["occupied"][4][0], [0, 0])
    labels, mask = t["colour"][8]
    np.testing.assert_array_equal(mask, [False, True])
    assert labels[1] == 1  # COLOURS order: red, green, ...
    np.testing.assert_array_equal(t["shape"][0][0], [0, 1])     # circle, square


def test_ridge_classifier_separates_separable_data():
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.standard_normal((300, 3))
    pred = ridge_classifier(x[:200], y[:200], x[200:])
    assert (pred == y[200:]).mean() > 0.95
    # and cannot do better than chance on labels independent of x
    noise = rng.integers(0, 3, 300)
    assert (ridge_classifier(x[:200], noise[:200], x[200:]) == noise[200:]).mean() < 0.5


def test_linear_probe_reads_planted_features():
    """Features that encode the truth exactly -> perfect probes; noise -> near chance."""
    rng = np.random.default_rng(1)
    shapes, colours, sizes = ["circle", "square", "triangle"], ["red", "green", "blue"], ["small", "large"]

    def scene():
        cells = rng.choice(9, rng.integers(1, 3), replace=False)
        return [obj(shapes[rng.integers(3)], colours[rng.integers(3)], sizes[rng.integers(2)],
                    c // 3, c % 3) for c in cells]

    def planted(t):
        f = np.zeros(9 * 9)
        for o in t:
            c = o["row"] * 3 + o["col"]
            f[c * 9 + 0] = 1
            f[c * 9 + 1 + shapes.index(o["shape"])] = 1
            f[c * 9 + 4 + colours.index(o["colour"])] = 1
            f[c * 9 + 7 + sizes.index(o["size"])] = 1
        return f

    tr = [scene() for _ in range(600)]
    te = [scene() for _ in range(200)]
    ftr = np.array([planted(t) for t in tr])
    fte = np.array([planted(t) for t in te])
    res = linear_probe(ftr, tr, fte, te, alpha=1e-3)
    for task in ("count", "occupied", "colour", "shape", "size"):
        assert res[task]["accuracy"] == 1.0, (task, res[task])
    noise = linear_probe(rng.standard_normal(ftr.shape), tr, rng.standard_normal(fte.shape), te)
    assert noise["shape"]["accuracy"] < 0.5  # chance for 3 shapes is ~1/3

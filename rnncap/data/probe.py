"""Linear probes: do the image features carry what the captions talk about?

A captioner can only say "a small red triangle in the top left corner" if
its image features let it tell colours, shapes, sizes and positions apart.
This module measures that directly on the shapes dataset: a ridge-regression
classifier (one-hot targets, closed-form, on standardised features) is fitted
on training features against the ground truth and scored on held-out images.

Tasks (accuracy on the held-out split):

- ``count``: how many objects the image holds;
- ``occupied``: for each of the 9 grid cells, whether an object is there
  (the position of every object);
- ``colour`` / ``shape`` / ``size``: for each grid cell that holds an object,
  that object's attribute (one classifier per cell, so the probe must also
  know *where* the attribute is, as a caption must).

The chance level of each task is reported next to it (the majority class).

This module does NOT know how features are computed, captions, or models.
"""

import numpy as np

from rnncap.data.shapes import COLOURS, SHAPES, SIZES

_ATTRS = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES)}


def probe_targets(truths):
    """Ground truth -> per-task labels.

    Args:
        truths: list of N object lists (``s_truth``).

    Returns:
        dict task -> list of (labels int (N,), mask bool (N,)) problems;
        ``count`` has one problem, the others one per grid cell.
    """
    N = len(truths)
    count = np.array([len(t) for t in truths])
    out = {"count": [(count, np.ones(N, bool))], "occupied": []}
    cells = {}
    for n, t in enumerate(truths):
        for o in t:
            cells[(n, o["row"] * 3 + o["col"])] = o
    for c in range(9):
        occ = np.array([(n, c) in cells for n in range(N)])
        out["occupied"].append((occ.astype(int), np.ones(N, bool)))
        for attr, values in _ATTRS.items():
            lab = np.array([values.index(cells[(n, c)][attr]) if occ[n] else -1 for n in range(N)])
            out.setdefault(attr, []).append((lab, occ))
    return out


def ridge_classifier(x_train, y_train, x_test, alpha=1.0):
    """Fit one-vs-rest ridge regression on one-hot labels; predict argmax.

    Args:
        x_train: (N, D) features; y_train: int (N,) labels.
        x_test: (M, D) features.
        alpha: L2 penalty on standardised features.

    Returns:
        int (M,) predicted labels.
    """
    x_train = np.asarray(x_train, np.float64)
    x_test = np.asarray(x_test, np.float64)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    a = np.hstack([a, np.ones((len(a), 1))])
    b = np.hstack([b, np.ones((len(b), 1))])
    classes = np.unique(y_train)
    onehot = (y_train[:, None] == classes[None]).astype(np.float64)
    reg = alpha * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the bias is not penalised
    w = np.linalg.solve(a.T @ a + reg, a.T @ onehot)
    return classes[(b @ w).argmax(1)]


def linear_probe(train_features, train_truths, test_features, test_truths, alpha=1.0):
    """Probe accuracies for every task (see module docstring).

    Returns:
        dict task -> {"accuracy": float, "chance": float, "n": int}, the
        accuracy pooled over the task's problems (cells).
    """
    tr, te = probe_targets(train_truths), probe_targets(test_truths)
    results = {}
    for task in tr:
        correct = total = majority = 0
        for (ytr, mtr), (yte, mte) in zip(tr[task], te[task]):
            if mte.sum() == 0:
                continue
            if len(np.unique(ytr[mtr])) < 2:  # constant on train: predict that constant
                pred = np.full(mte.sum(), ytr[mtr][0] if mtr.any() else 0)
            else:
                pred = ridge_classifier(train_features[mtr], ytr[mtr], test_features[mte], alpha)
            correct += int((pred == yte[mte]).sum())
            total += int(mte.sum())
            if mtr.any():
                vals, cnt = np.unique(ytr[mtr], return_counts=True)
                majority += int((yte[mte] == vals[cnt.argmax()]).sum())
        results[task] = {"accuracy": correct / total, "chance": majority / total, "n": total}
    return results

import pytest

from rnncap.data.truth import caption_is_true, check_caption, parse_caption, truth_rate


def obj(shape, colour, size, row, col):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col,
            "x": 0.0, "y": 0.0}


# a large red circle top-left, a small blue square on the right (middle row)
TWO = [obj("circle", "red", "large", 0, 0), obj("square", "blue", "small", 1, 2)]
ONE = [obj("triangle", "purple", "small", 1, 1)]
PAIR = [obj("circle", "green", "large", 2, 0), obj("circle", "green", "small", 2, 2)]

TRUE = [
    ("a large red circle", TWO),
    ("A big red circle.", TWO),
    ("a red circle to the left of a blue square", TWO),
    ("the red circle is above the little blue square", TWO),
    ("there is a small blue square to the right of a red circle", TWO),
    ("a blue square below a red circle", TWO),
    ("a circle and a square", TWO),
    ("the picture shows a small blue square and a large red circle", TWO),
    ("there is a red circle in the top left corner and a blue square on the right", TWO),
    ("there are two shapes in the image", TWO),
    ("two objects", TWO),
    ("there is one circle", TWO),
    ("a large circle that is red", TWO),
    ("a square that is small and blue", TWO),
    ("<START> a small violet triangle <END>", ONE),
    ("a purple triangle in the center", ONE),
    ("a little purple triangle is in the middle of the image", ONE),
    ("there is one shape in the picture", ONE),
    ("there are two circles", PAIR),
    ("two green shapes", PAIR),
    ("a big green circle to the left of a small green circle", PAIR),
    ("a green circle and a green circle", PAIR),
    ("a green circle in the bottom left", PAIR),
    ("a green circle at the bottom", [obj("circle", "green", "large", 2, 1)]),
]

FALSE = [
    ("a large green circle", TWO),                               # wrong colour
    ("a large red triangle", TWO),                               # wrong shape
    ("a small red circle", TWO),                                 # wrong size
    ("there are three shapes", TWO),                             # wrong count
    ("there is one shape in the image", TWO),                    # wrong count ('one')
    ("a red circle to the right of a blue square", TWO),         # wrong relation
    ("a blue square above a red circle", TWO),                   # wrong relation
    ("a red circle and a yellow triangle", TWO),                 # object not there
    ("a red circle and a red circle", TWO),                      # needs two distinct
    ("a red circle on the right", TWO),                          # wrong place
    ("a red circle at the top", TWO),                            # top left is not 'the top'
    ("a purple triangle", TWO),                                  # object not there
    ("a green circle to the left of a green circle", [obj("circle", "green", "large", 1, 1)]),
    ("there is one circle", PAIR),                               # two circles
    ("two red circles", PAIR),
    ("a large small circle", TWO),                               # contradictory
    ("a a red circle", TWO),                                     # ungrammatical
    ("red circle", TWO),                                         # no determiner
    ("a red circle is", TWO),                                    # unfinished
    ("a red <UNK>", TWO),
    ("a red circle <UNK> a blue square", TWO),
    ("", TWO),
    ("the the the", TWO),
    ("a red circle on the table", TWO),                          # unknown words
    ("a red circle that is", TWO),
]


@pytest.mark.parametrize("caption,objects", TRUE)
def test_hand_written_true_captions(caption, objects):
    ok, why = check_caption(caption, objects)
    assert ok, why


@pytest.mark.parametrize("caption,objects", FALSE)
def test_hand_written_false_captions(caption, objects):
    assert not caption_is_true(caption, objects)


def test_parse_reports_why():
    with pytest.raises(ValueError, match="cannot parse"):
        parse_caption("a red circle on the table")
    assert parse_caption("two red circles")["count"] == 2


def test_truth_rate():
    caps = [c for c, _ in TRUE[:3]] + [c for c, _ in FALSE[:1]]
    truths = [o for _, o in TRUE[:3]] + [o for _, o in FALSE[:1]]
    assert truth_rate(caps, truths) == 0.75
    with pytest.raises(ValueError, match="2 captions but 1"):
        truth_rate(["a", "b"], [TWO])

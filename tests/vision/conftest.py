"""Real photos that ship inside installed wheels (no download): scikit-image's and matplotlib's."""

import os

import pytest


def _photo(name):
    """Path of a sample photo: 'coffee', 'chelsea', 'motorcycle_right' or 'grace_hopper'."""
    import matplotlib

    if name == "grace_hopper":
        return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                            "grace_hopper.jpg")
    skimage = pytest.importorskip("skimage")  # the test extra installs it
    return os.path.join(os.path.dirname(skimage.__file__), "data", f"{name}.png")


@pytest.fixture(scope="session")
def photo():
    """A function: sample photo name -> its path in an installed wheel."""
    return _photo

"""The server's pixel limit against the image loader's: stricter by default, never above it."""

import pytest

import rnncap.serve
from rnncap.cli import main
from rnncap.serve.captioner import Limits
from rnncap.vision import image


def test_the_servers_default_is_stricter_than_the_loaders_limit_and_may_reach_it():
    assert Limits().max_pixels == rnncap.serve.MAX_PIXELS == 40_000_000
    assert image.MAX_PIXELS == 64_000_000
    assert Limits(max_pixels=image.MAX_PIXELS).max_pixels == 64_000_000
    for bad in (image.MAX_PIXELS + 1, 0):
        with pytest.raises(ValueError, match=rf"max_pixels must be between 1 and 64,000,000 \(the most "
                                             rf"rnncap's image loader decodes\), got {bad:,}"):
            Limits(max_pixels=bad)


@pytest.fixture
def served(monkeypatch):
    """The keyword arguments `rnncap serve` passes to rnncap.serve.serve (which is not run)."""
    calls = []
    monkeypatch.setattr(rnncap.serve, "serve", lambda checkpoint, host, port, **kw: calls.append(kw))
    return calls


def test_max_pixels_above_the_loaders_limit_is_refused_not_capped(served, capsys):
    assert main(["serve", "ckpt", "--max-pixels", "64000001"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "rnncap serve: error: --max-pixels 64,000,001 is above 64,000,000, the most pixels rnncap's "
        "image loader decodes; choose at most 64000000"]
    assert served == []
    assert main(["serve", "ckpt"]) == 0 and main(["serve", "ckpt", "--max-pixels", "64000000"]) == 0
    assert [kw["max_pixels"] for kw in served] == [40_000_000, 64_000_000]

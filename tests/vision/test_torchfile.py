"""The restricted reader of legacy torch files (rnncap.vision.torchfile)."""

import os
import pickle

import numpy as np
import pytest

from rnncap.vision.efficientnet import weights_path
from rnncap.vision.torchfile import MAGIC, PROTOCOL, TorchFileError, read_state_dict


def test_reads_the_released_weights():
    sd = read_state_dict(weights_path())
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    # running variances are variances (some channels are dead: exactly 0)
    assert all((v >= 0).all() for k, v in sd.items() if k.endswith("running_var"))


def _header():
    return (pickle.dumps(MAGIC, protocol=2) + pickle.dumps(PROTOCOL, protocol=2)
            + pickle.dumps({"protocol_version": PROTOCOL, "little_endian": True}, protocol=2))


def test_refuses_any_other_global(tmp_path):
    p = tmp_path / "evil.pth"
    p.write_bytes(_header() + pickle.dumps({"w": os.getcwd}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(TorchFileError, match=r"refuses to load '(posix|nt)\.getcwd'"):
        read_state_dict(p)


def test_refuses_wrong_magic_and_truncation(tmp_path):
    p = tmp_path / "x.pth"
    p.write_bytes(pickle.dumps(123, protocol=2))
    with pytest.raises(TorchFileError, match="wrong magic number"):
        read_state_dict(p)
    data = open(weights_path(), "rb").read()
    for cut in (30, 20_000, len(data) - 100):
        p.write_bytes(data[:cut])
        with pytest.raises(TorchFileError, match=r"x\.pth: "):
            read_state_dict(p)
    p.write_bytes(data + b"\0")
    with pytest.raises(TorchFileError, match="unexpected bytes"):
        read_state_dict(p)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "none.pth")

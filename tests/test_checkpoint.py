"""Checkpoints: atomic, checksummed; a damaged one is skipped for the previous one."""

import warnings

import numpy as np
import pytest

from kqmix import checkpoint as ckpt


def test_damaged_checkpoint_falls_back_to_previous(tmp_path):
    root = tmp_path / "checkpoints"
    for t in (100, 200):
        ckpt.write_checkpoint(root, t, {"variables": {"v0000": np.full(3, t, np.float32)}}, {"t": t})
    newest = ckpt.list_checkpoints(root)[-1]
    data = (newest / "variables.npz").read_bytes()
    (newest / "variables.npz").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=r"ckpt-000000000200/variables.npz: checksum mismatch"):
        path, arrays, state = ckpt.load_latest(root)
    assert path.name == "ckpt-000000000100" and state == {"t": 100}
    np.testing.assert_array_equal(arrays["variables"]["v0000"], [100, 100, 100])
    (path / "manifest.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ckpt.load_latest(root) is None
    assert any("manifest.json" in str(w.message) for w in caught)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(root, 5, {"variables": {"v0000": np.zeros(2)}}, {})
    assert list(root.iterdir()) == []


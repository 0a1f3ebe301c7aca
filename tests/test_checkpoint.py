"""Tests for lstm_bptt.checkpoint: lossless round trip, no pickle, atomic writes, clear errors."""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np
import pytest

from lstm_bptt import checkpoint
from lstm_bptt.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def _tree():
    rng = np.random.default_rng(0)
    return {
        "params": {
            "lstm.weight_ih_l0": rng.standard_normal((8, 3)),  # float64
            "head.weight": rng.standard_normal((5, 2)).astype(np.float32),
            "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
            "scalar_array": np.array(2.5),  # 0-d
            "empty": np.zeros((0, 4), np.float32),
        },
        "step": 17,
        "lr": 0.125,
        "flag": True,
        "off": False,
        "nothing": None,
        "name": "CharLM",
        "unicode": "naïve ✓",
        "nonfinite": [math.nan, math.inf, -math.inf],
        "history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "val_loss": math.inf}],
        "mixed": [1, "two", None, [3.0, [True]], np.arange(3, dtype=np.int32)],
        "np_scalars": {"i": np.int64(7), "f": np.float64(0.5), "b": np.bool_(True)},
        "empty_dict": {},
        "empty_list": [],
        "big_int": 2**100 + 1,
    }


def _assert_same(a, b, path="/"):
    """Deep equality with arrays compared by dtype, shape and bits, NaN == NaN."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}{k}/")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}{i}/")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert type(a) is type(b) or isinstance(a, np.generic), (path, a, b)
        assert a == b, (path, a, b)


def test_round_trip_nested_tree(tmp_path):
    tree = _tree()
    out = save_checkpoint(tmp_path / "ck.npz", tree)
    assert out == tmp_path / "ck.npz" and out.exists()
    back = load_checkpoint(out)
    _assert_same(tree, back)
    # NumPy scalars come back as the equal Python scalars
    assert back["np_scalars"] == {"i": 7, "f": 0.5, "b": True}
    assert type(back["np_scalars"]["b"]) is bool
    assert back["big_int"] == 2**100 + 1


def test_round_trip_keeps_float_bits(tmp_path):
    # values that a decimal print would round: checkpoints must be bit exact for resume
    x64 = np.array([0.1, 1 / 3, np.nextafter(1.0, 2.0), 5e-324, -0.0])
    x32 = np.array([0.1, 1 / 3, np.nextafter(np.float32(1), np.float32(2))], np.float32)
    tree = {"a": x64, "b": x32, "lr": 1 / 3, "tiny": 5e-324}
    back = load_checkpoint(save_checkpoint(tmp_path / "ck.npz", tree))
    assert back["a"].tobytes() == x64.tobytes()
    assert back["b"].tobytes() == x32.tobytes()
    assert back["lr"] == 1 / 3 and back["tiny"] == 5e-324


def test_saved_file_is_plain_npz_without_pickle(tmp_path):
    path = save_checkpoint(tmp_path / "ck.npz", _tree())
    # Every member loads with allow_pickle=False; the tree skeleton is JSON text.
    with np.load(path, allow_pickle=False) as f:
        members = {k: f[k] for k in f.files}
    assert "__tree__" in members
    meta = json.loads(str(members["__tree__"]))
    assert meta["format"] == "lstm-bptt-checkpoint-v1"
    assert all(v.dtype != object for v in members.values())
    assert members["params/head.weight"].dtype == np.float32


def test_object_array_refused_at_save(tmp_path):
    path = tmp_path / "ck.npz"
    bad = {"params": {"w": np.array([{"a": 1}, None], dtype=object)}}
    with pytest.raises(TypeError, match="object"):
        save_checkpoint(path, bad)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "leaf, pattern",
    [(object(), "object"), ({1, 2}, "set"), (b"bytes", "bytes"), (1 + 2j, "complex")],
)
def test_unsupported_leaf_raises_type_error(tmp_path, leaf, pattern):
    with pytest.raises(TypeError, match=pattern):
        save_checkpoint(tmp_path / "ck.npz", {"x": {"y": leaf}})
    assert list(tmp_path.iterdir()) == []


def test_bad_keys(tmp_path):
    with pytest.raises(TypeError, match="keys must be str"):
        save_checkpoint(tmp_path / "a.npz", {1: 2})
    with pytest.raises(ValueError, match="must not contain '/'"):
        save_checkpoint(tmp_path / "a.npz", {"a/b": 1})


def test_creates_parent_directory(tmp_path):
    path = tmp_path / "deep" / "er" / "ck.npz"
    save_checkpoint(path, {"step": 1})
    assert load_checkpoint(path) == {"step": 1}


def _crash(*args, **kwargs):
    raise OSError("simulated crash (disk full)")


@pytest.mark.parametrize("target", ["savez", "replace", "fsync"])
def test_crash_during_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, target):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"step": 1, "w": np.arange(4.0)})
    before = path.read_bytes()
    if target == "savez":
        monkeypatch.setattr(checkpoint.np, "savez", _crash)
    else:
        monkeypatch.setattr(checkpoint.os, target, _crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"step": 2, "w": np.arange(5.0)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]
    assert load_checkpoint(path)["step"] == 1


def test_crash_half_way_through_writing(tmp_path, monkeypatch):
    """A crash after some bytes reached the temp file: still the old file, no temp left."""
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()
    real_savez = np.savez

    def partial_savez(fh, *args, **kwargs):
        real_savez(fh, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", partial_savez)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_overwrite_replaces_content(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2, "extra": "x"})
    assert load_checkpoint(path) == {"step": 2, "extra": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


def test_npz_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not an lstm-bptt checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a zip file at all\n" * 3, b"PK\x03\x04truncated zip header"],
    ids=["empty", "text", "truncated-zip"],
)
def test_garbage_file_raises_value_error(tmp_path, content):
    path = tmp_path / "ck.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable .npz checkpoint|not an lstm-bptt"):
        load_checkpoint(path)


def test_npy_file_raises_value_error(tmp_path):
    path = tmp_path / "ck.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.arange(3))
    with pytest.raises(ValueError, match="not a readable .npz checkpoint|not an lstm-bptt"):
        load_checkpoint(path)


def test_pickled_member_is_not_loaded(tmp_path):
    """A hand-made .npz holding a pickled object array must not be unpickled on load."""
    path = tmp_path / "evil.npz"
    meta = json.dumps({"format": "lstm-bptt-checkpoint-v1", "tree": {"__array__": "x"}})
    np.savez(path, __tree__=np.array(meta), x=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        load_checkpoint(path)


def test_unknown_format_and_truncated_file(tmp_path):
    path = tmp_path / "ck.npz"
    np.savez(path, __tree__=np.array(json.dumps({"format": "something-else", "tree": {}})))
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_checkpoint(path)
    good = save_checkpoint(tmp_path / "good.npz", {"w": np.arange(1000.0)})
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        load_checkpoint(good)
    assert zipfile.is_zipfile(tmp_path / "ck.npz")


def test_rng_state_round_trip(tmp_path):
    rng = np.random.default_rng(123)
    rng.random(5)
    state = rng_state(rng)
    expected = rng.random(4)
    back = load_checkpoint(save_checkpoint(tmp_path / "ck.npz", {"rng": state}))
    other = np.random.default_rng(0)
    set_rng_state(other, back["rng"])
    np.testing.assert_array_equal(other.random(4), expected)


def test_temp_file_in_same_directory(tmp_path, monkeypatch):
    """os.replace is atomic only within one file system: the temp file must sit next to the
    target."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.dirname(src), os.path.dirname(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    save_checkpoint(tmp_path / "ck.npz", {"step": 1})
    assert seen == [(str(tmp_path), str(tmp_path))]

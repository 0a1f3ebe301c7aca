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
    with pytest.raises(TypeError, match="checkpoint keys: expected str"):
        save_checkpoint(tmp_path / "a.npz", {1: 2})
    with pytest.raises(ValueError, match="without '/', got 'a/b'"):
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
        monkeypatch.setattr(checkpoint, "_write_npz", _crash)
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
    real_write = checkpoint._write_npz

    def partial_write(fh, *args, **kwargs):
        real_write(fh, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_npz", partial_write)
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


# ---------------------------------------------------------------------------- defensive reading
def test_keys_named_like_savez_arguments_round_trip(tmp_path):
    """``np.savez(file, allow_pickle=...)`` keywords once collided with member names."""
    tree = {"allow_pickle": np.arange(3), "file": np.ones(2), "args": {"kwds": np.zeros(1)}}
    back = load_checkpoint(save_checkpoint(tmp_path / "ck.npz", tree))
    _assert_same(tree, back)


@pytest.mark.parametrize("tree, error, pattern", [
    ({"__tree__": np.arange(3)}, ValueError, "'__tree__' is reserved"),
    ({"__tree__": "text"}, ValueError, "'__tree__' is reserved"),
    ({"": 1}, ValueError, "expected a non-empty str"),
    ([1, 2], TypeError, "tree: expected a dict, got list"),
    (np.arange(3), TypeError, "tree: expected a dict, got ndarray"),
])
def test_colliding_or_malformed_keys_refused_at_save(tmp_path, tree, error, pattern):
    with pytest.raises(error, match=pattern):
        save_checkpoint(tmp_path / "ck.npz", tree)
    assert list(tmp_path.iterdir()) == []


def test_too_deep_tree_refused_at_save(tmp_path):
    tree = node = {}
    for _ in range(checkpoint.MAX_DEPTH + 2):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ValueError, match="nesting deeper than 32"):
        save_checkpoint(tmp_path / "ck.npz", tree)


def _forge(path, skeleton, members=None):
    """A hand-made checkpoint with the given JSON skeleton and .npy members."""
    meta = json.dumps({"format": "lstm-bptt-checkpoint-v1", "tree": skeleton})
    with open(path, "wb") as fh:
        checkpoint._write_npz(fh, {"__tree__": np.array(meta), **(members or {})})
    return path


def test_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ck.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="expected a regular checkpoint file, got a named pipe"):
        load_checkpoint(fifo)


def test_symlink_to_a_device_is_refused_without_reading(tmp_path):
    link = tmp_path / "ck.npz"
    link.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="got a device"):
        load_checkpoint(link)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="got a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_permission_denied(tmp_path):
    path = save_checkpoint(tmp_path / "ck.npz", {"step": 1})
    path.chmod(0)
    with pytest.raises(PermissionError, match="cannot read the checkpoint"):
        load_checkpoint(path)


def test_members_the_skeleton_does_not_name_are_never_read(tmp_path):
    path = _forge(tmp_path / "ck.npz", {"__dict__": {"w": {"__array__": "w"}}},
                  {"w": np.arange(3.0)})
    # append an unreferenced member whose bytes are garbage (its CRC cannot match)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("junk.npy", b"\x93NUMPY garbage" * 1000)
    with zipfile.ZipFile(path, "r") as zf:
        info = zf.getinfo("junk.npy")
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))
    assert info.file_size == 14000


def test_declared_size_inconsistent_with_header_is_refused(tmp_path):
    path = tmp_path / "ck.npz"
    meta = json.dumps({"format": "lstm-bptt-checkpoint-v1",
                       "tree": {"__dict__": {"w": {"__array__": "w"}}}})
    header = io_npy_header((1 << 28,), np.float32)  # claims 1 GiB of data
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("__tree__.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array(meta))
        zf.writestr("w.npy", header + b"\0" * 64)
    with pytest.raises(ValueError, match=r"member w: declared size .* does not match"):
        load_checkpoint(path)


def io_npy_header(shape, dtype):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": shape})
    return np.lib.format.magic(1, 0) + buf.getvalue() if not buf.getvalue().startswith(
        b"\x93NUMPY") else buf.getvalue()


def test_byte_budget_is_checked_before_reading_data(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.npz", {"w": np.zeros(1000), "v": np.zeros(1000)})

    def no_read(*a, **k):
        raise AssertionError("array data read despite the budget")

    monkeypatch.setattr(checkpoint, "_read_data", no_read)
    with pytest.raises(ValueError, match=r"member v: the arrays declare more than max_bytes "
                                         r"= 12,000 bytes"):
        load_checkpoint(path, max_bytes=12_000)


def test_expected_shape_and_dtype_checked_from_the_header(tmp_path):
    path = save_checkpoint(tmp_path / "ck.npz", {"params": {"w": np.zeros((3, 2), np.int64)}})
    with pytest.raises(ValueError, match=r"member params/w: expected shape \(3, 2\) and dtype "
                                         r"float32, got shape \(3, 2\) and dtype int64"):
        load_checkpoint(path, expect={"params/w": ((3, 2), np.float32)})
    back = load_checkpoint(path, expect=lambda name: ((3, 2), np.int64))
    assert back["params"]["w"].dtype == np.int64


@pytest.mark.parametrize("skeleton, pattern", [
    ({"__dict__": {"w": {"__array__": "missing"}}}, "w: the array member 'missing' is missing"),
    ({"__dict__": {"w": {"__array__": "__tree__"}}}, "member '__tree__' is missing"),
    ({"__dict__": {"w": {"__what__": 1}}}, "w: malformed skeleton node '__what__'"),
    ({"__dict__": {"w": {"a": 1, "b": 2}}}, "w: malformed skeleton node with keys"),
    ({"__dict__": {"w": {"__float__": "1e999"}}}, "malformed skeleton node '__float__'"),
    ({"__dict__": {"w": [1, 2]}}, "w: malformed skeleton"),
])
def test_malformed_skeleton_names_the_entry(tmp_path, skeleton, pattern):
    path = _forge(tmp_path / "ck.npz", skeleton)
    with pytest.raises(ValueError, match=pattern):
        load_checkpoint(path)


def test_deeply_nested_skeleton_is_a_clear_error(tmp_path):
    node = 1
    for _ in range(100_000):
        node = {"__list__": [node]}
    path = _forge(tmp_path / "ck.npz", {"__dict__": {"deep": 1}})
    meta = '{"format": "lstm-bptt-checkpoint-v1", "tree": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with open(path, "wb") as fh:
        checkpoint._write_npz(fh, {"__tree__": np.array(meta)})
    with pytest.raises(ValueError, match="nest"):
        load_checkpoint(path)
    path2 = tmp_path / "ck2.npz"
    deep = {"__list__": [1]}
    for _ in range(40):
        deep = {"__list__": [deep]}
    _forge(path2, deep)
    with pytest.raises(ValueError, match="nesting deeper than 32"):
        load_checkpoint(path2)


def test_peek_reads_headers_only(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.npz", {"p": {"w": np.zeros((4, 5), np.float32)},
                                                 "config": {"h": 5}})
    monkeypatch.setattr(checkpoint, "_read_data",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("data read")))
    tree = checkpoint.peek_checkpoint(path)
    info = tree["p"]["w"]
    assert (info.name, info.shape, info.dtype) == ("p/w", (4, 5), np.float32)
    assert tree["config"] == {"h": 5}


def test_temp_files_of_dead_writers_are_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".ck.npz.pid{dead_pid}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".ck.npz.pid{os.getppid()}.def456.tmp"  # a write in progress
    alive.write_bytes(b"being written")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    save_checkpoint(tmp_path / "ck.npz", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ck.npz", alive.name, "notes.tmp"])


def test_set_rng_state_refuses_garbage():
    with pytest.raises(ValueError, match="rng state: expected the JSON state of a PCG64"):
        set_rng_state(np.random.default_rng(0), '{"bit_generator": "MT19937"}')
    with pytest.raises(ValueError, match="rng state"):
        set_rng_state(np.random.default_rng(0), "not json")

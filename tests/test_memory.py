"""The recycling pool behind the forward caches (lstm_bptt._memory): a buffer is handed out
again only when nothing made from it is alive, the pool stays bounded, and the cells' results
do not depend on it."""

import threading

import numpy as np
import pytest

from lstm_bptt import _memory, set_recycling
from lstm_bptt.cells.gru import gru_forward
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward
from lstm_bptt.cells.rnn import rnn_forward

BIG = (64, 32, 128)  # 1 MiB in float32: above MIN_BYTES


def _addr(a):
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def fresh_pool():
    previous = set_recycling(True)
    _memory.release()
    yield
    _memory.release()
    set_recycling(previous)


def test_empty_has_the_shape_dtype_and_alignment():
    for dtype in (np.float32, np.float64):
        a = _memory.empty(BIG, dtype)
        assert a.shape == BIG and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert _addr(a) % 64 == 0


def test_small_arrays_are_not_pooled():
    _memory.empty((4, 4), np.float64)
    assert _memory._pool() == []


def test_a_dropped_buffer_is_reused():
    a = _memory.empty(BIG, np.float32)
    where = _addr(a)
    del a
    assert _addr(_memory.empty(BIG, np.float32)) == where


@pytest.mark.parametrize("keep", [
    lambda a: a,
    lambda a: a[1:],
    lambda a: a.reshape(-1),
    lambda a: a.view(np.int32),
    lambda a: a.T,
    lambda a: memoryview(a),
    lambda a: np.frombuffer(memoryview(a), np.uint8),
])
def test_memory_in_use_is_never_handed_out(keep):
    a = _memory.empty(BIG, np.float32)
    a[...] = 7.0
    kept = keep(a)
    snapshot = np.array(kept, copy=True)
    del a
    b = _memory.empty(BIG, np.float32)
    b[...] = -1.0
    assert not np.shares_memory(np.asarray(kept), b)
    np.testing.assert_array_equal(np.asarray(kept), snapshot)


def test_other_sizes_and_dtypes_get_their_own_buffers():
    a = _memory.empty(BIG, np.float32)
    where = _addr(a)
    del a
    b = _memory.empty((64, 32, 64), np.float32)  # half the size: not carved from the free one
    assert _addr(b) != where


def test_the_pool_is_bounded(monkeypatch):
    monkeypatch.setattr(_memory, "MAX_BUFFERS", 3)
    live = [_memory.empty(BIG, np.float32) for _ in range(5)]
    assert len(_memory._pool()) == 3
    assert len({_addr(a) for a in live}) == 5  # all distinct, all still valid
    monkeypatch.setattr(_memory, "MAX_FREE_BYTES", 0)
    del live
    _memory.empty((3, *BIG), np.float32)  # a new size: trims the unused buffers
    assert len(_memory._pool()) == 1


def test_recycling_off_is_np_empty():
    assert set_recycling(False) is True
    a = _memory.empty(BIG, np.float32)
    assert a.base is None and _memory._pool() == []
    with pytest.raises(TypeError, match="enabled: expected True or False"):
        set_recycling(1)


def test_each_thread_has_its_own_pool():
    a = _memory.empty(BIG, np.float32)
    where = _addr(a)
    del a
    seen = []
    t = threading.Thread(target=lambda: seen.append(_addr(_memory.empty(BIG, np.float32))))
    t.start()
    t.join()
    assert seen[0] != where  # the other thread did not take this thread's free buffer
    assert _addr(_memory.empty(BIG, np.float32)) == where


def _lstm_args(rng, T=64, B=32, D=16, H=128, dtype=np.float32):
    k = 1 / np.sqrt(H)
    w = {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in (
        ("weight_ih", (4 * H, D)), ("weight_hh", (4 * H, H)), ("bias_ih", (4 * H,)),
        ("bias_hh", (4 * H,)))}
    return rng.standard_normal((T, B, D)).astype(dtype), w


def test_a_kept_lstm_cache_survives_later_forwards():
    rng = np.random.default_rng(0)
    x, w = _lstm_args(rng)
    out1, (h1, c1), cache1 = lstm_forward(x, None, None, **w)
    saved = [np.array(a) for a in (out1, h1, c1, cache1.gates, cache1.c, cache1.tanh_c)]
    for _ in range(3):  # other inputs through the same pool, caches dropped each time
        x2, _ = _lstm_args(rng)
        lstm_forward(x2, None, None, **w)
    now = [out1, h1, c1, cache1.gates, cache1.c, cache1.tanh_c]
    for before, after in zip(saved, now, strict=True):
        np.testing.assert_array_equal(after, before)
    dout = rng.standard_normal(out1.shape).astype(np.float32)
    dx_a = lstm_backward(dout, cache1)[0]
    dx_b = lstm_backward(dout, cache1)[0]
    assert not np.shares_memory(dx_a, dx_b)  # dx is a fresh array each call
    np.testing.assert_array_equal(dx_a, dx_b)


def test_lstm_training_steps_reuse_the_cache_memory():
    """The point of the pool: a loop of forward + backward allocates its caches once."""
    rng = np.random.default_rng(1)
    x, w = _lstm_args(rng)
    dout = rng.standard_normal((64, 32, 128)).astype(np.float32)
    addresses = []
    for _ in range(3):
        _, _, cache = lstm_forward(x, None, None, **w)
        # h and c have one shape, so they may swap buffers from one step to the next
        addresses.append({_addr(cache.gates), _addr(cache.c), _addr(cache.h)})
        lstm_backward(dout, cache)
        del cache
    assert addresses[1] == addresses[2]


@pytest.mark.parametrize("forward", [gru_forward, rnn_forward])
def test_gru_and_rnn_results_do_not_depend_on_recycling(forward):
    rng = np.random.default_rng(2)
    G = 3 if forward is gru_forward else 1
    H, D = 128, 16
    w = {"weight_ih": rng.uniform(-0.1, 0.1, (G * H, D)),
         "weight_hh": rng.uniform(-0.1, 0.1, (G * H, H))}
    xs = [rng.standard_normal((64, 32, D)) for _ in range(2)]
    on = [forward(x, None, **w) for x in xs]  # first output kept while the second runs
    set_recycling(False)
    off = [forward(x, None, **w) for x in xs]
    for a, b in zip(on, off, strict=True):
        np.testing.assert_array_equal(a[0], b[0])

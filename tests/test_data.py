"""Tests for lstm_bptt.data: corpus loading, CharVocab, splitting, batchify, BPTT windows."""

import io

import numpy as np
import pytest

from lstm_bptt.data import (
    CharVocab,
    batchify,
    iterate_bptt_windows,
    load_pydoc_text,
    load_text,
    num_bptt_windows,
    split_train_val,
)

# ---------------------------------------------------------------- corpora


def test_load_pydoc_text_is_deterministic_sorted_join():
    from pydoc_data.topics import topics

    text = load_pydoc_text()
    assert text == load_pydoc_text()
    first_key = min(topics)
    assert text.startswith(topics[first_key])
    # joined with one "\n" between the values, so the total length is known without the join
    assert len(text) == sum(len(v) for v in topics.values()) + len(topics) - 1
    assert 300_000 < len(text) < 700_000
    assert 80 < len(set(text)) < 130


def test_load_text_reads_utf8(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("héllo\r\nwörld".encode())
    assert load_text(path) == "héllo\r\nwörld"
    assert load_text(str(path)) == "héllo\r\nwörld"


def test_load_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_text(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xffdef")
    with pytest.raises(ValueError, match="byte offset 3"):
        load_text(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_text(empty)


# ---------------------------------------------------------------- CharVocab


def test_vocab_sorted_unique_and_ids_by_hand():
    vocab = CharVocab.from_text("hello")
    assert vocab.chars == ["e", "h", "l", "o"]
    assert len(vocab) == 4
    ids = vocab.encode("hello")
    assert ids.dtype == np.int64 and ids.shape == (5,)
    np.testing.assert_array_equal(ids, [1, 0, 2, 2, 3])
    assert vocab.decode([3, 2, 1]) == "olh"
    assert vocab.decode(np.array([], dtype=np.int64)) == ""


def test_vocab_round_trip_on_corpus_with_non_ascii():
    text = load_pydoc_text()[:20_000] + "ünïcödé ✓ 😀"
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() == len(vocab) - 1  # 😀 has the largest code point
    assert vocab.decode(ids) == text


def test_vocab_unknown_char_error_names_chars_and_size():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"'z'.*'€'.*not in the vocabulary of size 3"):
        vocab.encode("abz€")


def test_vocab_npz_round_trip_without_pickle():
    vocab = CharVocab.from_text("the quick brown fox ✓\n")
    buf = io.BytesIO()
    np.savez(buf, vocab=vocab.to_array())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        arr = f["vocab"]
    assert arr.dtype == np.uint32
    restored = CharVocab.from_array(arr)
    assert restored == vocab
    assert restored.chars == vocab.chars


def test_vocab_bad_input():
    with pytest.raises(ValueError, match="empty"):
        CharVocab.from_text("")
    with pytest.raises(TypeError, match="str"):
        CharVocab.from_text(["a"])
    with pytest.raises(ValueError, match="sorted"):
        CharVocab(["b", "a"])
    vocab = CharVocab.from_text("ab")
    with pytest.raises(ValueError, match="0..1"):
        vocab.decode([0, 2])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode([[0]])
    with pytest.raises(ValueError, match="code points"):
        CharVocab.from_array(np.zeros((2, 2), dtype=np.uint32))


# ---------------------------------------------------------------- split, batchify, windows


def test_split_train_val_contiguous():
    ids = np.arange(100)
    train, val = split_train_val(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    train, val = split_train_val(np.arange(25), 0.2)
    assert train.shape == (20,) and val.shape == (5,)
    assert split_train_val("abcdefghij", 0.3) == ("abcdefg", "hij")


def test_split_train_val_errors():
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(np.arange(10), 1.0)
    with pytest.raises(ValueError, match="too short"):
        split_train_val(np.arange(5), 0.1)
    with pytest.raises(ValueError, match="1-D"):
        split_train_val(np.zeros((4, 4)), 0.25)


def test_batchify_by_hand():
    ids = np.arange(11)  # 11 // 3 = 3 steps per stream, drop 2
    out = batchify(ids, 3)
    expected = np.array([[0, 3, 6], [1, 4, 7], [2, 5, 8]])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == ids.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(batchify(np.arange(4), 1), [[0], [1], [2], [3]])


def test_batchify_errors():
    with pytest.raises(ValueError, match="at least 6 tokens"):
        batchify(np.arange(5), 3)
    with pytest.raises(ValueError, match="batch_size"):
        batchify(np.arange(10), 0)
    with pytest.raises(ValueError, match="1-D"):
        batchify(np.zeros((3, 3, 2)), 1)


def test_batchify_feature_vectors_by_hand():
    series = np.arange(22.0).reshape(11, 2)  # 11 steps of 2 features, 3 streams of 3 steps
    out = batchify(series, 3)
    assert out.shape == (3, 3, 2) and out.dtype == series.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out[:, 0], series[0:3])
    np.testing.assert_array_equal(out[:, 1], series[3:6])
    np.testing.assert_array_equal(out[:, 2], series[6:9])


def test_bptt_windows_targets_shifted_and_cover_stream():
    streams = batchify(np.arange(22), 2)  # (11, 2): columns 0..10 and 11..21
    windows = list(iterate_bptt_windows(streams, 4))
    assert len(windows) == num_bptt_windows(11, 4) == 3  # inputs 0..3, 4..7, 8..9
    assert [w[0].shape for w in windows] == [(4, 2), (4, 2), (2, 2)]
    x0, y0 = windows[0]
    np.testing.assert_array_equal(x0[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y0[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(y0[:, 1], [12, 13, 14, 15])
    x2, y2 = windows[2]
    np.testing.assert_array_equal(x2[:, 0], [8, 9])
    np.testing.assert_array_equal(y2[:, 0], [9, 10])
    all_inputs = np.concatenate([w[0] for w in windows])
    all_targets = np.concatenate([w[1] for w in windows])
    np.testing.assert_array_equal(all_inputs, streams[:-1])
    np.testing.assert_array_equal(all_targets, streams[1:])
    with pytest.raises(ValueError):
        x0[0, 0] = 99  # read-only views


def test_bptt_windows_exact_multiple_and_errors():
    streams = np.arange(9)[:, None]  # N = 9 -> 8 input positions -> two full windows of 4
    windows = list(iterate_bptt_windows(streams, 4))
    assert [w[0].shape[0] for w in windows] == [4, 4]
    assert num_bptt_windows(9, 4) == 2
    with pytest.raises(ValueError, match="2-D"):
        list(iterate_bptt_windows(np.arange(5), 2))
    with pytest.raises(ValueError, match="k1"):
        list(iterate_bptt_windows(streams, 0))

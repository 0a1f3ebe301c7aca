"""The HTML report of `lstm-bptt inspect`, checked by parsing it."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

import lstm_bptt
from lstm_bptt.data import CharVocab
from lstm_bptt.experiments.cli import main
from lstm_bptt.experiments.report import build_report
from lstm_bptt.inspection import lm_inspect

TEXT = ('def f(x):\n    return "a(b)" + x\n\nclass C:\n    y = [1, 2]\n' * 6)


class _Collect(HTMLParser):
    """Elements with their attributes and the text of <script> and <td> elements."""

    def __init__(self):
        super().__init__()
        self.elements, self.scripts, self.cells = [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag in ("script", "td"):
            self._in = tag
            (self.scripts if tag == "script" else self.cells).append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "td":
            self.cells[-1] += data

    def find(self, tag=None, **attrs):
        return [a for t, a in self.elements if (tag is None or t == tag)
                and all(a.get(k) == v for k, v in attrs.items())]

    def with_class(self, cls):
        return [a for _, a in self.elements if cls in (a.get("class") or "").split()]


@pytest.fixture(scope="module")
def report():
    vocab = CharVocab.from_text(TEXT)
    model = lstm_bptt.CharLM(len(vocab), 8, num_layers=2, dtype=np.float64, rng=0)
    html = build_report(model, vocab, TEXT, start=40, length=60, context=20, stats_chars=200,
                        window=16, flow_window=30, flow_positions=5,
                        history=[{"step": 10, "loss": 3.0, "grad_norm": 1.0, "lr": 0.01},
                                 {"step": 20, "loss": 2.5, "grad_norm": 0.9, "lr": 0.005,
                                  "val_loss": 2.6}],
                        baselines={"bigram (add-one)": 2.7}, source="test text", demo=False)
    p = _Collect()
    p.feed(html)
    return html, p, model, vocab


def test_report_is_self_contained(report):
    html, p, *_ = report
    assert html.startswith("<!DOCTYPE html>")
    for tag, attrs in p.elements:
        assert tag not in ("link", "img", "iframe")
        assert "src" not in attrs, (tag, attrs)
        assert not (attrs.get("href") or "").startswith(("http", "//"))
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_report_has_every_section(report):
    _, p, *_ = report
    for sec in ("textsec", "ranksec", "salsec", "satsec", "flowsec", "trainsec"):
        assert p.find("section", id=sec), sec
    for control in ("layer", "qty", "unit", "guesses", "pos"):
        assert p.find(id=control), control
    svgs = p.find("svg")
    # 2 saturation scatters (2 layers), 1 gradient flow, 3 training charts (no demo here)
    assert len(svgs) == 6
    titles = [a.get("aria-label") for a in svgs]
    assert "gate saturation, layer 1" in titles and "loss (nats/char)" in titles


def test_text_columns_and_top5_guesses_match_the_model(report):
    _, p, model, vocab = report
    cols = p.with_class("col")
    assert len(cols) == 60 and [int(c["data-i"]) for c in cols] == list(range(60))
    guesses = p.with_class("g")
    assert len(guesses) == 60 * 5
    data = json.loads(p.scripts[0])
    assert "".join(data["chars"]) == TEXT[40:100]
    # the top-5 of the shown characters equal a forward run over the same context
    ids = vocab.encode(TEXT[20:241])
    ref = lm_inspect(model, ids)
    np.testing.assert_array_equal(np.array(data["top_ids"]), ref["top_ids"][20:80])
    probs = [float(g["title"]) for g in guesses[:5]]
    np.testing.assert_allclose(probs, ref["top_probs"][20], atol=6e-4)


def test_quantities_decode_to_the_activations(report):
    _, p, model, vocab = report
    data = json.loads(p.scripts[0])
    ref = lm_inspect(model, vocab.encode(TEXT[20:241]))["values"]
    got = {(q["layer"], q["q"]): q for q in data["quantities"]}
    assert set(got) == {(lyr, q) for lyr in (0, 1) for q in ("tanh_c", "h", "i", "f", "g", "o")}
    for (lyr, q), d in got.items():
        u8 = np.frombuffer(base64.b64decode(d["data"]), np.uint8).reshape(60, d["H"])
        v = d["lo"] + (d["hi"] - d["lo"]) * u8 / 255
        np.testing.assert_allclose(v, ref[lyr][q][20:80], atol=(d["hi"] - d["lo"]) / 255)


def test_ranking_table_and_saliency_payload(report):
    _, p, *_ = report
    rows = p.find("tr")
    body = [a for a in rows if "data-unit" in a]
    props = {c for c in p.cells[::5]}
    assert props <= {"inside quotes", "inside brackets", "bracket depth", "position in line",
                     "indentation"}
    assert len(body) == len(p.cells) // 5 and len(body) >= 5
    assert all(0 <= int(a["data-unit"]) < 8 and a["data-q"] in ("tanh_c", "h") for a in body)
    data = json.loads(p.scripts[0])
    s = data["saliency"]
    u8 = np.frombuffer(base64.b64decode(s["data"]), np.uint8).reshape(-1, s["W"])
    assert u8.shape == (60, 16) and len(s["max"]) == 60
    assert (u8.max(axis=1) == 255).all()  # normalised per position to its largest lag


def test_inspect_command_end_to_end(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 5)
    run = tmp_path / "run"
    assert main(["train", "--text", str(text), "--out-dir", str(run), "--steps", "20",
                 "--seq-length", "32",
                 "--eval-every", "10", "--hidden-size", "16", "--quiet", "--sample-length",
                 "0", "--threads", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "rep"
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--out", str(out),
                 "--length", "120", "--no-demo"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    p = _Collect()
    p.feed(html)
    assert len(p.with_class("col")) == 120
    assert "validation part" in html  # the training text found again via the checkpoint
    assert "bigram (add-one)" in html  # baselines.json of the run folder
    # errors: a directory, characters the model does not know
    assert main(["inspect", "--checkpoint", str(run), "--out", str(out)]) == 2
    assert "is a directory" in capsys.readouterr().err
    other = tmp_path / "o.txt"
    other.write_text("\u2603" * 50)
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--text", str(other),
                 "--out", str(out)]) == 2
    assert "does not know" in capsys.readouterr().err
    # a folder as --text, a file as --out: one line naming the flag, nothing written
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--text",
                 str(tmp_path), "--out", str(out)]) == 2
    assert "--text: expected a UTF-8 text file, got a directory" in capsys.readouterr().err
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--text",
                 str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "--text: expected a UTF-8 text file, got no such file" in capsys.readouterr().err
    ckpt_bytes = (run / "checkpoint.npz").read_bytes()
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--out",
                 str(run / "checkpoint.npz")]) == 2
    assert "--out: expected a folder" in capsys.readouterr().err
    assert (run / "checkpoint.npz").read_bytes() == ckpt_bytes


def test_inspect_lstmvis_export(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 5)
    run = tmp_path / "run"
    assert main(["train", "--text", str(text), "--out-dir", str(run), "--steps", "10",
                 "--seq-length", "32",
                 "--eval-every", "10", "--hidden-size", "8", "--quiet", "--sample-length",
                 "0", "--threads", "1", "--no-baselines"]) == 0
    out = tmp_path / "rep"
    assert main(["inspect", "--checkpoint", str(run / "checkpoint.npz"), "--text", str(text),
                 "--out", str(out), "--length", "50", "--lstmvis", "--no-demo"]) == 0
    with h5py.File(out / "lstmvis" / "states.hdf5") as f:
        assert f["states1"].shape == (50, 8) and f["output1"].shape == (50, 8)
    with h5py.File(out / "lstmvis" / "train.hdf5") as f:
        vocab = CharVocab.from_text(TEXT)
        np.testing.assert_array_equal(f["words"][...], vocab.encode(TEXT[:50]))


@pytest.mark.parametrize("cell, quantities, scatters", [
    ("gru", {"h", "r", "z", "n"}, 1),
    ("rnn", {"h"}, 0),
])
def test_report_for_other_cells(cell, quantities, scatters):
    if cell.upper() not in dir(lstm_bptt):
        pytest.skip(f"no {cell} cell")
    vocab = CharVocab.from_text(TEXT)
    model = lstm_bptt.CharLM(len(vocab), 6, dtype=np.float64, rng=0, cell=cell)
    html = build_report(model, vocab, TEXT, start=30, length=40, context=10, stats_chars=120,
                        window=8, flow_window=20, flow_positions=3, demo=False)
    p = _Collect()
    p.feed(html)
    data = json.loads(p.scripts[0])
    assert {q["q"] for q in data["quantities"]} == quantities
    assert sum(1 for a in p.find("svg") if a.get("aria-label", "").startswith("gate saturation")
               ) == scatters
    assert all(r["q"] == "h" for r in data["ranking"])
    assert len(p.with_class("col")) == 40

"""Training curves: history parsing, inline SVG charts, matplotlib PNG/SVG and the CLI flags."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from lstm_bptt.experiments import plots
from lstm_bptt.experiments.cli import main
from lstm_bptt.experiments.svg import line_chart, nice_ticks, scatter

SVG = "{http://www.w3.org/2000/svg}"
SMALL = ["--steps", "20", "--eval-every", "10", "--hidden-size", "16", "--quiet",
         "--sample-length", "0", "--threads", "1"]


def _history_csv(path):
    # the Trainer's layout: log rows, and evaluation columns filled into the same step's row
    path.write_text("step,loss,grad_norm,lr,elapsed_s,val_loss,val_bpc,val_ppl\n"
                    "10,3.0,2.0,0.01,1.0,,,\n"
                    "20,2.5,1.5,0.005,2.0,2.6,3.75,13.5\n"
                    "30,2.2,1.2,0.001,3.0,,,\n")


def test_read_history_and_curves(tmp_path):
    _history_csv(tmp_path / "history.csv")
    c = plots.curves(plots.read_history(tmp_path / "history.csv"))
    assert c["train"][0].tolist() == [10, 20, 30] and c["train"][1].tolist() == [3.0, 2.5, 2.2]
    assert c["val"][0].tolist() == [20] and c["val"][1].tolist() == [2.6]
    assert c["lr"][1].tolist() == [0.01, 0.005, 0.001]
    assert c["grad_norm"][1].tolist() == [2.0, 1.5, 1.2]


def test_read_baselines_prefers_baselines_json(tmp_path):
    assert plots.read_baselines(tmp_path) == {}
    (tmp_path / "summary.json").write_text(json.dumps({"baselines": {"bigram": 2.3}}))
    assert plots.read_baselines(tmp_path) == {"bigram": 2.3}
    (tmp_path / "baselines.json").write_text("{}")  # a run without baselines: none drawn
    assert plots.read_baselines(tmp_path) == {}


def test_nice_ticks():
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(0.13, 0.61) == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    assert nice_ticks(0, 300) == [0, 100, 200, 300]


def test_line_chart_is_valid_svg_with_lines_and_reference_lines():
    svg = line_chart([{"label": "train", "x": [1, 2, 3], "y": [3.0, float("nan"), 2.0]},
                      {"label": "val", "x": [1, 2, 3], "y": [2.9, 2.5, 2.1]}],
                     title="loss", hlines=[(2.3, "bigram", None)])
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "loss" in texts and "train" in texts and "bigram 2.300" in texts
    # the NaN breaks the train line into two single points; val is one polyline
    assert len(root.findall(f".//{SVG}polyline")) == 1
    assert len(root.findall(f".//{SVG}circle")) == 2


def test_log_line_chart_drops_non_positive_values():
    root = ET.fromstring(line_chart([{"label": "g", "x": [0, 1, 2, 3], "y": [1e-3, 0.0, 1, 10]}],
                                    log_y=True))
    pts = [p.get("points").split() for p in root.iter(SVG + "polyline")]
    assert [len(p) for p in pts] == [2]  # (2, 1), (3, 10); the 1e-3 point stands alone
    assert len(root.findall(f".//{SVG}circle")) == 1


def test_scatter_one_dot_per_point():
    root = ET.fromstring(scatter([{"label": "i", "x": [0, 0.5], "y": [1, 0]},
                                  {"label": "f", "x": [0.2], "y": [0.3]}], diagonal=True))
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == 3 + 2  # 3 points + 2 legend markers


def test_training_svg_leaves_out_far_baselines(tmp_path):
    _history_csv(tmp_path / "history.csv")
    html = plots.training_svg(plots.read_history(tmp_path / "history.csv"),
                              {"unigram": 30.0, "bigram": 2.3})
    assert "bigram 2.300" in html and "unigram" not in html
    assert html.count("<svg") == 3


def test_plot_run_writes_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    _history_csv(tmp_path / "history.csv")
    (tmp_path / "baselines.json").write_text(json.dumps({"bigram (add-one)": 2.3}))
    paths = plots.plot_run(tmp_path)
    assert [p.name for p in paths] == ["training.png", "training.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(paths[1]).getroot()
    assert root.tag == SVG + "svg"
    assert "bigram (add-one) (2.300)" in paths[1].read_text()


def test_plot_run_without_history_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    with pytest.raises(FileNotFoundError, match="history.csv not found"):
        plots.plot_run(tmp_path)
    assert main(["plot", str(tmp_path)]) == 2
    assert "history.csv not found" in capsys.readouterr().err


def test_plot_command_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert main(["plot", str(tmp_path)]) == 2
    assert 'pip install "lstm-bptt[plot]"' in capsys.readouterr().err
    assert main(["train", "--plot", "--out-dir", str(tmp_path / "r"), *SMALL]) == 2
    assert 'pip install "lstm-bptt[plot]"' in capsys.readouterr().err


def test_train_plot_redraws_at_every_evaluation(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    text = tmp_path / "hw.txt"
    text.write_text("hello world, hello lstm. " * 400)
    calls = []
    real = plots.plot_run
    monkeypatch.setattr(plots, "plot_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "run"
    assert main(["train", "--text", str(text), "--out-dir", str(out), "--plot", *SMALL]) == 0
    assert len(calls) == 3  # after the evaluations at steps 10 and 20, and once at the end
    assert (out / "training.png").stat().st_size > 0
    assert json.loads((out / "baselines.json").read_text())  # baselines drawn while training
    assert "bigram (add-one)" in (out / "training.svg").read_text()
    assert main(["plot", str(out)]) == 0
    assert str(out / "training.png") in capsys.readouterr().out


def test_task_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["task", "airline", "--quick", "--quiet", "--threads", "1",
                 "--plot", str(tmp_path)]) == 0
    assert (tmp_path / "airline.png").read_bytes()[:4] == b"\x89PNG"
    assert "airline.svg" in capsys.readouterr().out


def test_plot_comparison(tmp_path):
    pytest.importorskip("matplotlib")
    runs = {cell: [{"seed": s, "solved": s == 0, "history": [
        {"step": 10, "train_loss": 1.0 + s}, {"step": 20, "train_loss": 0.5 + s}]}
        for s in range(2)] for cell in ("RNN", "GRU", "LSTM")}
    paths = plots.plot_comparison(runs, "train_loss", tmp_path / "cmp")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    with pytest.raises(ValueError, match="in none of the histories"):
        plots.plot_comparison(runs, "nope", tmp_path / "cmp2")


def test_task_seeds_plot_puts_the_cells_side_by_side(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import shutil

    trials = tmp_path / "trials"
    args = ["task", "airline", "--quick", "--quiet", "--seeds", "2", "--cell", "lstm",
            "--out-dir", str(trials / "airline-lstm-quick")]
    assert main(args) == 0
    # a sweep of another cell type of the same task, in the sibling folder named by its slug
    shutil.copytree(trials / "airline-lstm-quick", trials / "airline-rnn-quick")
    assert main(args + ["--plot", str(tmp_path / "plots")]) == 0  # the trials are reused
    out = capsys.readouterr().out
    png = tmp_path / "plots" / "airline-cells-quick.png"
    assert f"plot: {png}" in out and png.read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "plots" / "airline-cells-quick.svg").read_text()
    assert "RNN" in svg and "LSTM" in svg and "GRU" not in svg  # no GRU sweep: no panel
    assert [r["seed"] for r in plots.read_trials(trials / "airline-rnn-quick")] == [0, 1]

"""``lstm-bptt inspect``: one self-contained HTML file that shows what a trained character model
does, computed by :mod:`lstm_bptt.inspection`.

Sections: the text coloured by a chosen unit's activation (layer, quantity and unit picked on
the page) with the model's top-5 next-character guesses under each character; the units that
best track simple text properties; the saliency of earlier characters for a chosen position;
the gate-saturation scatter; the gradient flow through time; the training curves. Everything
is inline (data as JSON, charts as SVG, a small script): no external assets, opens offline.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from html import escape
from pathlib import Path

import numpy as np

from .. import inspection as ins
from .plots import read_baselines, training_svg
from .svg import PALETTE, line_chart, scatter

QUANTITY_LABELS = {
    "tanh_c": "tanh(c), cell state", "h": "h, hidden state (output)", "c": "c, cell state",
    "i": "i, input gate", "f": "f, forget gate", "g": "g, cell candidate", "o": "o, output gate",
    "r": "r, reset gate", "z": "z, update gate", "n": "n, new state candidate",
}
_SHOW_ORDER = ("tanh_c", "h", "i", "f", "g", "o", "r", "z", "n")
SAL_DECADES = 4  # saliency shading: a log scale over this many decades

__all__ = ["inspect_checkpoint", "build_report", "pick_text"]


def _b64_u8(a: np.ndarray, lo: float, hi: float) -> str:
    q = np.clip(np.rint((np.asarray(a, np.float64) - lo) / (hi - lo) * 255), 0, 255)
    return base64.b64encode(q.astype(np.uint8).tobytes()).decode("ascii")


def _display_char(ch: str, space: str = "\u00a0") -> str:
    """A visible stand-in for whitespace: newline and tab arrows, and ``space`` for a space
    (a no-break space in the text, an open box in the guesses)."""
    return {"\n": "\u21b5", "\t": "\u21e5", " ": space}.get(ch, ch)


def pick_text(extra: dict, text_file=None):
    """The text to inspect and where it came from: ``--text`` if given, else the training text
    named in the checkpoint (the Python documentation by default), from its validation part
    (the last 10%, which the model did not train on).

    Returns (text, description, offset of the validation part or 0).

    Raises
    ------
    ValueError
        No ``--text`` and the training text cannot be found again (or has changed).
    """
    from ..data import load_pydoc_text, load_text

    if text_file is not None:
        return load_text(text_file), str(text_file), 0
    name = extra.get("text", "")
    if name.startswith("Python documentation topics"):
        text = load_pydoc_text()
    elif name and Path(name).is_file():
        text = load_text(name)
    else:
        raise ValueError(f"the checkpoint's training text ({name or 'unknown'}) is not at hand; "
                         "pass one with --text FILE")
    import hashlib

    sha = extra.get("text_sha256")
    if sha and hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
        raise ValueError(f"the training text ({name}) differs from the one the checkpoint was "
                         "trained on; pass the text to show with --text FILE")
    start = int(len(text) * 0.9)
    nl = text.find("\n", start)
    start = nl + 1 if 0 <= nl < len(text) - 100 else start
    return text, f"{name}, validation part (last 10%)", start


def _summaries(history):
    evals = [r for r in history if "val_loss" in r]
    return evals[-1] if evals else {}


def build_report(model, vocab, text: str, *, start: int = 0, length: int = 600,
                 context: int = 200, stats_chars: int = 5000, window: int = 64,
                 flow_window: int = 150, flow_positions: int = 48, history=None,
                 baselines=None, title="lstm-bptt inspect", source="", demo=True) -> str:
    """Compute everything and return the HTML report as a string.

    Parameters
    ----------
    model : CharLM
    vocab : CharVocab of the model
    text : str
    start : int
        First character shown; up to ``context`` characters before it are run through the
        model first (so the shown states are warm) but not shown.
    length : int
        Characters shown (coloured, with guesses and saliency).
    stats_chars : int
        Characters (from ``start``) over which the unit ranking and the gate saturation are
        computed (at least ``length``).
    window : int
        Saliency: earlier characters followed back from each shown position.
    flow_window, flow_positions : int
        Gradient flow: lags followed back, and how many loss positions are averaged.
    history, baselines : training history rows and n-gram baselines (optional)
    demo : bool
        Add the untrained tanh-RNN / LSTM gradient-flow reference chart.

    Raises
    ------
    ValueError
        Characters outside the model's vocabulary, or a text too short.
    """
    if not 0 <= start < len(text):
        raise ValueError(f"--start: expected 0..{len(text) - 1}, got {start}")
    a = max(0, start - context)
    n_stats = max(stats_chars, length)
    sample = text[a : start + n_stats + 1]
    unknown = sorted(set(sample) - set(vocab.chars))
    if unknown:
        raise ValueError(f"the text has {len(unknown)} character(s) the model does not know: "
                         f"{''.join(unknown)[:40]!r}; pick another text or --start")
    ids = vocab.encode(sample)
    off = start - a  # index of the first shown character in ``ids``
    length = min(length, len(ids) - off - 1)
    if length < 2:
        raise ValueError("the text is too short to inspect from --start")
    shown = slice(off, off + length)
    res = ins.lm_inspect(model, ids)
    values = res["values"]
    L = len(values)

    # --- the text, quantities per layer (quantised), top-5 guesses
    qty_data = []
    for lyr, vals in enumerate(values):
        for q in _SHOW_ORDER:
            if q not in vals:
                continue
            lo, hi = (0.0, 1.0) if q in ins.SIGMOID_GATES else (-1.0, 1.0)
            v = np.asarray(vals[q])[shown]
            qty_data.append({"layer": lyr, "q": q, "label": QUANTITY_LABELS.get(q, q),
                             "H": int(v.shape[1]), "lo": lo, "hi": hi,
                             "data": _b64_u8(v, lo, hi)})
    chars = [sample[off + k] for k in range(length)]
    top_ids = res["top_ids"][shown]
    top_p = res["top_probs"][shown]

    # --- unit ranking and saturation over the statistics sample
    stats = slice(off, len(ids))
    props = ins.text_properties(sample[off:])
    acts = {}
    for lyr, vals in enumerate(values):
        for q in ("tanh_c", "h"):
            if q in vals:
                acts[(lyr, q)] = np.asarray(vals[q])[stats]
    ranking = ins.rank_units(acts, props, top=5)
    sat = [ins.gate_saturation({k: np.asarray(v)[stats] for k, v in vals.items()})
           if any(g in vals for g in ins.SIGMOID_GATES) else {} for vals in values]

    # --- saliency for every shown position, gradient flow for positions near the end
    pos = np.arange(off, off + length)
    pos = pos[pos <= len(ids) - 2]
    sal = ins.lm_gradients(model, ids, pos, window=window)
    S = sal["x"].T.astype(np.float64)  # (P, W): saliency of the character `lag` steps back
    smax = np.nanmax(np.where(np.isfinite(S), S, 0), axis=1)
    rel = np.nan_to_num(S / np.maximum(smax, 1e-300)[:, None], nan=0.0)
    # log scale over SAL_DECADES decades below each position's largest value: 0 .. 1
    sal_log = np.clip(1 + np.log10(np.maximum(rel, 1e-300)) / SAL_DECADES, 0, 1)
    fw = min(flow_window, len(ids) - 2)
    cand = np.arange(fw - 1, len(ids) - 1)
    flow_pos = cand[np.linspace(0, len(cand) - 1, min(flow_positions, len(cand))).astype(int)]
    flow = ins.lm_gradients(model, ids, flow_pos, window=fw)

    context_chars = [sample[k] for k in range(max(0, off - window), off)]
    payload = {
        "chars": chars, "vocab": list(vocab.chars),
        "next": [sample[off + k + 1] if off + k + 1 < len(sample) else "" for k in range(length)],
        "top_ids": top_ids.tolist(), "top_p": np.round(top_p, 4).tolist(),
        "loss": np.round(res["loss"][shown.start : shown.start + length], 4).tolist(),
        "quantities": qty_data, "layers": L,
        "saliency": {"W": int(S.shape[1]), "max": [float(f"{m:.4g}") for m in smax],
                     "decades": SAL_DECADES, "data": _b64_u8(sal_log, 0.0, 1.0),
                     "context": context_chars},
        "ranking": [{"property": r["property"], "layer": r["key"][0], "q": r["key"][1],
                     "unit": r["unit"], "r": round(r["r"], 4)} for r in ranking],
    }

    # --- charts
    lag = np.arange(fw)
    series = []
    names = [n for n in ("h", "c") if n in flow]
    for n in names:
        for lyr in range(L):
            med = np.nanmedian(flow[n][:, lyr, :], axis=1)
            series.append({"label": f"||dL/d{n}|| layer {lyr}" if L > 1 else f"||dL/d{n}||",
                           "x": lag, "y": med, "dash": "5 3" if n == "c" else None})
    series.append({"label": "||dL/dx|| (input)", "x": lag, "y": np.nanmedian(flow["x"], axis=1),
                   "color": "#7f7f7f", "dash": "2 3"})
    flow_svg = line_chart(series, title=f"this model (median over {len(flow_pos)} positions)",
                          xlabel="lag t - k (steps back)", ylabel="L2 norm", log_y=True,
                          width=520, height=330, legend="bottom-left")
    sat_svgs = []
    for lyr, s in enumerate(sat):
        if not s:
            continue
        groups = [{"label": f"{g} gate", "x": left, "y": right,
                   "color": PALETTE[k % len(PALETTE)]} for k, (g, (left, right)) in
                  enumerate(s.items())]
        sat_svgs.append(scatter(groups, title=f"gate saturation, layer {lyr}",
                                xlabel="fraction left-saturated (< 0.1)",
                                ylabel="fraction right-saturated (> 0.9)", diagonal=True))
    demo_svg = ""
    if demo:
        d = ins.vanishing_gradient_demo(T=100, hidden_size=32)
        dser = []
        for k, (label, v) in enumerate(d.items()):
            dser.append({"label": f"{label}: h", "x": np.arange(100), "y": v["h"],
                         "color": PALETTE[k % len(PALETTE)]})
            if "c" in v:
                dser.append({"label": f"{label}: c", "x": np.arange(100), "y": v["c"],
                             "color": PALETTE[k % len(PALETTE)], "dash": "5 3"})
        demo_svg = line_chart(dser, title="for comparison: untrained models, H = 32",
                              xlabel="lag t - k (steps back)", ylabel="L2 norm", log_y=True,
                              width=520, height=330, legend="bottom-left")
    train_svg = training_svg(history, baselines) if history else ""

    last = _summaries(history or [])
    shown_loss = float(np.mean(res["loss"][shown.start : shown.start + length]))
    facts = [f"model: {escape(repr(model))}"]
    if last:
        facts.append(f"step {int(last['step'])}: validation {last['val_loss']:.4f} nats/char")
    facts.append(f"loss on the shown text: {shown_loss:.4f} nats/char "
                 f"({shown_loss / math.log(2):.3f} bits/char)")
    if source:
        facts.append(f"text: {escape(source)}, characters {start:,}..{start + length:,}")
    return _HTML.format(
        title=escape(title), facts=" &middot; ".join(facts),
        text_spans=_text_spans(chars, top_ids, top_p, vocab.chars, payload["next"]),
        ranking_rows=_ranking_rows(payload["ranking"]),
        sat_svgs="\n".join(sat_svgs) or "<p>This cell type has no sigmoid gates.</p>",
        flow_svg=flow_svg, demo_svg=demo_svg, train_svg=train_svg or
        "<p>No training history in the checkpoint.</p>",
        stats_n=f"{len(ids) - off:,}", window=int(S.shape[1]), fw=fw, decades=SAL_DECADES,
        data=json.dumps(payload, separators=(",", ":")).replace("</", "<\\/"),
        style=_CSS, script=_JS)


def _text_spans(chars, top_ids, top_p, vocab_chars, nxt) -> str:
    out = []
    for k, ch in enumerate(chars):
        guesses = []
        for j, p in zip(top_ids[k], top_p[k], strict=True):
            g = vocab_chars[int(j)]
            hit = " hit" if g == nxt[k] else ""
            # light blue to mid blue: the guessed character stays readable at p = 1
            guesses.append(f'<span class="g{hit}" style="background:rgba(60,130,220,'
                           f'{0.6 * float(p):.2f})" title="{float(p):.3f}">'
                           f"{escape(_display_char(g, space=chr(0x2423)))}</span>")
        out.append(f'<span class="col" data-i="{k}"><span class="ch">'
                   f"{escape(_display_char(ch))}</span>"
                   f'<span class="gs">{"".join(guesses)}</span></span>')
        if ch == "\n":
            out.append('<span class="br"></span>')
    return "".join(out)


def _ranking_rows(ranking) -> str:
    rows = []
    for r in ranking:
        rows.append(f'<tr data-layer="{r["layer"]}" data-q="{r["q"]}" data-unit="{r["unit"]}">'
                    f'<td>{escape(r["property"])}</td><td>{r["layer"]}</td>'
                    f'<td>{escape(QUANTITY_LABELS.get(r["q"], r["q"]))}</td>'
                    f'<td>{r["unit"]}</td><td>{r["r"]:+.3f}</td></tr>')
    return "\n".join(rows)


def inspect_checkpoint(checkpoint, out_dir, text_file=None, *, start=None, length=600,
                       lstmvis=False, **kw) -> Path:
    """Write ``OUT_DIR/report.html`` for a ``lstm-bptt train`` checkpoint.

    Parameters
    ----------
    checkpoint : path of ``checkpoint.npz``
    out_dir : folder (created); the report is ``report.html`` in it
    text_file : path, optional; default: the checkpoint's training text, validation part
    start : int, optional; first character shown (default 0 for ``--text``, the start of the
        validation part otherwise)
    length : int; characters shown
    lstmvis : bool; also export the states of the shown text for LSTMVis into
        ``OUT_DIR/lstmvis/`` (needs h5py)
    **kw : passed to :func:`build_report`

    Returns
    -------
    Path of the report

    Raises
    ------
    ValueError
        Not a character-model checkpoint, a directory given as checkpoint, or a text problem.
    """
    from ..checkpoint import load_checkpoint
    from ..data import CharVocab
    from ..models import build_model

    ckpt = Path(checkpoint)
    if ckpt.is_dir():
        raise ValueError(f"--checkpoint {ckpt} is a directory; pass the file, e.g. "
                         f"{ckpt / 'checkpoint.npz'}")
    tree = load_checkpoint(ckpt)
    extra = tree.get("extra", {})
    if tree.get("model", {}).get("class") != "CharLM" or "vocab" not in extra:
        raise ValueError(f"{ckpt} is not a character language model checkpoint (written by "
                         "`lstm-bptt train`)")
    model = build_model("CharLM", tree["model"]["config"], rng=0)
    model.load_params(tree["params"])
    vocab = CharVocab.from_array(extra["vocab"])
    text, source, default_start = pick_text(extra, text_file)
    start = default_start if start is None else int(start)
    html = build_report(model, vocab, text, start=start, length=length,
                        history=tree.get("history") or [], baselines=read_baselines(ckpt.parent),
                        title=f"lstm-bptt inspect: {ckpt.name}", source=source, **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    if lstmvis:
        ids = vocab.encode(text[start : start + length])
        values = ins.lm_inspect(model, ids)["values"]
        ins.export_lstmvis(out / "lstmvis", ids, list(vocab.chars), values,
                           name=f"lstm-bptt {ckpt.name}")
    return path


_CSS = """
:root { --fg:#222; --muted:#666; --line:#ddd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); margin: 0 auto; padding: 12px 18px;
       max-width: 1280px; }
h1 { font-size: 20px; margin: 4px 0; } h2 { font-size: 16px; margin: 22px 0 6px;
     border-bottom: 1px solid var(--line); padding-bottom: 3px; }
.facts, .note { color: var(--muted); font-size: 13px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 6px 0; }
.controls label { white-space: nowrap; }
select, input { font: inherit; }
input[type=number] { width: 5.5em; }
#info { font-family: ui-monospace, monospace; font-size: 12px; min-height: 2.9em;
        background: #f6f6f6; padding: 4px 8px; border-radius: 4px; white-space: pre-wrap; }
.text { display: flex; flex-wrap: wrap; align-items: flex-start; font-family: ui-monospace,
        Menlo, Consolas, monospace; font-size: 14px; line-height: 1.25; margin-top: 6px; }
.col { display: inline-flex; flex-direction: column; align-items: stretch; cursor: pointer;
       margin-bottom: 2px; }
.ch { padding: 1px 0; min-width: 0.62em; text-align: center; white-space: pre; }
.col.sel .ch { outline: 2px solid #000; outline-offset: -1px; }
.gs { display: none; flex-direction: column; font-size: 10px; line-height: 1.15; }
.text.guesses .gs { display: flex; }
.text.guesses .col { margin-bottom: 6px; }
.g { text-align: center; color: #000; white-space: pre; }
.g.hit { box-shadow: inset 0 0 0 1px rgba(0, 0, 0, 0.5); font-weight: 700; }
.br { flex-basis: 100%; height: 0; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid var(--line); padding: 2px 8px; text-align: left; }
tbody tr { cursor: pointer; } tbody tr:hover { background: #eef4ff; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 18px; align-items: flex-start; }
svg.chart { width: 100%; height: auto; min-width: 0; }
#sal { display: flex; flex-wrap: wrap; font-family: ui-monospace, monospace; font-size: 14px; }
#sal span { white-space: pre; padding: 1px 0; min-width: 0.62em; text-align: center; }
#sal .target { outline: 2px solid #000; }
#sal .pred { color: #888; }
.legend-bar { display: inline-block; width: 120px; height: 10px; vertical-align: middle;
              border: 1px solid #ccc; }
@media (max-width: 600px) { body { padding: 8px; } .text { font-size: 13px; } }
"""

_JS = """
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const cols = Array.from(document.querySelectorAll('#text .col'));
  const Q = D.quantities.map(q => {
    const bin = atob(q.data), u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    return Object.assign({}, q, {u8: u8});
  });
  const layerSel = document.getElementById('layer'), qSel = document.getElementById('qty');
  const unitIn = document.getElementById('unit'), info = document.getElementById('info');
  for (let l = 0; l < D.layers; l++) layerSel.add(new Option('layer ' + l, l));
  function qList() { return Q.filter(q => q.layer == layerSel.value); }
  function fillQ(keep) {
    qSel.innerHTML = '';
    qList().forEach(q => qSel.add(new Option(q.label, q.q)));
    if (keep && qList().some(q => q.q == keep)) qSel.value = keep;
  }
  function cur() { return qList().find(q => q.q == qSel.value); }
  function val(q, t, u) { return q.lo + (q.hi - q.lo) * q.u8[t * q.H + u] / 255; }
  function color(q, v) {
    if (q.lo < 0) {  // signed: blue (-1) .. white (0) .. red (+1)
      const a = Math.min(1, Math.abs(v));
      return v < 0 ? `rgba(33,102,172,${a})` : `rgba(214,39,40,${a})`;
    }
    return `rgba(30,140,60,${v})`;  // gates: white (0) .. green (1)
  }
  function paint() {
    const q = cur(); if (!q) return;
    unitIn.max = q.H - 1;
    let u = Math.max(0, Math.min(q.H - 1, parseInt(unitIn.value || '0', 10)));
    unitIn.value = u;
    document.getElementById('unitmax').textContent = q.H - 1;
    cols.forEach((c, t) => {
      c.firstChild.style.background = color(q, val(q, t, u));
    });
    document.getElementById('scale').style.background = q.lo < 0 ?
      'linear-gradient(90deg, rgb(33,102,172), #fff, rgb(214,39,40))' :
      'linear-gradient(90deg, #fff, rgb(30,140,60))';
    document.getElementById('scalelo').textContent = q.lo;
    document.getElementById('scalehi').textContent = q.hi;
  }
  function show(t) {
    const q = cur(), u = parseInt(unitIn.value, 10);
    const guesses = D.top_ids[t].map((id, j) =>
      JSON.stringify(D.vocab[id]) + ' ' + D.top_p[t][j].toFixed(3)).join(', ');
    info.textContent = `position ${t} ${JSON.stringify(D.chars[t])}: ${q.label} unit ${u} = ` +
      `${val(q, t, u).toFixed(2)}\\nnext ${JSON.stringify(D.next[t])} ` +
      `(loss ${D.loss[t] !== undefined ? D.loss[t].toFixed(3) : '-'} nats); top 5: ${guesses}`;
  }
  const S = D.saliency, sal = (() => {
    const bin = atob(S.data), u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    return u8;
  })();
  const posIn = document.getElementById('pos');
  posIn.max = Math.min(D.chars.length, S.max.length) - 1;
  function saliency(t) {
    t = Math.max(0, Math.min(S.max.length - 1, t)); posIn.value = t;
    cols.forEach(c => c.classList.remove('sel')); cols[t].classList.add('sel');
    const box = document.getElementById('sal'); box.innerHTML = '';
    const all = S.context.concat(D.chars), at = S.context.length + t;
    for (let lag = Math.min(S.W - 1, at); lag >= 0; lag--) {
      const ch = all[at - lag], v = sal[t * S.W + lag] / 255;
      const s = document.createElement('span');
      s.textContent = ch == '\\n' ? '\\u21b5' : ch;
      s.style.background = `rgba(230,120,0,${v})`;
      const abs = v > 0 ? S.max[t] * Math.pow(10, (v - 1) * S.decades) : 0;
      s.title = `lag ${lag}: ${v > 0 ? '\\u2248 ' + abs.toExponential(1) : '< ' +
        (S.max[t] * Math.pow(10, -S.decades)).toExponential(1)}`;
      if (lag == 0) s.className = 'target';
      box.appendChild(s);
    }
    const p = document.createElement('span'); p.className = 'pred';
    p.textContent = ' \\u2192 ' + (D.next[t] == '\\n' ? '\\u21b5' : D.next[t]);
    box.appendChild(p);
    document.getElementById('salinfo').textContent =
      `largest ||dL/dx|| = ${S.max[t].toExponential(2)} (loss of predicting ` +
      `${JSON.stringify(D.next[t])} after position ${t})`;
  }
  layerSel.onchange = () => { fillQ(qSel.value); paint(); };
  qSel.onchange = paint; unitIn.oninput = paint;
  document.getElementById('prev').onclick = () => { unitIn.value = +unitIn.value - 1; paint(); };
  document.getElementById('next').onclick = () => { unitIn.value = +unitIn.value + 1; paint(); };
  document.getElementById('guesses').onchange = e =>
    document.getElementById('text').classList.toggle('guesses', e.target.checked);
  posIn.oninput = () => saliency(parseInt(posIn.value || '0', 10));
  cols.forEach((c, t) => {
    c.onmouseenter = () => show(t);
    c.onclick = () => { saliency(t); show(t); };
  });
  document.querySelectorAll('#ranking tbody tr').forEach(tr => tr.onclick = () => {
    layerSel.value = tr.dataset.layer; fillQ(tr.dataset.q); qSel.value = tr.dataset.q;
    unitIn.value = tr.dataset.unit; paint();
    document.getElementById('textsec').scrollIntoView({behavior: 'smooth'});
  });
  fillQ(D.ranking.length ? D.ranking[0].q : null);
  if (D.ranking.length) { layerSel.value = D.ranking[0].layer; fillQ(D.ranking[0].q);
    unitIn.value = D.ranking[0].unit; }
  paint(); show(0); saliency(Math.min(S.max.length - 1, 80));
})();
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body>
<h1>{title}</h1>
<p class="facts">{facts}</p>

<section id="textsec"><h2>Activations over the text</h2>
<div class="controls">
 <label>layer <select id="layer"></select></label>
 <label>quantity <select id="qty"></select></label>
 <label>unit <button id="prev" type="button">&minus;</button>
  <input id="unit" type="number" min="0" value="0">
  <button id="next" type="button">+</button> of 0..<span id="unitmax"></span></label>
 <label><input id="guesses" type="checkbox" checked> top-5 next-character guesses</label>
 <span class="note"><span id="scalelo"></span> <span id="scale" class="legend-bar"></span>
  <span id="scalehi"></span></span>
</div>
<div id="info"></div>
<div id="text" class="text guesses">{text_spans}</div>
<p class="note">Each character is coloured by the chosen unit's value after reading it. Under
it, the model's five most likely next characters, shaded by probability (a box marks the
character that actually came). Hover for values; click a character to see its saliency.</p>
</section>

<section id="ranksec"><h2>Units that track properties of the text</h2>
<p class="note">|Pearson correlation| between a unit's tanh(c) or h and a property computed from
the text, over {stats_n} characters; click a row to show that unit above.</p>
<table id="ranking"><thead><tr><th>property</th><th>layer</th><th>quantity</th><th>unit</th>
<th>r</th></tr></thead><tbody>
{ranking_rows}
</tbody></table>
</section>

<section id="salsec"><h2>Saliency: which earlier characters a prediction depended on</h2>
<div class="controls"><label>position <input id="pos" type="number" min="0" value="0"></label>
<span class="note" id="salinfo"></span></div>
<div id="sal"></div>
<p class="note">||dL_t/dx_k||: the gradient of the loss of the prediction after position t
with respect to each of the {window} characters before it (one-hot inputs; Madsen 2019),
shaded on a log scale: full colour for the largest, none for {decades} decades below it.
Hover a character for its value.</p>
</section>

<section id="satsec"><h2>Gate saturation</h2>
<p class="note">One dot per unit and gate: the fraction of the {stats_n} characters at which
the gate is below 0.1 (left-saturated) and above 0.9 (right-saturated), as in Karpathy,
Johnson &amp; Fei-Fei (2015), figure 3. Dots near the dashed line are nearly always saturated;
near the origin, seldom.</p>
<div class="charts">{sat_svgs}</div>
</section>

<section id="flowsec"><h2>Gradient flow through time</h2>
<p class="note">For the loss at position t, the norm of its gradient with respect to the
states h_k, c_k and the input x_k, k = t - lag steps earlier, followed back {fw} steps (dL/dc
starts at lag 1: the loss reads h_t). For comparison, the same for untrained models on random
input (PyTorch's initialisation): the tanh RNN's gradient vanishes within a few dozen steps;
along an LSTM's cell path each step multiplies it by about the forget gate, sigmoid(b_f)
(b_f = 1: 0.73 per step; b_f = 5: 0.993).</p>
<div class="charts">{flow_svg}
{demo_svg}</div>
</section>

<section id="trainsec"><h2>Training curves</h2>
<div class="charts">{train_svg}</div>
</section>

<script id="data" type="application/json">{data}</script>
<script>{script}</script>
</body></html>
"""


def cmd_inspect(args) -> int:
    """`lstm-bptt inspect`: write the HTML report (and the LSTMVis export); exit status."""
    out = args.out if args.out is not None else Path(args.checkpoint).parent / "inspect"
    # paths checked before the model runs, so a typo costs no report computation
    if args.text is not None and not Path(args.text).is_file():
        what = "a directory or special file" if Path(args.text).exists() else "no such file"
        raise ValueError(f"--text: expected a UTF-8 text file, got {what}: {args.text}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out: expected a folder for report.html, got an existing file: {out}")
    if args.lstmvis:
        try:
            import h5py  # noqa: F401
        except ImportError:
            print('lstm-bptt inspect: error: --lstmvis needs h5py: pip install '
                  '"lstm-bptt[lstmvis]"', file=sys.stderr)
            return 2
    path = inspect_checkpoint(args.checkpoint, out, args.text, start=args.start,
                              length=args.length, lstmvis=args.lstmvis, window=args.window,
                              demo=not args.no_demo)
    print(path)
    if args.lstmvis:
        print(Path(out) / "lstmvis" / "lstm.yml")
    return 0


def add_inspect_parser(sub, fmt, positive_int, nonneg_int) -> None:
    """The ``inspect`` subcommand (called by :func:`lstm_bptt.experiments.cli.build_parser`)."""
    p = sub.add_parser(
        "inspect", formatter_class=fmt,
        help="look inside a trained char model: one self-contained HTML report",
        description="Write OUT/report.html for a `lstm-bptt train` checkpoint: the text "
                    "coloured by any unit's activation, top-5 guesses, units that track text "
                    "properties, saliency, gate saturation, gradient flow, training curves. "
                    "No external assets: it opens offline in any browser.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz from `train`")
    p.add_argument("--text", metavar="FILE", help="UTF-8 text to show (default: the validation "
                   "part of the training text)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: CHECKPOINT's folder/"
                   "inspect)")
    p.add_argument("--start", type=nonneg_int, default=None,
                   help="first character shown (default: 0, or the start of the validation "
                        "part)")
    p.add_argument("--length", type=positive_int, default=600, help="characters shown")
    p.add_argument("--window", type=positive_int, default=64,
                   help="saliency: earlier characters followed back")
    p.add_argument("--lstmvis", action="store_true",
                   help="also export the states for LSTMVis into OUT/lstmvis (needs h5py)")
    p.add_argument("--no-demo", action="store_true",
                   help="leave out the untrained RNN/LSTM gradient-flow reference chart")
    p.set_defaults(func=cmd_inspect)

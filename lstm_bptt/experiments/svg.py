"""Small inline-SVG charts (line and scatter) for self-contained HTML reports; no dependencies.

The charts scale with the page (``viewBox``, ``width: 100%``) and use only inline attributes, so
an HTML file that embeds them opens offline in any browser.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

_FONT = 'font-family="system-ui, sans-serif"'


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:.4g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v / step) * step)
        v += step
    return ticks


class _Axes:
    """Maps data to pixels inside a plot box; log axes map log10 of the data."""

    def __init__(self, width, height, xlim, ylim, log_x, log_y, left=62, right=14, top=30,
                 bottom=44):
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top
        self.log_x, self.log_y = log_x, log_y
        self.xlim = tuple(map(self._tx, xlim))
        self.ylim = tuple(map(self._ty, ylim))

    def _tx(self, v):
        return math.log10(v) if self.log_x else v

    def _ty(self, v):
        return math.log10(v) if self.log_y else v

    def px(self, v):
        a, b = self.xlim
        return self.x0 + (self._tx(v) - a) / ((b - a) or 1) * (self.x1 - self.x0)

    def py(self, v):
        a, b = self.ylim
        return self.y0 + (self._ty(v) - a) / ((b - a) or 1) * (self.y1 - self.y0)


def _limits(values, log: bool, pad: float = 0.04):
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)
                    and (x > 0 or not log)], float)
    if v.size == 0:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1:
            lo, hi = lo - 0.5, hi + 0.5
        return 10 ** math.floor(lo), 10 ** math.ceil(hi)
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
    d = (hi - lo) * pad
    return lo - d, hi + d


def _axes_svg(ax: _Axes, title, xlabel, ylabel) -> list[str]:
    out = [f'<rect x="{ax.x0}" y="{ax.y1}" width="{ax.x1 - ax.x0}" height="{ax.y0 - ax.y1}" '
           'fill="#fff" stroke="#999"/>']
    for vals, log, is_x in ((ax.xlim, ax.log_x, True), (ax.ylim, ax.log_y, False)):
        if log:
            ticks = [10.0 ** k for k in range(math.ceil(vals[0] - 1e-9),
                                              math.floor(vals[1] + 1e-9) + 1)]
            if len(ticks) > 8:
                step = math.ceil(len(ticks) / 7)
                ticks = ticks[::step]
        else:
            ticks = nice_ticks(vals[0], vals[1])
        for t in ticks:
            if is_x:
                p = ax.px(t)
                out.append(f'<line x1="{p:.1f}" y1="{ax.y0}" x2="{p:.1f}" y2="{ax.y1}" '
                           'stroke="#eee"/>')
                out.append(f'<text x="{p:.1f}" y="{ax.y0 + 15}" font-size="11" '
                           f'text-anchor="middle" {_FONT}>{_fmt(t)}</text>')
            else:
                p = ax.py(t)
                out.append(f'<line x1="{ax.x0}" y1="{p:.1f}" x2="{ax.x1}" y2="{p:.1f}" '
                           'stroke="#eee"/>')
                out.append(f'<text x="{ax.x0 - 5}" y="{p + 4:.1f}" font-size="11" '
                           f'text-anchor="end" {_FONT}>{_fmt(t)}</text>')
    out.append(f'<text x="{(ax.x0 + ax.x1) / 2:.0f}" y="{ax.h - 8}" font-size="12" '
               f'text-anchor="middle" {_FONT}>{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14 {(ax.y0 + ax.y1) / 2:.0f}) rotate(-90)" '
               f'font-size="12" text-anchor="middle" {_FONT}>{escape(ylabel)}</text>')
    out.append(f'<text x="{ax.x0}" y="18" font-size="13" font-weight="600" {_FONT}>'
               f'{escape(title)}</text>')
    return out


def _legend(ax: _Axes, items, where="top-right") -> list[str]:
    """Legend box in a corner ("top-right" or "bottom-left"): items = [(label, color, dash,
    marker)]."""
    if not items:
        return []
    width = 16 + 7 * max(len(lbl) for lbl, *_ in items)
    height = 14 * len(items) + 6
    x, y = ax.x1 - width - 6, ax.y1 + 6
    if where == "bottom-left":
        x, y = ax.x0 + 6, ax.y0 - height - 6
    out = [f'<rect x="{x}" y="{y}" width="{width}" height="{height}" '
           'fill="#fff" fill-opacity="0.85" stroke="#ccc"/>']
    for k, (label, color, dash, marker) in enumerate(items):
        yy = y + 12 + 14 * k
        if marker:
            out.append(f'<circle cx="{x + 10}" cy="{yy - 4}" r="3.5" fill="{color}"/>')
        else:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{x + 4}" y1="{yy - 4}" x2="{x + 18}" y2="{yy - 4}" '
                       f'stroke="{color}" stroke-width="2"{d}/>')
        out.append(f'<text x="{x + 22}" y="{yy}" font-size="11" {_FONT}>{escape(label)}</text>')
    return out


def line_chart(series, *, title="", xlabel="", ylabel="", log_x=False, log_y=False,
               hlines=(), width=560, height=320, legend="top-right",
               css_class="chart") -> str:
    """An SVG line chart.

    Parameters
    ----------
    series : list of dict
        ``{"label": str, "x": sequence, "y": sequence, "color": optional, "dash": optional
        stroke-dasharray}``; NaN/inf (and non-positive values on a log axis) break the line.
    hlines : list of (y, label, color)
        Horizontal reference lines (e.g. n-gram baselines), drawn dashed and labelled.
    legend : "top-right" or "bottom-left"

    Returns
    -------
    str : an ``<svg>`` element
    """
    xs = [v for s in series for v in np.asarray(s["x"], float)]
    ys = [v for s in series for v in np.asarray(s["y"], float)] + [h[0] for h in hlines]
    ax = _Axes(width, height, _limits(xs, log_x, 0.0), _limits(ys, log_y), log_x, log_y)
    out = [f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {width} {height}" style="flex: 1 1 {width}px; max-width:{width}px" '
           f'role="img" '
           f'aria-label="{escape(title)}">']
    out += _axes_svg(ax, title, xlabel, ylabel)
    items = []
    placed = []  # label baselines already used: a close one goes below its line instead
    for k, (yv, label, color) in enumerate(sorted(hlines, key=lambda h: h[0])):
        color = color or PALETTE[(k + 5) % len(PALETTE)]
        p = ax.py(yv)
        if not (ax.y1 <= p <= ax.y0):
            continue
        out.append(f'<line x1="{ax.x0}" y1="{p:.1f}" x2="{ax.x1}" y2="{p:.1f}" '
                   f'stroke="{color}" stroke-dasharray="5 4" stroke-width="1.2"/>')
        # above the line at the left; if that collides with a label already placed, at the
        # right end instead (close baselines, e.g. two 5-gram models, stay readable)
        ty, x, anchor = p - 3, ax.x0 + 4, "start"
        if any(abs(ty - q) < 11 and a == anchor for q, a in placed):
            x, anchor = ax.x1 - 4, "end"
        placed.append((ty, anchor))
        out.append(f'<text x="{x}" y="{ty:.1f}" font-size="10" fill="{color}" '
                   f'text-anchor="{anchor}" {_FONT}>{escape(label)} {yv:.3f}</text>')
    for k, s in enumerate(series):
        color = s.get("color") or PALETTE[k % len(PALETTE)]
        dash = s.get("dash")
        segs, cur = [], []
        for xv, yv in zip(np.asarray(s["x"], float), np.asarray(s["y"], float), strict=True):
            ok = math.isfinite(xv) and math.isfinite(yv) and (yv > 0 or not log_y) and (
                xv > 0 or not log_x)
            if ok:
                cur.append(f"{ax.px(xv):.1f},{ax.py(yv):.1f}")
            elif cur:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
        d = f' stroke-dasharray="{dash}"' if dash else ""
        for seg in segs:
            if len(seg) == 1:
                x, y = seg[0].split(",")
                out.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>')
            else:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{d} '
                           f'points="{" ".join(seg)}"/>')
        items.append((s["label"], color, dash, False))
    out += _legend(ax, items, legend)
    out.append("</svg>")
    return "\n".join(out)


def scatter(groups, *, title="", xlabel="", ylabel="", xlim=(0, 1), ylim=(0, 1), width=360,
            height=340, diagonal=False, css_class="chart") -> str:
    """An SVG scatter plot: groups = [{"label", "x", "y", "color"}], one dot per point.

    ``diagonal`` draws the line x + y = 1 (every step saturated one way or the other).
    """
    ax = _Axes(width, height, xlim, ylim, False, False, left=46)
    out = [f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {width} {height}" style="flex: 1 1 {width}px; max-width:{width}px" '
           f'role="img" '
           f'aria-label="{escape(title)}">']
    out += _axes_svg(ax, title, xlabel, ylabel)
    if diagonal:
        out.append(f'<line x1="{ax.px(0):.1f}" y1="{ax.py(1):.1f}" x2="{ax.px(1):.1f}" '
                   f'y2="{ax.py(0):.1f}" stroke="#bbb" stroke-dasharray="3 3"/>')
    legend = []
    for k, g in enumerate(groups):
        color = g.get("color") or PALETTE[k % len(PALETTE)]
        for xv, yv in zip(np.asarray(g["x"], float), np.asarray(g["y"], float), strict=True):
            out.append(f'<circle cx="{ax.px(xv):.1f}" cy="{ax.py(yv):.1f}" r="2.6" '
                       f'fill="{color}" fill-opacity="0.55"/>')
        legend.append((g["label"], color, None, True))
    out += _legend(ax, legend)
    out.append("</svg>")
    return "\n".join(out)

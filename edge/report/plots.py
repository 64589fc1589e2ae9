"""The report's charts as data URIs: matplotlib (the `plot` extra) when installed, else edge.report.svg.

Both back ends draw the same three charts from the same arguments, so the report reads the same either way."""

from __future__ import annotations

import io
from collections.abc import Sequence

from firstwords.edge.report import svg
from firstwords.edge.report.png import data_uri


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


class Plotter:
    """use_matplotlib: None = when installed."""

    def __init__(self, use_matplotlib: bool | None = None):
        self.mpl = have_matplotlib() if use_matplotlib is None else use_matplotlib
        self.backend = "matplotlib" if self.mpl else "built-in SVG"

    def _figure(self, w: float = 6.4, h: float = 3.2):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt, *plt.subplots(figsize=(w, h), dpi=100)

    @staticmethod
    def _png(plt, fig) -> str:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return data_uri(buf.getvalue(), "image/png")

    def line_chart(self, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str, xlabel: str,
                   ylabel: str) -> str:
        if not self.mpl:
            return data_uri(svg.line_chart(series, title, xlabel, ylabel), "image/svg+xml")
        plt, fig, ax = self._figure()
        for label, xs, ys in series:
            ax.step(xs, ys, where="post", label=label, linewidth=2)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        return self._png(plt, fig)

    def bar_chart(self, groups: Sequence[str],
                  series: Sequence[tuple[str, Sequence[float], Sequence[tuple[float, float]]]],
                  chance: float, title: str, ylabel: str) -> str:
        if not self.mpl:
            return data_uri(svg.bar_chart(groups, series, chance, title, ylabel), "image/svg+xml")
        import numpy as np

        plt, fig, ax = self._figure(max(6.4, 0.9 * len(groups) * max(1, len(series))), 3.2)
        x = np.arange(len(groups))
        width = 0.8 / max(len(series), 1)
        for i, (label, vals, cis) in enumerate(series):
            v = np.asarray(vals, float)
            err = np.array([[max(0.0, a - lo) for a, (lo, _) in zip(v, cis)],
                            [max(0.0, hi - a) for a, (_, hi) in zip(v, cis)]])
            ax.bar(x + i * width - 0.4 + width / 2, v, width * 0.92, yerr=err, capsize=3, label=label)
        ax.axhline(chance, color="k", linestyle="--", linewidth=1, label=f"chance {chance:.2f}")
        ax.set_xticks(x, list(groups), fontsize=8)
        ax.set(title=title, ylabel=ylabel, ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(series) + 1, frameon=False)
        return self._png(plt, fig)

    def scatter(self, points: Sequence[tuple[float, float, str, str, str]], title: str, xlabel: str,
                ylabel: str) -> str:
        if not self.mpl:
            return data_uri(svg.scatter(points, title, xlabel, ylabel), "image/svg+xml")
        plt, fig, ax = self._figure(6.4, 4.2)
        groups = sorted({p[2] for p in points if p[2]})
        colour = {g: svg.PALETTE[i % len(svg.PALETTE)] for i, g in enumerate(groups)}
        for g in groups:
            pts = [p for p in points if p[2] == g and p[3] == "o"]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.45, color=colour[g], label=g)
        for x, y, g, marker, label in points:
            if marker == "s":
                ax.scatter([x], [y], s=60, marker="s", color=colour.get(g, svg.GREY), edgecolors="k")
                ax.annotate(label, (x, y), xytext=(5, 3), textcoords="offset points", fontsize=8, weight="bold")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if groups:
            ax.legend(fontsize=7, loc="best", markerscale=2)
        return self._png(plt, fig)

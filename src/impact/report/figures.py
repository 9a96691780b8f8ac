"""The report's figures: matplotlib, rendered to SVG, embedded as ``data:`` URIs.

Deterministic: the SVG writer's id salt is fixed (``svg.hashsalt``), no date is written,
text is drawn as paths (``svg.fonttype = "path"``: no font is needed to view the image, and
none is fetched), and the RDF metadata block and the DOCTYPE line (which names a DTD by
URL) are removed. The same data therefore give byte-identical images.

Figures never use :mod:`matplotlib.pyplot` (no global figure registry, no GUI backend):
each is a :class:`matplotlib.figure.Figure` saved with the SVG backend.

Suppressed points arrive as nulls (see :mod:`impact.report.data`) and become gaps.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.collections
import matplotlib.transforms
import numpy as np
import polars as pl
from matplotlib.figure import Figure

__all__ = [
    "PARTICIPANTS",
    "TWINS",
    "Image",
    "balance_figure",
    "event_study_figure",
    "forest_figure",
    "income_curves_figure",
    "km_figure",
    "pre_trajectories_figure",
]

#: width of every figure, inches (at 96 px per inch: about the width of the report's text)
WIDTH = 9.6
#: colours (colour-blind safe pair) of participants and twins
PARTICIPANTS = "#1f5fa8"
TWINS = "#c7601d"
CANDIDATES = "#7a7a7a"
_RC: dict[str, Any] = {
    "svg.hashsalt": "impact-report",
    "svg.fonttype": "path",
    "svg.image_inline": True,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "path.simplify": False,
    "lines.linewidth": 1.4,
}
_DROP = (re.compile(r"<!DOCTYPE[^>]*>\s*", re.S), re.compile(r"\s*<metadata>.*?</metadata>",
                                                              re.S))
_SIZE = re.compile(r'<svg[^>]*?\bwidth="([0-9.]+)pt"[^>]*?\bheight="([0-9.]+)pt"')


@dataclass(frozen=True)
class Image:
    """One rendered figure.

    Attributes
    ----------
    uri
        ``data:image/svg+xml;base64,...``.
    width, height
        Size in CSS pixels.
    """

    uri: str
    width: int
    height: int


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _encode(fig: Figure) -> Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue().decode("utf-8")
    for pattern in _DROP:
        text = pattern.sub("", text, count=1)
    m = _SIZE.search(text)
    w, h = (float(m.group(1)), float(m.group(2))) if m else (576.0, 288.0)
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return Image(f"data:image/svg+xml;base64,{data}", round(w * 4 / 3), round(h * 4 / 3))


def _arr(df: pl.DataFrame, col: str, scale: float = 1.0) -> np.ndarray:
    if col not in df.columns:
        return np.full(df.height, np.nan)
    return df[col].cast(pl.Float64).fill_null(float("nan")).to_numpy() * scale


def _months_axis(ax: Any, label: str) -> None:
    ax.set_xlabel(label)
    ax.axhline(0, color="#444444", linewidth=0.8, zorder=1)


# --------------------------------------------------------------------------- event study


def event_study_figure(df: pl.DataFrame, *, clock: str, ylabel: str, scale: float = 1.0
                       ) -> Image:
    """Effect by event time with pointwise CI and the uniform band.

    Parameters
    ----------
    df
        Rows of one event-study series: ``horizon``, ``net``, ``ci_low``, ``ci_high``,
        ``band_low``, ``band_high`` (nulls for suppressed months).
    clock
        ``"end"`` (months from leaving) or ``"start"`` (months from the start).
    ylabel
        Axis label (both languages).
    scale
        Multiplier of every value (100 for shares: percentage points).
    """
    df = df.sort("horizon")
    x = df["horizon"].cast(pl.Float64).to_numpy()
    with _style():
        fig = _figure(WIDTH, 4.4)
        ax = fig.subplots()
        lo, hi = float(np.nanmin(x)) if x.size else -1, float(np.nanmax(x)) if x.size else 1
        if clock == "start":
            ax.axvspan(lo - 0.5, -0.5, color="#efe7d4", zorder=0,
                       label="before the start: placebo / pirms sākuma: placebo")
            ax.axvline(-0.5, color="#8a6d3b", linewidth=0.8, linestyle=":")
            xlabel = "Months from the start of training / Mēneši kopš mācību sākuma"
        else:
            ax.axvspan(lo - 0.5, -0.5, color="#f1f1f1", zorder=0,
                       label="before leaving / pirms dalības beigām")
            ax.axvline(-0.5, color="#666666", linewidth=0.8, linestyle=":")
            xlabel = "Months from leaving training / Mēneši kopš dalības beigām"
        ax.fill_between(x, _arr(df, "band_low", scale), _arr(df, "band_high", scale),
                        color=PARTICIPANTS, alpha=0.12, linewidth=0,
                        label="95 % uniform band / vienlaidu josla")
        ax.fill_between(x, _arr(df, "ci_low", scale), _arr(df, "ci_high", scale),
                        color=PARTICIPANTS, alpha=0.28, linewidth=0,
                        label="95 % CI (pointwise) / TI (punktveida)")
        ax.plot(x, _arr(df, "net", scale), color=PARTICIPANTS, marker="o", markersize=2.2,
                label="net effect / neto ietekme")
        _months_axis(ax, xlabel)
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.set_ylabel(ylabel)
        fig.legend(loc="outside lower center", frameon=False, ncols=2)
        return _encode(fig)


# --------------------------------------------------------------------------- income curves


def income_curves_figure(df: pl.DataFrame) -> Image:
    """Mean real monthly earnings of participants and twins (with CIs), and the difference."""
    df = df.sort("horizon")
    x = df["horizon"].cast(pl.Float64).to_numpy()
    with _style():
        fig = _figure(WIDTH, 5.8)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
        for who, color, label in (("participants", PARTICIPANTS,
                                   "participants / dalībnieki"),
                                  ("twins", TWINS, "statistical twins / statistiskie dvīņi")):
            top.fill_between(x, _arr(df, f"{who}_ci_low"), _arr(df, f"{who}_ci_high"),
                             color=color, alpha=0.18, linewidth=0)
            top.plot(x, _arr(df, who), color=color, label=label)
        top.axvline(0, color="#666666", linewidth=0.8, linestyle=":")
        top.set_ylabel("EUR per month (real)\nEUR mēnesī (reāli)")
        top.legend(loc="upper left", frameon=False)
        bottom.fill_between(x, _arr(df, "ci_low"), _arr(df, "ci_high"), color="#555555",
                            alpha=0.2, linewidth=0, label="95 % CI / TI")
        bottom.plot(x, _arr(df, "net"), color="#222222", label="difference / starpība")
        bottom.axvline(0, color="#666666", linewidth=0.8, linestyle=":")
        _months_axis(bottom, "Months from leaving training / Mēneši kopš dalības beigām")
        bottom.set_ylabel("Difference, EUR\nStarpība, EUR")
        bottom.legend(loc="upper left", frameon=False, ncols=2)
        return _encode(fig)


# --------------------------------------------------------------------------- balance


def balance_figure(names: Sequence[str], before: Sequence[float], after: Sequence[float],
                   threshold: float) -> Image:
    """Love plot: |SMD| before and after matching per covariate, with the threshold line."""
    n = len(names)
    y = np.arange(n)[::-1]
    with _style():
        fig = _figure(WIDTH, 1.3 + 0.2 * max(n, 3))
        ax = fig.subplots()
        ax.axvline(threshold, color="#b22222", linestyle="--", linewidth=1,
                   label=f"threshold {threshold:g} / slieksnis {threshold:g}")
        ax.add_collection(matplotlib.collections.LineCollection(
            [[(b, yi), (a, yi)] for b, a, yi in zip(before, after, y, strict=True)],
            colors="#c8c8c8", linewidths=0.8, zorder=1))
        ax.scatter(before, y, facecolors="white", edgecolors=CANDIDATES, s=16, zorder=2,
                   label="before matching / pirms atlases")
        ax.scatter(after, y, color=PARTICIPANTS, s=16, zorder=3,
                   label="after matching / pēc atlases")
        ax.set_yticks(y, list(names))
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlim(left=0)
        ax.set_xlabel("|standardised mean difference| / |standartizētā vidējo starpība|")
        ax.legend(loc="lower right", frameon=True, framealpha=0.9)
        return _encode(fig)


# --------------------------------------------------------------------------- trajectories


def pre_trajectories_figure(df: pl.DataFrame, series: Sequence[tuple[str, str, float]]
                            ) -> Image:
    """Pre-period means of participants, twins and all candidates, one panel per series.

    ``series`` is ``[(name, axis label, scale), ...]`` in panel order.
    """
    with _style():
        fig = _figure(WIDTH, 3.8)
        axes = fig.subplots(1, max(len(series), 1), squeeze=False)[0]
        for ax, (name, label, scale) in zip(axes, series, strict=False):
            d = df.filter(pl.col("series") == name).sort("event_time")
            x = d["event_time"].cast(pl.Float64).to_numpy()
            ax.plot(x, _arr(d, "candidates", scale), color=CANDIDATES, linestyle="--",
                    linewidth=1, label="all candidates / visi kandidāti")
            ax.plot(x, _arr(d, "twins", scale), color=TWINS, label="twins / dvīņi")
            ax.plot(x, _arr(d, "treated", scale), color=PARTICIPANTS, linestyle=(0, (1, 1)),
                    linewidth=1.8, label="participants / dalībnieki")
            ax.set_title(label)
            ax.set_xlabel("Months before the start\nMēneši pirms sākuma")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", frameon=False, ncols=3)
        return _encode(fig)


# --------------------------------------------------------------------------- forest


@dataclass(frozen=True)
class ForestRow:
    """One line of a forest plot: a dimension header or a group."""

    label: str
    net: float | None = None
    low: float | None = None
    high: float | None = None
    suppressed: bool = False
    header: bool = False


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _forest_limits(rows: Sequence[ForestRow]) -> tuple[float, float]:
    """x range: every point estimate, and the intervals unless a few very wide ones would
    squash the rest (those are cut at the edge and marked with an arrow)."""
    nets = [r.net for r in rows if _ok(r.net)]
    lows = [r.low for r in rows if _ok(r.low)]
    highs = [r.high for r in rows if _ok(r.high)]
    if not nets:
        return -1.0, 1.0
    lo = min([*nets, float(np.quantile(lows, 0.1))] if lows else nets)
    hi = max([*nets, float(np.quantile(highs, 0.9))] if highs else nets)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = 0.06 * ((hi - lo) or 1.0)
    return lo - pad, hi + pad


def forest_figure(rows: Sequence[ForestRow], *, xlabel: str, overall: float | None) -> Image:
    """Net effect with 95 % CI by breakdown group; suppressed groups marked, not plotted.

    Header rows (``header=True``) are written across the plot in bold; intervals wider than
    the plotted range are cut at its edge and end in an arrow head.
    """
    n = len(rows)
    y = np.arange(n)[::-1].astype(float)
    with _style():
        fig = _figure(WIDTH, 1.1 + 0.2 * max(n, 3))
        ax = fig.subplots()
        left, right = _forest_limits(rows)
        ax.axvline(0, color="#444444", linewidth=0.8)
        if _ok(overall):
            ax.axvline(overall, color=PARTICIPANTS, linewidth=0.8, linestyle="--",
                       label="all participants / visi dalībnieki")
        to_left = matplotlib.transforms.blended_transform_factory(ax.transAxes, ax.transData)
        segments, points, cut_left, cut_right = [], [], [], []
        for yi, r in zip(y, rows, strict=True):
            if r.header:
                ax.text(0.005, yi, r.label, transform=to_left, va="center", ha="left",
                        fontweight="bold", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
                continue
            if r.suppressed or not _ok(r.net):
                ax.text(0.005, yi, "suppressed / konfidenciāli" if r.suppressed else "n/a",
                        transform=to_left, va="center", ha="left", fontsize=8.5,
                        color="#777777", style="italic")
                continue
            if _ok(r.low) and _ok(r.high):
                segments.append([(max(r.low, left), yi), (min(r.high, right), yi)])
                if r.low < left:
                    cut_left.append(yi)
                if r.high > right:
                    cut_right.append(yi)
            points.append((r.net, yi))
        ax.add_collection(matplotlib.collections.LineCollection(
            segments, colors="#333333", linewidths=1))
        if points:
            px, py = zip(*points, strict=True)
            ax.plot(px, py, linestyle="none", marker="s", color=PARTICIPANTS, markersize=4)
        for ys, x, marker in ((cut_left, left, "<"), (cut_right, right, ">")):
            if ys:
                ax.plot([x] * len(ys), ys, linestyle="none", marker=marker, color="#333333",
                        markersize=4, clip_on=False)
        ax.set_yticks(y, ["" if r.header else r.label for r in rows])
        for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
            if r.suppressed:
                tick.set_color("#777777")
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlim(left, right)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(xlabel)
        if _ok(overall):
            ax.legend(loc="lower right", frameon=True, framealpha=0.9)
        return _encode(fig)


# --------------------------------------------------------------------------- Kaplan-Meier


def km_figure(df: pl.DataFrame) -> Image:
    """Kaplan-Meier curves (share without a career step yet) of participants and twins."""
    with _style():
        fig = _figure(WIDTH, 4.2)
        ax = fig.subplots()
        for arm, color, label in (("participants", PARTICIPANTS, "participants / dalībnieki"),
                                  ("twins", TWINS, "statistical twins / statistiskie dvīņi")):
            d = df.filter(pl.col("arm") == arm).sort("month")
            if d.height == 0:
                continue
            x = d["month"].cast(pl.Float64).to_numpy()
            ax.fill_between(x, _arr(d, "ci_low", 100), _arr(d, "ci_high", 100), step="post",
                            color=color, alpha=0.18, linewidth=0)
            ax.step(x, _arr(d, "survival", 100), where="post", color=color, label=label)
        ax.set_ylim(0, 101)
        ax.set_xlabel("Months from leaving training / Mēneši kopš dalības beigām")
        ax.set_ylabel("% without a career step yet\n% vēl bez karjeras soļa")
        ax.legend(loc="upper right", frameon=False)
        return _encode(fig)

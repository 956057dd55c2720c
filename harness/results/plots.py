"""Charts of a run as PNG bytes, drawn headless with matplotlib's Agg canvas.

No pyplot and no global backend: each chart is a :class:`matplotlib.figure.Figure` on its
own :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so charts can be drawn on a
machine without a display and from several threads. Output is deterministic (fixed size
and dpi, no ``Software`` metadata, PNG carries no timestamp), so regenerating a report
rewrites identical files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

DPI = 100
SIZE = (7.0, 4.0)
"""Figure size in inches; with :data:`DPI`, 700 x 400 pixels."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAX_LABEL = 60
"""Characters of a title or bar label a chart shows; a longer one is cut with an ellipsis
(the report's text gives it whole)."""


@dataclass
class Curve:
    """One seed's per-epoch perplexities (NaN or None where not measured or not finite)."""

    label: str
    epochs: list[float]
    train: list[float | None]
    valid: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class Bar:
    """One bar of the tokens/sec chart: the mean over ok seeds, its spread and the seeds."""

    label: str
    mean: float
    std: float
    values: tuple[float, ...] = ()


@dataclass
class TokenCurve:
    """One seed's validations on a held-out task: bits per token against training tokens
    (None where not measured or not finite)."""

    label: str
    tokens: list[float]
    train: list[float | None]
    valid: list[float | None]


@dataclass(frozen=True)
class Band:
    """One group of an overlay chart: at each x, the mean over its seeds and the lowest and
    highest seed. ``x_span``: the lowest and highest seed's x, for a group drawn as one
    point because each seed measured once (a count model); None for a line."""

    label: str
    x: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    x_span: tuple[float, float] | None = None


def bpc_png(title: str, curves: Sequence[TokenCurve]) -> bytes:
    """Training (solid) and validation (dashed, dots) bits per token against training
    tokens, one colour per seed; a note instead of lines when nothing finite was measured."""
    figure, axes = _figure()
    drawn = False
    for index, curve in enumerate(curves):
        colour = f"C{index % 10}"
        drawn |= _line(axes, curve.tokens, curve.train, colour, "-", ".",
                       f"{curve.label} train")
        drawn |= _line(axes, curve.tokens, curve.valid, colour, "--", "o",
                       f"{curve.label} valid")
    axes.set_title(_short(title))
    axes.set_xlabel("training tokens")
    axes.set_ylabel("bits per token")
    if drawn:
        axes.legend(fontsize="small")
    else:
        _note(axes, "no finite bits per token were recorded")
    return _png(figure)


def overlay_png(title: str, bands: Sequence[Band], *, xlabel: str,
                target: float | None = None) -> bytes:
    """Validation bits per token of every group on one chart: the mean over seeds as a
    line, shaded from the lowest to the highest seed (a group of one-point seeds: a dot
    with bars spanning its seeds); ``target``: a dotted horizontal line."""
    figure, axes = _figure(height=SIZE[1] + 0.5)
    for index, band in enumerate(bands):
        colour = f"C{index % 10}"
        label = _short(band.label)
        if band.x_span is not None:
            x, y = band.x[0], band.mean[0]
            axes.errorbar([x], [y], xerr=[[x - band.x_span[0]], [band.x_span[1] - x]],
                          yerr=[[y - band.low[0]], [band.high[0] - y]], color=colour,
                          marker="o", markersize=5, capsize=3, label=label)
            continue
        axes.plot(band.x, band.mean, color=colour, marker="." if len(band.x) < 30 else "",
                  label=label)
        axes.fill_between(band.x, band.low, band.high, color=colour, alpha=0.2, linewidth=0)
    if target is not None and bands:
        axes.axhline(target, color="0.3", linestyle=":", linewidth=1,
                     label=f"target {target:g}")
    axes.set_title(_short(title))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("validation bits per token")
    if bands:
        axes.legend(fontsize="small")
    else:
        _note(axes, "no group has a validation curve")
    return _png(figure)


def curves_png(title: str, curves: Sequence[Curve]) -> bytes:
    """Training (solid) and validation (dashed, dots) perplexity by epoch, one colour per
    seed, on a log scale; a note instead of lines when nothing finite was measured."""
    figure, axes = _figure()
    drawn = False
    for index, curve in enumerate(curves):
        colour = f"C{index % 10}"
        drawn |= _line(axes, curve.epochs, curve.train, colour, "-", "", f"{curve.label} train")
        if curve.valid:
            drawn |= _line(axes, curve.epochs, curve.valid, colour, "--", "o",
                           f"{curve.label} valid")
    axes.set_title(_short(title))
    axes.set_xlabel("epoch")
    axes.set_ylabel("perplexity")
    if drawn:
        axes.set_yscale("log")
        for axis_formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
            axis_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize="small")
    else:
        _note(axes, "no finite perplexity was recorded")
    return _png(figure)


def throughput_png(title: str, bars: Sequence[Bar]) -> bytes:
    """Horizontal bars of mean tokens/sec with ±1 standard deviation and each seed as a
    dot; a group without an ok seed gets no bar and says so."""
    figure, axes = _figure(height=max(SIZE[1], 1.0 + 0.45 * len(bars)))
    positions = list(range(len(bars)))[::-1]  # first group at the top
    for y, bar in zip(positions, bars):
        if math.isfinite(bar.mean):
            error = bar.std if math.isfinite(bar.std) else 0.0
            axes.barh(y, bar.mean, xerr=error, color="C0", alpha=0.7, capsize=3)
            finite = [v for v in bar.values if math.isfinite(v)]
            axes.plot(finite, [y] * len(finite), "k.", markersize=4)
        else:
            axes.text(0, y, "  no ok seed", va="center", fontsize="small")
    axes.set_yticks(positions, [_short(bar.label) for bar in bars], fontsize="small")
    axes.set_xlabel("tokens/sec (mean ± std over ok seeds; dots: seeds)")
    axes.set_title(_short(title))
    if not bars:
        _note(axes, "no combination has finished")
    return _png(figure)


def is_png(data: bytes) -> bool:
    """Whether ``data`` starts with the PNG signature."""
    return data.startswith(PNG_SIGNATURE)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def _figure(height: float = SIZE[1]) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(SIZE[0], height), dpi=DPI, layout="tight")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _line(axes: Axes, epochs: Sequence[float], values: Sequence[float | None], colour: str,
          style: str, marker: str, label: str) -> bool:
    points = [(e, v) for e, v in zip(epochs, values)
              if v is not None and math.isfinite(v) and v > 0]
    if not points:
        return False
    xs, ys = zip(*points)
    axes.plot(xs, ys, color=colour, linestyle=style, marker=marker, markersize=3, label=label)
    return True


def _note(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()

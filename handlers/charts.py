"""/tiendo's charts, drawn with matplotlib's Agg backend into PNG bytes.

Drawing blocks for a few hundred milliseconds: call `draw_bars` and `draw_trend` in a thread.
Every text comes in from the catalogue; the font, DejaVu Sans, ships with matplotlib and has
every Vietnamese letter.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.parsing import format_number

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Pixels = inches x DPI.
DPI = 100
WIDTH_IN = 10.0
FONT = "DejaVu Sans"

# The bar chart: a fixed width, a height that grows with the bars.
BARS_TOP_IN, BARS_BOTTOM_IN = 0.75, 0.7  # the two-line title; the axis and its label
BAR_IN = 0.42
BARS_LEFT = 0.4  # share of the width for the units' names

# The trend chart: a fixed size; margins in inches around the plot.
TREND_HEIGHT_IN = 5.6
# The top holds the two-line title and, under it, the legend in one row.
TREND_LEFT_IN, TREND_RIGHT_IN, TREND_TOP_IN, TREND_BOTTOM_IN = 0.85, 0.35, 1.15, 0.75
TREND_TICKS = 14  # week labels at most on the axis

# Matplotlib keeps caches (fonts, text layout) that are not safe to fill from two threads.
_drawing = threading.Lock()


@dataclass(frozen=True, slots=True)
class Bar:
    """One unit on the bar chart: its name, its percentage of target (None without one), a note."""

    label: str
    percent: float | None
    note: str


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """Where a subtree stood at the end of a week (or of today, in the current one)."""

    day: int  # days of the campaign gone by then: 7 at the end of its first seven days
    label: str  # that last day, dd/mm
    total: int  # initiatives accepted by then


@dataclass(frozen=True, slots=True)
class Trend:
    """The trend chart: accepted initiatives week by week, against the target if there is one.

    `target_label` names the target line, or says there is no target (then no line is drawn).
    The pace line runs from nothing on the campaign's first day to the target on its last,
    `days` days later.
    """

    title: str
    x_axis: str
    y_axis: str
    points: Sequence[TrendPoint]
    days: int
    total_label: str
    target: int | None
    target_label: str
    pace_label: str


def bars_size(bars: int) -> tuple[int, int]:
    """Return the bar chart's width and height in pixels for `bars` bars."""
    height = BARS_TOP_IN + BARS_BOTTOM_IN + BAR_IN * max(bars, 1)
    return round(WIDTH_IN * DPI), round(height * DPI)


def trend_size() -> tuple[int, int]:
    """Return the trend chart's width and height in pixels."""
    return round(WIDTH_IN * DPI), round(TREND_HEIGHT_IN * DPI)


def draw_bars(title: str, axis: str, bars: Sequence[Bar]) -> bytes:
    """Draw horizontal bars of percentage of target, first bar on top; return a PNG."""
    width, height = bars_size(len(bars))
    with _drawing, _literal_text():
        figure = _figure(width, height)
        inches = height / DPI
        bottom, top_margin = BARS_BOTTOM_IN / inches, BARS_TOP_IN / inches
        axes = figure.add_axes((BARS_LEFT, bottom, 0.96 - BARS_LEFT, 1 - bottom - top_margin))
        positions = list(range(len(bars)))[::-1]
        values = [bar.percent or 0.0 for bar in bars]
        colours = [_colour(bar.percent) for bar in bars]
        axes.barh(positions, values, color=colours, height=0.65)
        right = max([100.0, *values]) * 1.25
        axes.set_xlim(0, right)
        axes.set_ylim(-0.6, len(bars) - 0.4)
        axes.axvline(100, color="#555555", linewidth=1, linestyle="--")
        axes.set_yticks(positions, [bar.label for bar in bars], fontfamily=FONT, fontsize=10)
        for position, value, bar in zip(positions, values, bars, strict=True):
            axes.text(
                value + right * 0.01, position, bar.note, va="center", fontfamily=FONT, fontsize=9
            )
        axes.set_xlabel(axis, fontfamily=FONT, fontsize=10)
        axes.spines[["top", "right"]].set_visible(False)
        return _png(figure, title)


def draw_trend(trend: Trend) -> bytes:
    """Draw the accepted initiatives so far as a line from zero, with the target; return a PNG."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    width, height = trend_size()
    days = [0, *(point.day for point in trend.points)]
    totals = [0, *(point.total for point in trend.points)]
    last_day = days[-1]
    pace = trend.target * last_day / trend.days if trend.target and trend.days > 0 else None
    with _drawing, _literal_text():
        figure = _figure(width, height)
        axes = figure.add_axes(
            (
                TREND_LEFT_IN / WIDTH_IN,
                TREND_BOTTOM_IN / TREND_HEIGHT_IN,
                1 - (TREND_LEFT_IN + TREND_RIGHT_IN) / WIDTH_IN,
                1 - (TREND_TOP_IN + TREND_BOTTOM_IN) / TREND_HEIGHT_IN,
            )
        )
        axes.fill_between(days, totals, color="#1f6fb4", alpha=0.12, linewidth=0)
        axes.plot(
            days,
            totals,
            color="#1f6fb4",
            linewidth=2,
            marker="o",
            markersize=4,
            label=trend.total_label,
        )
        axes.annotate(
            format_number(totals[-1]),
            (last_day, totals[-1]),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontfamily=FONT,
            fontsize=10,
            fontweight="bold",
            color="#1f6fb4",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
        if trend.target is not None:
            axes.axhline(
                trend.target,
                color="#d04030",
                linewidth=1.5,
                linestyle="--",
                label=trend.target_label,
            )
        else:
            axes.plot([], [], " ", label=trend.target_label)  # a note in the legend, no line
        if pace is not None:
            axes.plot(
                [0, last_day],
                [0, pace],
                color="#777777",
                linewidth=1.2,
                linestyle=":",
                label=trend.pace_label,
            )
        top = max(1, *totals, trend.target or 0, pace or 0)
        axes.set_ylim(0, top * 1.15)
        axes.set_xlim(0, max(last_day, 1) * 1.03)
        ticks = _thinned(trend.points)
        axes.set_xticks([p.day for p in ticks], [p.label for p in ticks], fontsize=9)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format_number(value)))
        axes.tick_params(labelfontfamily=FONT, labelsize=9)
        axes.grid(axis="y", color="#dddddd", linewidth=0.8)
        axes.set_axisbelow(True)
        axes.set_xlabel(trend.x_axis, fontfamily=FONT, fontsize=10)
        axes.set_ylabel(trend.y_axis, fontfamily=FONT, fontsize=10)
        axes.spines[["top", "right"]].set_visible(False)
        # Above the plot, where neither the target line nor the accepted one can run under it.
        axes.legend(
            loc="lower left",
            bbox_to_anchor=(0, 1.01),
            ncols=3,
            frameon=False,
            borderaxespad=0,
            prop={"family": FONT, "size": 9},
        )
        return _png(figure, trend.title)


def _thinned(points: Sequence[TrendPoint]) -> list[TrendPoint]:
    """Keep every n-th week's label, and the last week's, so that they do not overlap."""
    step = max(1, math.ceil(len(points) / TREND_TICKS))
    kept = list(points[::step])
    if points and kept[-1] is not points[-1]:
        if len(kept) > 1 and points[-1].day - kept[-1].day < 7 * step:
            kept.pop()  # too close to the last week's
        kept.append(points[-1])
    return kept


@contextmanager
def _literal_text() -> Iterator[None]:
    """Show every text as written: a unit or member named "$x^2$" must not become math.

    matplotlib reads text between two "$" as mathtext, which changes the label or fails to
    parse. Figures are drawn one at a time (`_drawing`), so the setting is the chart's alone.
    """
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def _figure(width: int, height: int) -> Figure:
    # Imported here: matplotlib takes a while to load, and only the charts need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure, title: str) -> bytes:
    figure.suptitle(title, fontfamily=FONT, fontsize=12, fontweight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _colour(percent: float | None) -> str:
    if percent is None:
        return "#b0b0b0"
    if percent >= 100:
        return "#2e8b57"
    if percent >= 50:
        return "#e0a020"
    return "#d04030"

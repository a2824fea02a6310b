"""Draw /tiendo's two charts from made-up figures into docs/images/, for the README.

Run: `.venv/bin/python -m bench.sample_charts`. The texts are the catalogue's, the drawing is
the bot's own (handlers.charts); only the figures are invented.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from handlers.charts import Bar, Trend, TrendPoint, draw_bars, draw_trend
from handlers.i18n import Catalogue
from handlers.parsing import format_number
from storage.progress import weekly

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
UNIT = "Liên đoàn Lao động tỉnh Ninh Thuận"
START, END, TODAY = date(2023, 2, 1), date(2023, 12, 31), date(2023, 7, 12)
TARGET = 1200
# Accepted / target of the units right below the province, made up; the last one without a
# target has the rest of the province's total.
BELOW = [
    ("Công đoàn các Khu công nghiệp tỉnh", 70, 300),
    ("Công đoàn ngành Giáo dục", 131, 250),
    ("Công đoàn ngành Y tế", 158, 150),
    ("Công đoàn Viên chức tỉnh", 54, 100),
    ("Liên đoàn Lao động huyện Ninh Hải", 41, 120),
]
REST = "LĐLĐ thành phố Phan Rang – Tháp Chàm"


def trend(texts: Catalogue) -> Trend:
    """Reviews picking up after Tết and slowing in the summer, a little behind the pace."""
    rng = random.Random(2023)
    days: dict[date | None, int] = {}
    day = START
    while day <= TODAY:
        if day.weekday() < 5:
            busy = 1.6 if date(2023, 3, 1) <= day <= date(2023, 5, 31) else 0.9
            days[day] = rng.randint(0, round(7 * busy))
        day += timedelta(days=1)
    points, total = [], 0
    for week in weekly(days, START, TODAY):
        total += week.accepted
        points.append(TrendPoint((week.last - START).days + 1, week.last.strftime("%d/%m"), total))
    return Trend(
        title=f"{texts('progress.trend_title')}\n{UNIT}",
        x_axis=texts("progress.trend_x_axis"),
        y_axis=texts("progress.trend_y_axis"),
        points=points,
        days=(END - START).days + 1,
        total_label=texts("progress.trend_total"),
        target=TARGET,
        target_label=texts("progress.trend_target", target=format_number(TARGET)),
        pace_label=texts("progress.trend_pace"),
    )


def bars(texts: Catalogue, total: int) -> list[Bar]:
    """The units below, the furthest behind first, as /tiendo orders them."""
    rest = total - sum(accepted for _, accepted, _ in BELOW)
    found: list[tuple[str, int | None, int, int | None]] = [
        (name, round(100 * accepted / target), accepted, target) for name, accepted, target in BELOW
    ]
    found.append((REST, None, rest, None))
    found.sort(key=lambda row: (row[1] is None, row[1] or 0))
    return [
        Bar(
            name,
            percent,
            texts(
                "progress.chart_bar",
                accepted=format_number(accepted),
                target=format_number(target),
            )
            if target
            else texts("progress.chart_no_target", accepted=format_number(accepted)),
        )
        for name, percent, accepted, target in found
    ]


def main() -> None:
    texts = Catalogue.load()
    IMAGES.mkdir(parents=True, exist_ok=True)
    weeks = trend(texts)
    (IMAGES / "trend-chart.png").write_bytes(draw_trend(weeks))
    title = f"{texts('progress.chart_title')}\n{UNIT}"
    below = bars(texts, weeks.points[-1].total)
    (IMAGES / "progress-chart.png").write_bytes(
        draw_bars(title, texts("progress.chart_axis"), below)
    )
    print(f"wrote {IMAGES / 'trend-chart.png'} and {IMAGES / 'progress-chart.png'}")


if __name__ == "__main__":
    main()

"""Reading what people type: numbers, targets, percentages."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

_TARGET = re.compile(r"^\s*(\d{1,9}(?:[.,]\d{1,3})?)\s*(.*?)\s*$")
_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%?\s*$")
TARGET_UNIT_MAX = 32


def parse_target(text: str) -> tuple[float, str] | None:
    """Read a measurable target such as "3 sáng kiến" or "1,5 tấn"; None if there is no number."""
    match = _TARGET.match(text)
    if match is None:
        return None
    value = float(match.group(1).replace(",", "."))
    unit = match.group(2)
    if value <= 0 or len(unit) > TARGET_UNIT_MAX:
        return None
    return value, unit


def parse_percent(text: str) -> int | None:
    """Read a percentage from 0 to 100, with or without the % sign."""
    match = _PERCENT.match(text)
    if match is None:
        return None
    value = int(match.group(1))
    return value if 0 <= value <= 100 else None


def format_number(value: float) -> str:
    """Show 3.0 as "3" and 1.5 as "1,5", the Vietnamese way."""
    if value == int(value):
        return f"{int(value):,}".replace(",", ".")
    return f"{value:.3f}".rstrip("0").replace(".", ",")


_LOCAL_TIME = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2})\s*[:hg]\s*(\d{2})\s*$")


def parse_local_time(text: str, zone: ZoneInfo) -> datetime | None:
    """Read "dd/mm/yyyy hh:mm" as a local time; None if it is not one."""
    match = _LOCAL_TIME.match(text.lower())
    if match is None:
        return None
    day, month, year, hour, minute = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=zone)
    except ValueError:
        return None

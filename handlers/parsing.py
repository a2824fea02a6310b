"""Reading what people type: numbers, targets, percentages."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from storage.text import fold

_TARGET = re.compile(r"^\s*(\d{1,9}(?:[.,]\d{1,3})?)\s*(.*?)\s*$")
_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%?\s*$")
TARGET_UNIT_MAX = 32


# Row ids and small numbers fit PostgreSQL's INTEGER; anything longer is no id of ours.
_ID_DIGITS = 9


def parse_id(text: str) -> int | None:
    """Read a row id or a small number written in ASCII digits; None for anything else.

    `str.isdigit` also accepts "²" (which `int` refuses) and digits of any length (which the
    database refuses as an INTEGER parameter).
    """
    if not (text.isascii() and text.isdigit() and len(text) <= _ID_DIGITS):
        return None
    return int(text)


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


# --- money --------------------------------------------------------------------------------------

# Scales people write after an amount; folded (no accents), longest first in the pattern.
_SCALES = {
    "ty": 1_000_000_000,
    "trieu": 1_000_000,
    "tr": 1_000_000,
    "m": 1_000_000,
    "nghin": 1_000,
    "ngan": 1_000,
    "k": 1_000,
}
_CURRENCY = re.compile(r"(?:(?<=\d)|\b)(vnd|dong|d)\b\.?|₫")
_SPACED_GROUP = re.compile(r"(?<=\d)[ \u00a0](?=\d{3}\b)")
_AMOUNT = re.compile(r"(\d+(?:[.,]\d+)*)\s*(ty|trieu|tr|nghin|ngan|k|m)?(?![a-z])")
VND_MAX = 10**15


def _number(digits: str, *, scaled: bool) -> float | None:
    """Read "50.000.000", "1,5" or "1.5"; None where the separators make no sense."""
    parts = re.split(r"[.,]", digits)
    if len(parts) == 1:
        return float(digits)
    separators = set(re.findall(r"[.,]", digits))
    grouped = all(len(part) == 3 for part in parts[1:]) and 1 <= len(parts[0]) <= 3
    if len(separators) == 1 and grouped and (len(parts) > 2 or "." in separators or not scaled):
        # Thousands separators: "50.000.000", "50,000,000", "1.500 tỷ" (a dot groups).
        return float("".join(parts))
    if len(parts) == 2 and scaled:
        return float(f"{parts[0]}.{parts[1]}")  # a decimal before a scale: "1,5 tỷ", "2.5tr"
    if len(separators) == 2 and len(parts) >= 3:
        # "1.234.567,5": dots group, the last comma is decimal (or the other way round).
        decimal = digits[-1 - len(parts[-1])]
        whole = "".join(parts[:-1])
        if all(len(part) == 3 for part in parts[1:-1]) and digits.count(decimal) == 1:
            return float(f"{whole}.{parts[-1]}")
    return None


def parse_vnd(text: str) -> int | None:
    """Read an amount in đồng as people write it: 50 triệu, 50tr, 50.000.000, 1,5 tỷ.

    Amounts may be combined ("1 tỷ 200 triệu"). Return None for anything unreadable,
    ambiguous (a bare "1,5") or not positive.
    """
    folded = fold(text)
    folded = _CURRENCY.sub(" ", folded)
    folded = _SPACED_GROUP.sub("", folded)  # "50 000 000"
    folded = folded.replace("ruoi", "")  # "rưỡi" is handled below
    half = "ruoi" in fold(text)
    matches = list(_AMOUNT.finditer(folded))
    leftover = _AMOUNT.sub(" ", folded).strip(" .,")
    if not matches or leftover:
        return None
    total = 0.0
    for index, match in enumerate(matches):
        scale_word = match.group(2)
        scale = _SCALES[scale_word] if scale_word else 1
        if not scale_word and len(matches) > 1:
            return None  # "2 triệu 5": which unit the 5 is in is guesswork
        value = _number(match.group(1), scaled=scale_word is not None)
        if value is None:
            return None
        if half and index == len(matches) - 1 and scale_word:
            value += 0.5
        total += value * scale
    amount = round(total)
    return amount if 0 < amount <= VND_MAX else None

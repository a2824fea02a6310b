"""Next year's campaign file, made from this year's: dates moved, one-off milestones left out."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import yaml

from storage.campaign_file import (
    MAX_CODE_LENGTH,
    MAX_YEAR,
    MIN_YEAR,
    CampaignFile,
    load_campaign_file,
    parse_campaign_text,
)

# Every note kind and its fields; the catalogue has `campaign_file.note.<kind>`.
NOTE_FIELDS: Final = {
    # A one-off milestone (a congress) the officer adds again with the new year's date.
    "milestone_left_out": ("code", "title", "date"),
    # 29/02 moved to a year without it.
    "leap_day": ("old", "new"),
    # A text that still names the source year: an edition, a term, a date to check.
    "mentions_old_year": ("year",),
    # The campaign code held no year to replace, so the new year was appended.
    "code_without_year": ("old", "new"),
}
NOTE_KINDS: Final = tuple(NOTE_FIELDS)

# Free texts the officer should read again when they name the source year.
_TEXTS: Final = {
    "campaign": ("name", "description"),
    "movements": ("name", "description"),
    "phases": ("name", "focus"),
    "milestones": ("title", "announcement"),
    "deadlines": ("title",),
}


@dataclass(frozen=True)
class TemplateNote:
    """Something the officer must check in the new file; `path` is where ("milestones[3]")."""

    path: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)


def new_campaign_text(source_path: Path, year: int) -> tuple[str, list[TemplateNote]]:
    """Write the campaign file for `year` from a campaign file, with notes of what to check."""
    return new_campaign_from(load_campaign_file(source_path), year)


def new_campaign_from(source: CampaignFile, year: int) -> tuple[str, list[TemplateNote]]:
    """Write the campaign file for `year` from a loaded campaign file."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    old_year = source.campaign.year
    shift = year - old_year
    notes: list[TemplateNote] = []

    def moved(day: date, path: str) -> date:
        new_year = day.year + shift
        if day.month == 2 and day.day == 29 and not _is_leap(new_year):
            new = date(new_year, 2, 28)
            notes.append(TemplateNote(path, "leap_day", {"old": _day(day), "new": _day(new)}))
            return new
        return day.replace(year=new_year)

    campaign = _dump(source.campaign)
    campaign["code"] = _new_code(source.campaign.code, old_year, year, notes)
    campaign["name"] = _replace_year(source.campaign.name, old_year, year)
    campaign["year"] = year
    campaign["start"] = moved(source.campaign.starts_on, "campaign.start")
    campaign["end"] = moved(source.campaign.ends_on, "campaign.end")

    phases: list[dict[str, Any]] = []
    for index, phase in enumerate(source.phases):
        values = _dump(phase)
        values["start"] = moved(phase.starts_on, f"phases[{index}].start")
        values["end"] = moved(phase.ends_on, f"phases[{index}].end")
        phases.append(values)

    milestones: list[dict[str, Any]] = []
    for milestone in source.milestones:
        if not milestone.is_recurring:
            fields = {
                "code": milestone.code,
                "title": source.milestone_title(milestone),
                "date": _day(source.milestone_date(milestone)),
            }
            # Where to add it back: the section, since it has no place in the new file yet.
            notes.append(TemplateNote("milestones", "milestone_left_out", fields))
            continue
        values = _dump(milestone)
        if milestone.falls_on is not None:
            values["date"] = moved(milestone.falls_on, f"milestones[{len(milestones)}].date")
        milestones.append(values)

    deadlines: list[dict[str, Any]] = []
    for index, deadline in enumerate(source.deadlines):
        values = _dump(deadline)
        values["due"] = moved(deadline.due_on, f"deadlines[{index}].due")
        deadlines.append(values)

    document: dict[str, Any] = {
        "campaign": campaign,
        "options": _dump(source.options),
        "movements": [_dump(movement) for movement in source.movements],
        "phases": phases,
        "milestones": milestones,
        "deadlines": deadlines,
    }
    document = {key: value for key, value in document.items() if value or key == "movements"}
    notes += _old_year_notes(document, old_year)
    text = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=96, indent=2
    )
    # The output must be a valid file; if it is not, this raises with the problems.
    parse_campaign_text(text)
    return text, notes


def _dump(section: Any) -> dict[str, Any]:
    """Return the fields the source file set, by their names in the file."""
    values: dict[str, Any] = section.model_dump(by_alias=True, exclude_unset=True)
    return {key: _plain(value) for key, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _new_code(code: str, old_year: int, year: int, notes: list[TemplateNote]) -> str:
    if str(old_year) in code:
        return code.replace(str(old_year), str(year))
    new = f"{code[: MAX_CODE_LENGTH - 5]}-{year}"
    notes.append(TemplateNote("campaign.code", "code_without_year", {"old": code, "new": new}))
    return new


def _replace_year(text: str, old_year: int, year: int) -> str:
    return re.sub(rf"(?<!\d){old_year}(?!\d)", str(year), text)


def _old_year_notes(document: dict[str, Any], old_year: int) -> list[TemplateNote]:
    """Note every free text still naming the source year (placeholders are fine)."""
    pattern = re.compile(rf"(?<!\d){old_year}(?!\d)")
    notes = []
    for section, names in _TEXTS.items():
        part = document.get(section)
        if part is None:
            continue
        items = [("campaign", part)] if isinstance(part, dict) else []
        if isinstance(part, list):
            items = [(f"{section}[{index}]", item) for index, item in enumerate(part)]
        for where, item in items:
            for name in names:
                if pattern.search(str(item.get(name, ""))):
                    path = f"{where}.{name}"
                    notes.append(TemplateNote(path, "mentions_old_year", {"year": str(old_year)}))
    return notes


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _day(day: date) -> str:
    return day.strftime("%d/%m/%Y")


class _Dumper(yaml.SafeDumper):
    """Indent lists under their key and write multi-line texts as blocks, for people to read."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else (">" if len(value) > _FOLD_AFTER else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    # Days and sectors read best on one line: [7, 3, 1], [enterprise].
    short = all(isinstance(item, int) or _WORD.fullmatch(str(item)) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=short)


_FOLD_AFTER = 80
_WORD = re.compile(r"[a-z_]+")
_Dumper.add_representer(str, _text)
_Dumper.add_representer(list, _list)

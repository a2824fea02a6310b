"""The campaign file: one year's plan in YAML, validated with the line of every problem."""

from __future__ import annotations

import enum
import itertools
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from storage.models import Audience, DeadlineKind, MilestoneKind, MovementKind, Sector
from storage.text import clean, clean_line

MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_CODE_LENGTH = 32
MAX_LINE_LENGTH = 255  # names and titles: String(255) columns
DEFAULT_ANNOUNCE_AT = "08:00"
DEFAULT_REMINDER_DAYS = (7, 3, 1)

# Every problem kind and the fields it carries; the catalogue has `campaign_file.problem.<kind>`.
PROBLEM_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "unreadable_file": ("reason",),
    "yaml_syntax": ("detail",),
    "empty_file": (),
    "duplicate_key": ("key", "first_line"),
    "bad_type": ("expected",),
    "missing_field": ("field",),
    "unknown_field": ("field", "allowed"),
    "empty_list": ("field",),
    "empty_text": (),
    "text_too_long": ("maximum",),
    "bad_code": ("value",),
    "bad_choice": ("value", "allowed"),
    "bad_number": ("value", "minimum", "maximum"),
    "bad_date": ("value",),
    "impossible_date": ("value",),
    "bad_time": ("value",),
    "end_before_start": ("start", "end"),
    "outside_campaign": ("value", "start", "end"),
    "duplicate_code": ("code", "first_line"),
    "duplicate_number": ("number", "first_line"),
    "phase_overlap": ("code", "other"),
    "unknown_reference": ("code", "section"),
    "phase_date_mismatch": ("value", "phase_date"),
    "bad_placeholder": ("placeholder", "allowed"),
    "years_without_base_year": (),
    "base_year_too_late": ("base_year", "year"),
    "unknown_unit": ("code",),
    "bad_value": ("detail",),
}
PROBLEM_KINDS: Final = tuple(PROBLEM_FIELDS)

# Values of the `reason` field of "unreadable_file" and of the `expected` field of "bad_type".
UNREADABLE_REASONS: Final = ("cannot_open", "not_utf8")
EXPECTED_TYPES: Final = ("text", "list", "mapping")

Loc = tuple[str | int, ...]

_CODE = re.compile(r"[A-Z0-9][A-Z0-9-]*")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NULL_TAG = "tag:yaml.org,2002:null"
# Aliases may repeat a subtree many times; a real campaign file has a few hundred values.
_MAX_VALUES = 100_000


@dataclass(frozen=True)
class CampaignProblem:
    """One thing wrong with a campaign file; `kind` names `campaign_file.problem.<kind>`."""

    line: int
    path: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)


class CampaignFileError(Exception):
    """A campaign file that cannot be used, with every problem found in it."""

    def __init__(self, problems: Iterable[CampaignProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path))
        super().__init__(f"{len(self.problems)} problem(s) in the campaign file")


class LateRegistration(enum.StrEnum):
    ALLOW = "allow"  # registered after the deadline, marked late
    REFUSE = "refuse"


# ---------------------------------------------------------------------------------------------
# Value types: each raises a PydanticCustomError whose type is a problem kind.


def _fail(kind: str, **fields: object) -> PydanticCustomError:
    return PydanticCustomError(kind, kind, {k: str(v) for k, v in fields.items()})


def _shown(value: object) -> str:
    return value if isinstance(value, str) else "…"


def _need_text(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("bad_type", expected="text")
    return value


def _code(value: object) -> str:
    code = _need_text(value).strip().upper()
    if len(code) > MAX_CODE_LENGTH or not _CODE.fullmatch(code):
        raise _fail("bad_code", value=_need_text(value).strip())
    return code


def _line(value: object) -> str:
    text = clean_line(_need_text(value))
    if not text:
        raise _fail("empty_text")
    if len(text) > MAX_LINE_LENGTH:
        raise _fail("text_too_long", maximum=MAX_LINE_LENGTH)
    return text


def _text(value: object) -> str:
    return clean(_need_text(value))


def parse_date(value: object) -> date:
    """Read a date written as ISO (2023-05-19) or Vietnamese style (19/5/2023)."""
    if isinstance(value, date):
        return value
    text = _need_text(value).strip()
    match = _ISO.fullmatch(text)
    if match:
        year, month, day = (int(part) for part in match.groups())
    else:
        match = _DMY.fullmatch(text)
        if match is None:
            raise _fail("bad_date", value=text)
        day, month, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise _fail("impossible_date", value=text) from None


def _time(value: object) -> str:
    text = _need_text(value).strip()
    match = _TIME.fullmatch(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise _fail("bad_time", value=text)
    return f"{int(match[1]):02d}:{match[2]}"


def _number(minimum: int, maximum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        else:
            raise _fail("bad_number", value=_shown(value), minimum=minimum, maximum=maximum)
        if not minimum <= number <= maximum:
            raise _fail("bad_number", value=number, minimum=minimum, maximum=maximum)
        return number

    return check


_E = TypeVar("_E", bound=enum.StrEnum)


def _choice(kind: type[_E]) -> Callable[[object], _E]:
    allowed = [member.value for member in kind]

    def check(value: object) -> _E:
        if isinstance(value, kind):
            return value
        if isinstance(value, str) and value.strip().lower() in allowed:
            return kind(value.strip().lower())
        raise _fail("bad_choice", value=_shown(value), allowed=", ".join(allowed))

    return check


_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def _yes_no(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail("bad_choice", value=_shown(value), allowed="true, false")


def _as_list(value: object) -> object:
    """Let a single value stand for a list of one ("sectors: enterprise")."""
    return [value] if isinstance(value, str | int) else value


def _optional(check: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else check(value)


def _unique_descending(days: list[int]) -> list[int]:
    return sorted(set(days), reverse=True)


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


Code = Annotated[str, BeforeValidator(_code)]
Line = Annotated[str, BeforeValidator(_line)]
Text = Annotated[str, BeforeValidator(_text)]
Day = Annotated[date, BeforeValidator(parse_date)]
OptionalDay = Annotated[date | None, BeforeValidator(_optional(parse_date))]
OptionalCode = Annotated[str | None, BeforeValidator(_optional(_code))]
Year = Annotated[int, BeforeValidator(_number(MIN_YEAR, MAX_YEAR))]
OptionalBaseYear = Annotated[int | None, BeforeValidator(_optional(_number(1000, MAX_YEAR)))]
OptionalYesNo = Annotated[bool | None, BeforeValidator(_optional(_yes_no))]
TimeOfDay = Annotated[str, BeforeValidator(_time)]
NoticeDay = Annotated[int, BeforeValidator(_number(1, 366))]
ReminderDay = Annotated[int, BeforeValidator(_number(0, 366))]
NoticeDays = Annotated[
    list[NoticeDay], BeforeValidator(_as_list), AfterValidator(_unique_descending)
]
ReminderDays = Annotated[
    list[ReminderDay], BeforeValidator(_as_list), AfterValidator(_unique_descending)
]
SectorValue = Annotated[Sector, BeforeValidator(_choice(Sector))]
Sectors = Annotated[list[SectorValue], BeforeValidator(_as_list), AfterValidator(_unique)]
Labels = Annotated[list[Line], BeforeValidator(_as_list), AfterValidator(_unique)]


# ---------------------------------------------------------------------------------------------
# The file's sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CampaignInfo(_Section):
    """The `campaign:` mapping: what the campaign is and when it runs."""

    code: Code
    name: Line
    year: Year
    root_unit: Code
    starts_on: Day = Field(alias="start")
    ends_on: Day = Field(alias="end")
    description: Text = ""


class CampaignOptions(_Section):
    """The `options:` mapping; every option has a default."""

    late_registration: Annotated[LateRegistration, BeforeValidator(_choice(LateRegistration))] = (
        LateRegistration.ALLOW
    )
    pact_expiry_days: Annotated[int, BeforeValidator(_number(1, 365))] = 7
    congress_work_per_grassroots: Annotated[int, BeforeValidator(_number(0, 100))] = 1
    # The fields (lĩnh vực) initiatives are classified under; none: not classified.
    initiative_fields: Labels = Field(default_factory=list)

    def stored(self) -> dict[str, Any]:
        """Return the options as the plain dict kept in Campaign.options."""
        return self.model_dump(mode="json")


class MovementEntry(_Section):
    """One item of `movements:`: a movement, programme, drive or contest."""

    code: Code
    kind: Annotated[MovementKind, BeforeValidator(_choice(MovementKind))]
    name: Line
    description: Text = ""
    sectors: Sectors = Field(default_factory=list)


class PhaseEntry(_Section):
    """One item of `phases:`: a phase (đợt thi đua)."""

    code: Code
    number: Annotated[int, BeforeValidator(_number(1, 99))]
    name: Line
    starts_on: Day = Field(alias="start")
    ends_on: Day = Field(alias="end")
    focus: Text = ""


class MilestoneEntry(_Section):
    """One item of `milestones:`; `date` may be left to the phase a phase milestone names."""

    code: Code
    kind: Annotated[MilestoneKind, BeforeValidator(_choice(MilestoneKind))]
    falls_on: OptionalDay = Field(default=None, alias="date")
    announce_at: TimeOfDay = Field(default=DEFAULT_ANNOUNCE_AT, alias="time")
    base_year: OptionalBaseYear = None
    recurring: OptionalYesNo = None
    phase: OptionalCode = None
    title: Line
    announcement: Text = ""
    notice_days: NoticeDays = Field(default_factory=list)

    @property
    def is_recurring(self) -> bool:
        """Tell whether the milestone comes back every year (congresses do not, by default)."""
        if self.recurring is not None:
            return self.recurring
        return self.kind is not MilestoneKind.CONGRESS


class DeadlineEntry(_Section):
    """One item of `deadlines:`: something due by a day, with reminders."""

    code: Code
    kind: Annotated[DeadlineKind, BeforeValidator(_choice(DeadlineKind))]
    title: Line
    due_on: Day = Field(alias="due")
    audience: Annotated[Audience, BeforeValidator(_choice(Audience))]
    reminder_days: ReminderDays = Field(default_factory=lambda: list(DEFAULT_REMINDER_DAYS))


class CampaignFile(BaseModel):
    """A whole campaign file, valid; texts keep their {year}/{years} placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: CampaignInfo
    options: CampaignOptions = Field(default_factory=CampaignOptions)
    movements: list[MovementEntry]
    phases: list[PhaseEntry] = Field(default_factory=list)
    milestones: list[MilestoneEntry] = Field(default_factory=list)
    deadlines: list[DeadlineEntry] = Field(default_factory=list)

    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    def line_of(self, path: str) -> int:
        """Return the file line of a value by its path ("campaign.root_unit"), 1 if unknown."""
        return self._lines.get(path, 1)

    def milestone_date(self, milestone: MilestoneEntry) -> date:
        """Return the day a milestone falls on, its phase's start or end if it gives none."""
        if milestone.falls_on is not None:
            return milestone.falls_on
        phase = next(p for p in self.phases if p.code == milestone.phase)
        return phase.ends_on if milestone.kind is MilestoneKind.PHASE_END else phase.starts_on

    def render(self, text: str) -> str:
        """Fill {year} in a text of the campaign, its movements, phases or deadlines."""
        return render_text(text, year=self.campaign.year)

    def milestone_title(self, milestone: MilestoneEntry) -> str:
        """Return a milestone's title as members read it, {years} and {year} filled in."""
        return self._render_milestone(milestone, milestone.title)

    def milestone_announcement(self, milestone: MilestoneEntry) -> str:
        """Return a milestone's announcement as members read it."""
        return self._render_milestone(milestone, milestone.announcement)

    def _render_milestone(self, milestone: MilestoneEntry, text: str) -> str:
        return render_text(
            text, year=self.milestone_date(milestone).year, base_year=milestone.base_year
        )


def render_text(text: str, *, year: int, base_year: int | None = None) -> str:
    """Fill {year} (and {years} = year - base_year, given a base year) in a validated text."""
    values: dict[str, int] = {"year": year}
    if base_year is not None:
        values["years"] = year - base_year
    return text.format(**values)


# Texts that may hold placeholders, per section; only milestones may count {years}.
_PLACEHOLDER_FIELDS: Mapping[str, tuple[str, ...]] = {
    "campaign": ("name", "description"),
    "movements": ("name", "description"),
    "phases": ("name", "focus"),
    "milestones": ("title", "announcement"),
    "deadlines": ("title",),
}

# ---------------------------------------------------------------------------------------------
# Loading


def load_campaign_file(path: Path) -> CampaignFile:
    """Read and validate a campaign file, raising CampaignFileError with every problem."""
    try:
        content = path.read_bytes()
    except OSError:
        raise _unreadable("cannot_open") from None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _unreadable("not_utf8", content[: error.start].count(b"\n") + 1) from None
    return parse_campaign_text(text)


def parse_campaign_text(text: str) -> CampaignFile:
    """Validate the text of a campaign file, raising CampaignFileError with every problem."""
    document = _Document.compose(text)
    if document.value is None:
        raise CampaignFileError(document.problems)
    checker = _Checker(document)
    result = checker.check()
    if result is None or document.problems:
        raise CampaignFileError(document.problems + checker.problems)
    return result


def _unreadable(reason: str, line: int = 1) -> CampaignFileError:
    return CampaignFileError([CampaignProblem(line, "", "unreadable_file", {"reason": reason})])


def path_text(loc: Loc) -> str:
    """Write a location as a path: ("milestones", 3, "date") -> "milestones[3].date"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Document:
    """The YAML document as plain values (every scalar a string) and the line of each value."""

    def __init__(self) -> None:
        self.value: Any = None
        self.lines: dict[Loc, int] = {(): 1}
        self.problems: list[CampaignProblem] = []
        self._budget = _MAX_VALUES

    @classmethod
    def compose(cls, text: str) -> _Document:
        document = cls()
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark is not None else 1
            detail = error.problem or error.context or "?"
            document._problem((), "yaml_syntax", line=line, detail=detail)
            return document
        except yaml.YAMLError as error:
            document._problem((), "yaml_syntax", detail=str(error))
            return document
        except RecursionError:
            document._problem((), "yaml_syntax", detail="nested too deeply")
            return document
        if root is None:
            document._problem((), "empty_file")
            return document
        document.lines[()] = root.start_mark.line + 1
        try:
            document.value = document._plain(root, (), set())
        except (_TooLargeError, RecursionError):
            document.value = None
            document._problem((), "yaml_syntax", detail="aliases expand to too many values")
        return document

    def line(self, loc: Loc) -> int:
        """Return the line of the value at `loc`, or of its nearest enclosing value."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def _problem(self, loc: Loc, kind: str, *, line: int | None = None, **fields: object) -> None:
        self.problems.append(
            CampaignProblem(
                self.line(loc) if line is None else line,
                path_text(loc),
                kind,
                {k: str(v) for k, v in fields.items()},
            )
        )

    def _plain(self, node: yaml.Node, loc: Loc, parents: set[int]) -> Any:
        # Scalars stay text: YAML 1.1 would read NO as false, 8:30 as 510 and 31/02 dates as
        # errors; the models read numbers, dates and yes/no themselves.
        self._budget -= 1
        if self._budget < 0:
            raise _TooLargeError
        if isinstance(node, yaml.ScalarNode):
            return None if node.tag == _NULL_TAG else str(node.value)
        if id(node) in parents:
            raise _TooLargeError
        inside = parents | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self._plain(item, (*loc, index), inside))
            return items
        mapping: dict[str, Any] = {}
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_lines:
                self._problem(
                    (*loc, key), "duplicate_key", line=line, key=key, first_line=first_lines[key]
                )
                continue
            first_lines[key] = line
            self.lines[(*loc, key)] = line
            value = self._plain(value_node, (*loc, key), inside)
            # An empty value ("description:") means the field is left out.
            if value is not None:
                mapping[key] = value
        return mapping


class _TooLargeError(Exception):
    pass


_M = TypeVar("_M", bound=BaseModel)

_SECTIONS: Mapping[str, type[_Section]] = {
    "movements": MovementEntry,
    "phases": PhaseEntry,
    "milestones": MilestoneEntry,
    "deadlines": DeadlineEntry,
}


class _Checker:
    """Validate a document piece by piece, so that one bad item hides no other problem."""

    def __init__(self, document: _Document) -> None:
        self.document = document
        self.problems: list[CampaignProblem] = []

    def check(self) -> CampaignFile | None:
        raw = self.document.value
        if not isinstance(raw, dict):
            self._add((), "bad_type", expected="mapping")
            return None
        allowed = ("campaign", "options", *_SECTIONS)
        for key in raw:
            if key not in allowed:
                self._add((key,), "unknown_field", field=key, allowed=", ".join(allowed))
        info = self._one(CampaignInfo, raw, "campaign", required=True)
        options = self._one(CampaignOptions, raw, "options", required=False)
        movements = self._many(MovementEntry, raw, "movements", required=True)
        phases = self._many(PhaseEntry, raw, "phases", required=False)
        milestones = self._many(MilestoneEntry, raw, "milestones", required=False)
        deadlines = self._many(DeadlineEntry, raw, "deadlines", required=False)
        if "movements" in raw and isinstance(raw["movements"], list) and not raw["movements"]:
            self._add(("movements",), "empty_list", field="movements")

        for section in _SECTIONS:
            self._unique_codes(section)
        self._unique_numbers(phases)
        self._phase_overlaps(phases)
        if info is not None:
            self._campaign_dates(info, phases, milestones, deadlines)
        self._milestone_dates(phases, milestones)
        self._placeholders(info, movements, phases, milestones, deadlines)

        if self.problems or info is None or options is None:
            return None
        result = CampaignFile(
            campaign=info,
            options=options,
            movements=[m for _, m in movements],
            phases=[p for _, p in phases],
            milestones=[m for _, m in milestones],
            deadlines=[d for _, d in deadlines],
        )
        result._lines.update(
            {path_text(loc): line for loc, line in self.document.lines.items() if loc}
        )
        return result

    # --- structure ---------------------------------------------------------------------------

    def _one(self, model: type[_M], raw: dict[str, Any], key: str, *, required: bool) -> _M | None:
        if key not in raw:
            if required:
                self._add((key,), "missing_field", field=key)
                return None
            return model.model_validate({})
        return self._validate(model, raw[key], (key,))

    def _many(
        self, model: type[_M], raw: dict[str, Any], key: str, *, required: bool
    ) -> list[tuple[int, _M]]:
        if key not in raw:
            if required:
                self._add((key,), "missing_field", field=key)
            return []
        items = raw[key]
        if not isinstance(items, list):
            self._add((key,), "bad_type", expected="list")
            return []
        result = []
        for index, item in enumerate(items):
            valid = self._validate(model, item, (key, index))
            if valid is not None:
                result.append((index, valid))
        return result

    def _validate(self, model: type[_M], value: Any, loc: Loc) -> _M | None:
        try:
            return model.model_validate(value)
        except ValidationError as error:
            for details in error.errors():
                self._pydantic_problem(model, loc, details)
            return None

    def _pydantic_problem(self, model: type[BaseModel], loc: Loc, details: ErrorDetails) -> None:
        where: Loc = (*loc, *details["loc"])
        kind = details["type"]
        context = details.get("ctx") or {}
        if kind in PROBLEM_FIELDS:
            fields = {name: str(context.get(name, "")) for name in PROBLEM_FIELDS[kind]}
            self._add(where, kind, **fields)
        elif kind == "missing":
            self._add(where, "missing_field", field=where[-1])
        elif kind == "extra_forbidden":
            names = [info.alias or name for name, info in model.model_fields.items()]
            self._add(where, "unknown_field", field=where[-1], allowed=", ".join(names))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            self._add(where, "bad_type", expected="mapping")
        elif kind == "list_type":
            self._add(where, "bad_type", expected="list")
        elif kind == "string_type":
            self._add(where, "bad_type", expected="text")
        else:
            self._add(where, "bad_value", detail=details["msg"])

    # --- consistency -------------------------------------------------------------------------

    def _unique_codes(self, section: str) -> None:
        # Read from the raw items: an item with another problem still holds its code.
        items = self.document.value.get(section)
        first: dict[str, int] = {}
        for index, item in enumerate(items if isinstance(items, list) else []):
            raw = item.get("code") if isinstance(item, dict) else None
            if not isinstance(raw, str) or not _CODE.fullmatch(code := raw.strip().upper()):
                continue
            loc: Loc = (section, index, "code")
            if code in first:
                self._add(loc, "duplicate_code", code=code, first_line=first[code])
            else:
                first[code] = self._line(loc)

    def _unique_numbers(self, phases: list[tuple[int, PhaseEntry]]) -> None:
        first: dict[int, int] = {}
        for index, phase in phases:
            loc: Loc = ("phases", index, "number")
            if phase.number in first:
                self._add(
                    loc, "duplicate_number", number=phase.number, first_line=first[phase.number]
                )
            else:
                first[phase.number] = self._line(loc)

    def _phase_overlaps(self, phases: list[tuple[int, PhaseEntry]]) -> None:
        for index, phase in phases:
            if phase.ends_on < phase.starts_on:
                self._add(
                    ("phases", index, "end"),
                    "end_before_start",
                    start=_day(phase.starts_on),
                    end=_day(phase.ends_on),
                )
        ordered = sorted(
            ((i, p) for i, p in phases if p.starts_on <= p.ends_on), key=lambda x: x[1].starts_on
        )
        for (_, before), (index, after) in itertools.pairwise(ordered):
            if after.starts_on <= before.ends_on:
                self._add(
                    ("phases", index, "start"), "phase_overlap", code=after.code, other=before.code
                )

    def _campaign_dates(
        self,
        info: CampaignInfo,
        phases: list[tuple[int, PhaseEntry]],
        milestones: list[tuple[int, MilestoneEntry]],
        deadlines: list[tuple[int, DeadlineEntry]],
    ) -> None:
        start, end = info.starts_on, info.ends_on
        if end < start:
            self._add(("campaign", "end"), "end_before_start", start=_day(start), end=_day(end))
            return
        dated: list[tuple[Loc, date]] = []
        for index, phase in phases:
            dated += [(("phases", index, "start"), phase.starts_on)]
            dated += [(("phases", index, "end"), phase.ends_on)]
        dated += [(("milestones", i, "date"), m.falls_on) for i, m in milestones if m.falls_on]
        dated += [(("deadlines", i, "due"), d.due_on) for i, d in deadlines]
        for loc, day in dated:
            if not start <= day <= end:
                self._add(
                    loc, "outside_campaign", value=_day(day), start=_day(start), end=_day(end)
                )

    def _milestone_dates(
        self, phases: list[tuple[int, PhaseEntry]], milestones: list[tuple[int, MilestoneEntry]]
    ) -> None:
        by_code = {phase.code: phase for _, phase in phases}
        # A phase that failed validation is reported there; references to it are not errors.
        raw_phases = self.document.value.get("phases")
        all_codes = {
            str(item.get("code", "")).strip().upper()
            for item in (raw_phases if isinstance(raw_phases, list) else [])
            if isinstance(item, dict)
        }
        phase_kinds = (MilestoneKind.PHASE_START, MilestoneKind.PHASE_END)
        for index, milestone in milestones:
            phase = by_code.get(milestone.phase) if milestone.phase else None
            if milestone.phase and phase is None and milestone.phase not in all_codes:
                self._add(
                    ("milestones", index, "phase"),
                    "unknown_reference",
                    code=milestone.phase,
                    section="phases",
                )
            derived: date | None = None
            if phase is not None and milestone.kind in phase_kinds:
                is_end = milestone.kind is MilestoneKind.PHASE_END
                derived = phase.ends_on if is_end else phase.starts_on
            if milestone.falls_on is None:
                if derived is None and not (milestone.phase and phase is None):
                    self._add(("milestones", index, "date"), "missing_field", field="date")
            elif derived is not None and derived != milestone.falls_on:
                self._add(
                    ("milestones", index, "date"),
                    "phase_date_mismatch",
                    value=_day(milestone.falls_on),
                    phase_date=_day(derived),
                )
            if milestone.base_year is not None:
                day = milestone.falls_on or derived
                if day is not None and milestone.base_year >= day.year:
                    self._add(
                        ("milestones", index, "base_year"),
                        "base_year_too_late",
                        base_year=milestone.base_year,
                        year=day.year,
                    )

    def _placeholders(
        self,
        info: CampaignInfo | None,
        movements: list[tuple[int, MovementEntry]],
        phases: list[tuple[int, PhaseEntry]],
        milestones: list[tuple[int, MilestoneEntry]],
        deadlines: list[tuple[int, DeadlineEntry]],
    ) -> None:
        located: list[tuple[Loc, BaseModel]] = [(("campaign",), info)] if info else []
        for section, items in (
            ("movements", movements),
            ("phases", phases),
            ("milestones", milestones),
            ("deadlines", deadlines),
        ):
            located += [((section, index), item) for index, item in items]
        for loc, item in located:
            section = str(loc[0])
            allowed = ("year", "years") if section == "milestones" else ("year",)
            base_year = item.base_year if isinstance(item, MilestoneEntry) else None
            for name in _PLACEHOLDER_FIELDS[section]:
                self._check_placeholders((*loc, name), getattr(item, name), allowed, base_year)

    def _check_placeholders(
        self, loc: Loc, text: str, allowed: tuple[str, ...], base_year: int | None
    ) -> None:
        shown = ", ".join(f"{{{name}}}" for name in allowed)
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError:
            self._add(loc, "bad_placeholder", placeholder="{", allowed=shown)
            return
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in allowed or spec or conversion:
                written = "{" + name + (f"!{conversion}" if conversion else "")
                written += (f":{spec}" if spec else "") + "}"
                self._add(loc, "bad_placeholder", placeholder=written, allowed=shown)
            elif name == "years" and base_year is None:
                self._add(loc, "years_without_base_year")

    # --- helpers -----------------------------------------------------------------------------

    def _line(self, loc: Loc) -> int:
        return self.document.line(loc)

    def _add(self, loc: Loc, kind: str, **fields: object) -> None:
        self.problems.append(
            CampaignProblem(
                self._line(loc), path_text(loc), kind, {k: str(v) for k, v in fields.items()}
            )
        )


def _day(day: date) -> str:
    return day.strftime("%d/%m/%Y")

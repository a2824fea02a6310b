"""A campaign's progress per unit, rolled up the tree by materialized path.

Every query counts in the database: per unit for the scheduler's reports of a whole subtree
(`progress`), per unit directly under an officer's for /tiendo (`standings`). A subtree with a
million initiatives costs as much to carry back as one with a hundred.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    SQLColumnExpression,
    String,
    case,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from storage import targets
from storage.models import (
    Campaign,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    CongressWork,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Pact,
    PactStatus,
    Unit,
    UnitKind,
)
from storage.units import in_subtree


@dataclass(slots=True)
class Figures:
    """Counts of one unit and everything under it."""

    members: int = 0
    registered: int = 0  # members with a registered individual commitment
    registered_recently: int = 0  # of those, registered since the `since` asked for
    grassroots: int = 0
    grassroots_with_work: int = 0
    pacts_accepted: int = 0
    initiatives_submitted: int = 0  # sent for review at some time: everything but drafts
    initiatives_accepted: int = 0
    initiatives_waiting: int = 0  # submitted and not yet reviewed
    commitments: int = 0  # registered commitments, individual and collective

    @property
    def registered_percent(self) -> int:
        return round(100 * self.registered / self.members) if self.members else 0

    @property
    def grassroots_without_work(self) -> int:
        return self.grassroots - self.grassroots_with_work

    def add(self, other: Figures) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Progress:
    """The units of a subtree and the rolled-up figures of each."""

    units: dict[int, Unit] = field(default_factory=dict)
    totals: dict[int, Figures] = field(default_factory=dict)

    def of(self, unit: Unit) -> Figures:
        return self.totals.get(unit.id, Figures())

    def children(self, unit: Unit) -> list[Unit]:
        found = [u for u in self.units.values() if u.parent_id == unit.id]
        return sorted(found, key=lambda u: u.name)


@dataclass(frozen=True, slots=True)
class Standing:
    """A unit's rolled-up figures against its target for one metric."""

    unit: Unit
    figures: Figures
    target: int | None

    @property
    def achieved(self) -> int:
        return self.figures.initiatives_accepted

    @property
    def percent(self) -> int | None:
        """Return the share of the target reached, or None without a (non-zero) target."""
        return round(100 * self.achieved / self.target) if self.target else None


async def progress(
    session: AsyncSession, root: Unit, campaign_id: int, *, since: datetime | None = None
) -> Progress:
    """Compute the figures of every unit under `root`, each including its own subtree."""
    units = {u.id: u for u in (await session.scalars(select(Unit).where(in_subtree(root.path))))}
    own = await _counted(session, root, campaign_id, Unit.path, everything=True, since=since)
    totals = {unit_id: Figures() for unit_id in units}
    for path, figures in own.items():
        for part in path.strip("/").split("/"):
            ancestor = totals.get(int(part))
            if ancestor is not None:
                ancestor.add(figures)
    return Progress(units=units, totals=totals)


async def standings(
    session: AsyncSession, parent: Unit, campaign_id: int, metric: str = targets.INITIATIVES
) -> tuple[Standing, list[Standing]]:
    """Return `parent`'s standing and that of each unit directly under it, by name.

    Each counts everything under the unit. The database groups the rows by the first step of
    their unit's path below `parent`, so only one row per unit below comes back.
    """
    children = (
        await session.scalars(select(Unit).where(Unit.parent_id == parent.id).order_by(Unit.name))
    ).all()
    step = _PathStep(Unit.path, literal(len(parent.path)))
    below = await _counted(session, parent, campaign_id, step)
    total = Figures()
    for figures in below.values():
        total.add(figures)
    goals = await targets.of_units(
        session, [parent.id, *(c.id for c in children)], campaign_id, metric
    )
    return (
        Standing(parent, total, goals.get(parent.id)),
        [Standing(c, below.get(c.path, Figures()), goals.get(c.id)) for c in children],
    )


def worst_first(found: Iterable[Standing]) -> list[Standing]:
    """Order standings from the furthest behind its target; units without one come last."""
    return sorted(
        found,
        key=lambda s: (
            s.percent is None,
            s.percent if s.percent is not None else 0,
            s.achieved,
            s.unit.name,
        ),
    )


def behind(progress: Progress, units: Sequence[Unit]) -> list[tuple[Unit, Figures]]:
    """Return those of `units` with members still to register, the furthest behind first."""
    found = [
        (u, progress.of(u)) for u in units if progress.of(u).registered < progress.of(u).members
    ]
    return sorted(found, key=lambda pair: (pair[1].registered_percent, pair[0].name))


class _PathStep(FunctionElement[str]):
    """The path of a unit's ancestor that ends after `start` characters of a unit's path.

    With `start` the length of "/1/5/", it turns "/1/5/9/12/" into "/1/5/9/" and "/1/5/"
    into itself: the unit directly under /1/5/ that a unit lies in, or /1/5/ itself.
    """

    type = String()
    name = "path_step"
    inherit_cache = True


@compiles(_PathStep)
def _path_step(element: _PathStep, compiler: SQLCompiler, **kw: Any) -> str:
    path, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"substr({path}, 1, {start} + instr(substr({path}, {start} + 1), '/'))"


@compiles(_PathStep, "postgresql")
def _path_step_postgresql(element: _PathStep, compiler: SQLCompiler, **kw: Any) -> str:
    path, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"substr({path}, 1, {start} + strpos(substr({path}, {start} + 1), '/'))"


async def _counted(
    session: AsyncSession,
    root: Unit,
    campaign_id: int,
    key: SQLColumnExpression[str],
    *,
    everything: bool = False,
    since: datetime | None = None,
) -> dict[str, Figures]:
    """Count under `root` by `key`, an expression of the unit's path (the path itself or a step).

    Without `everything`, only what the progress table shows: members, commitments, accepted
    and waiting initiatives.
    """
    await _no_jit(session)
    found: dict[str, Figures] = {}

    def of(path: str) -> Figures:
        figures = found.get(path)
        if figures is None:
            figures = found[path] = Figures()
        return figures

    broad = await _covers_campaign(session, root, campaign_id)
    members = _count(root, broad, key, Member.unit_id, Member.status == MemberStatus.ACTIVE)
    for path, n in (await session.execute(members)).all():
        of(path).members = int(n)

    commitments = _count(
        root,
        broad,
        key,
        Commitment.unit_id,
        Commitment.campaign_id == campaign_id,
        Commitment.status == CommitmentStatus.REGISTERED,
    )
    for path, n in (await session.execute(commitments)).all():
        of(path).commitments = int(n)

    statuses = (
        [s for s in InitiativeStatus if s != InitiativeStatus.DRAFT]
        if everything
        else [InitiativeStatus.ACCEPTED, InitiativeStatus.SUBMITTED]
    )
    initiatives = _count(
        root,
        broad,
        key,
        Initiative.unit_id,
        Initiative.campaign_id == campaign_id,
        Initiative.status.in_(statuses),
        by=Initiative.status,
    )
    for path, status, n in (await session.execute(initiatives)).all():
        figures = of(path)
        figures.initiatives_submitted += int(n)
        if status == InitiativeStatus.ACCEPTED:
            figures.initiatives_accepted += int(n)
        elif status == InitiativeStatus.SUBMITTED:
            figures.initiatives_waiting += int(n)
    if not everything:
        return found

    scope = in_subtree(root.path)
    # When each active member first registered an individual commitment still standing.
    first = (
        select(Member.unit_id, func.min(Commitment.created_at).label("first_at"))
        .join(Commitment, Commitment.author_id == Member.id)
        .where(
            Member.status == MemberStatus.ACTIVE,
            Commitment.campaign_id == campaign_id,
            Commitment.kind == CommitmentKind.INDIVIDUAL,
            Commitment.status == CommitmentStatus.REGISTERED,
        )
        .group_by(Member.id, Member.unit_id)
        .subquery()
    )
    recent = (
        func.sum(case((first.c.first_at >= since, 1), else_=0)) if since is not None else literal(0)
    )
    registered = await session.execute(
        select(key, func.count(), recent)
        .join(first, first.c.unit_id == Unit.id)
        .where(scope)
        .group_by(key)
    )
    for path, n, recently in registered.all():
        of(path).registered = int(n)
        of(path).registered_recently = int(recently or 0)

    grassroots = await session.execute(
        select(key, func.count(Unit.id), func.count(CongressWork.id))
        .outerjoin(
            CongressWork,
            (CongressWork.unit_id == Unit.id) & (CongressWork.campaign_id == campaign_id),
        )
        .where(scope, Unit.kind == UnitKind.GRASSROOTS)
        .group_by(key)
    )
    for path, units, works in grassroots.all():
        of(path).grassroots = int(units)
        of(path).grassroots_with_work = int(works)

    pacts = await session.execute(
        select(key, func.count())
        .join(Commitment, Commitment.unit_id == Unit.id)
        .join(Pact, Pact.commitment_id == Commitment.id)
        .where(scope, Commitment.campaign_id == campaign_id, Pact.status == PactStatus.ACCEPTED)
        .group_by(key)
    )
    for path, n in pacts.all():
        of(path).pacts_accepted = int(n)
    return found


def _count(
    root: Unit,
    broad: bool,
    key: SQLColumnExpression[str],
    unit_id: InstrumentedAttribute[int],
    *conditions: ColumnElement[bool],
    by: InstrumentedAttribute[Any] | None = None,
) -> Select[Any]:
    """Count rows (per `by`, if given) under `root`, grouped by `key` of their unit's path.

    Rows are counted per unit id first and joined with the units afterwards, so that the
    database does not carry every counted row through the join. Only a `broad` root (whose
    subtree holds the whole campaign) counts without first restricting the rows to its subtree;
    a small subtree's rows are found through the unit id index instead.
    """
    keys = [unit_id.label("unit_id")] + ([by.label("by")] if by is not None else [])
    inner = select(*keys, func.count().label("n")).where(*conditions)
    if not broad:
        inner = inner.join(Unit, Unit.id == unit_id).where(in_subtree(root.path))
    counted = inner.group_by(*keys).subquery()
    groups = [key] + ([counted.c.by] if by is not None else [])
    return (
        select(*groups, func.sum(counted.c.n))
        .join(counted, counted.c.unit_id == Unit.id)
        .where(in_subtree(root.path))
        .group_by(*groups)
    )


async def _covers_campaign(session: AsyncSession, root: Unit, campaign_id: int) -> bool:
    """Tell whether the whole campaign lies under `root` (its top unit, or above it)."""
    if root.parent_id is None:
        return True
    top = await session.scalar(
        select(Unit.path)
        .join(Campaign, Campaign.root_unit_id == Unit.id)
        .where(Campaign.id == campaign_id)
    )
    return top is not None and top.startswith(root.path)


async def _no_jit(session: AsyncSession) -> None:
    """Turn PostgreSQL's JIT off for this transaction: compiling costs more than it saves here.

    The counting queries look expensive to the planner (a million index entries), which
    triggers JIT compilation of some sixty functions: about 80 ms, to save a few.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL jit = off"))


# --- accepted initiatives over time: /tiendo's trend chart ------------------------------------


@dataclass(frozen=True, slots=True)
class Week:
    """A week (Monday to Sunday) of a campaign, cut to the days shown, and what it accepted."""

    first: date
    last: date
    accepted: int


async def accepted_by_day(
    session: AsyncSession, root: Unit, campaign: Campaign, zone: ZoneInfo
) -> dict[date | None, int]:
    """Count the accepted initiatives under `root` per local day (in `zone`) of their review.

    The database groups them by day, so a year of reviews comes back in at most 366 rows
    whatever their number. Initiatives accepted without a review time count under None.
    """
    await _no_jit(session)
    day = _local_day(Initiative.reviewed_at, zone, session.get_bind().dialect.name, campaign).label(
        "day"
    )
    days = select(day).where(
        Initiative.campaign_id == campaign.id, Initiative.status == InitiativeStatus.ACCEPTED
    )
    if not await _covers_campaign(session, root, campaign.id):
        days = days.join(Unit, Unit.id == Initiative.unit_id).where(in_subtree(root.path))
    # Grouped outside: PostgreSQL would not match the grouped expression's parameters.
    inner = days.subquery()
    rows = await session.execute(select(inner.c.day, func.count()).group_by(inner.c.day))
    return {_as_date(day): int(n) for day, n in rows.all()}


def weekly(days: Mapping[date | None, int], start: date, end: date) -> list[Week]:
    """Spread counts per day over the calendar weeks from `start` to `end`, both included.

    Days before `start` (and None) count in the first week, days after `end` in the last:
    the weeks add up to every count given.
    """
    if end < start:
        return []
    weeks: list[Week] = []
    first = start
    while first <= end:
        last = min(first + timedelta(days=6 - first.weekday()), end)
        weeks.append(Week(first, last, 0))
        first = last + timedelta(days=1)
    counts = [0] * len(weeks)
    monday = start - timedelta(days=start.weekday())
    for day, n in days.items():
        index = 0 if day is None else (day - monday).days // 7
        counts[min(max(index, 0), len(weeks) - 1)] += n
    return [Week(w.first, w.last, n) for w, n in zip(weeks, counts, strict=True)]


async def accepted_by_week(
    session: AsyncSession, root: Unit, campaign: Campaign, zone: ZoneInfo, today: date
) -> list[Week]:
    """Count the accepted initiatives under `root` per week of `campaign`, up to `today`."""
    end = min(today, campaign.ends_on)
    if end < campaign.starts_on:
        return []
    days = await accepted_by_day(session, root, campaign, zone)
    return weekly(days, campaign.starts_on, end)


def _local_day(
    moment: InstrumentedAttribute[datetime | None], zone: ZoneInfo, dialect: str, around: Campaign
) -> ColumnElement[Any]:
    """The local calendar day, in `zone`, of a stored UTC time (most likely `around` a campaign)."""
    if dialect == "postgresql":
        return cast(func.timezone(zone.key, moment), Date)
    # SQLite keeps UTC as text and knows no time zones: shift by the offset in force then.
    # Whole seconds only: date() would round 23:59:59.9995 up to the next day.
    margin = timedelta(days=7)
    spans = _offsets(
        zone,
        datetime.combine(around.starts_on - margin, time(), tzinfo=UTC),
        datetime.combine(around.ends_on + margin, time(), tzinfo=UTC),
    )
    shifted = [
        func.date(func.substr(moment, 1, 19), f"{minutes:+d} minutes") for _, minutes in spans
    ]
    if len(shifted) == 1:
        return shifted[0]
    return case(
        *[(moment < begins, day) for (begins, _), day in zip(spans[1:], shifted, strict=False)],
        else_=shifted[-1],
    )


def _offsets(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Return the UTC offsets of `zone` in force from `start` to `end`, in minutes, from when.

    A zone without summer time, as Vietnam's, has one. A change is looked for day by day, then
    narrowed down to the microsecond.
    """

    def minutes(moment: datetime) -> int:
        offset = moment.astimezone(zone).utcoffset()
        return int(offset.total_seconds() // 60) if offset is not None else 0

    spans = [(start, minutes(start))]
    day = start
    while day < end:
        following = day + timedelta(days=1)
        if minutes(following) != spans[-1][1]:
            before, after = day, following
            while after - before > timedelta(microseconds=1):
                middle = before + (after - before) / 2
                if minutes(middle) == spans[-1][1]:
                    before = middle
                else:
                    after = middle
            spans.append((after, minutes(after)))
        day = following
    return spans


def _as_date(value: date | str | None) -> date | None:
    """Read a day as PostgreSQL (a date) or SQLite (ISO text) returns it."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)

"""The data of a spreadsheet report: a campaign in one subtree, optionally one phase.

Everything is read in the caller's session, as plain rows (no ORM objects), so the workbook
can be built from it in another thread. Each sheet's rows come from one joined query; the
summary's figures are counted from those rows and rolled up the tree by path, so the summary
and the detail sheets always agree.

With a phase, only what happened in it counts: commitments, pacts and congress works
registered, initiatives submitted, and commendations awarded for it (or, without a phase of
their own, during it). Members are listed whatever the phase: they are the unit's current
roll.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import targets
from storage.models import (
    Campaign,
    Commendation,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    CongressWork,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Movement,
    Pact,
    PactStatus,
    Phase,
    Role,
    Sector,
    Target,
    Unit,
    UnitKind,
    WorkStatus,
)
from storage.text import fold
from storage.units import in_subtree


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: int
    code: str
    name: str
    kind: UnitKind
    sector: Sector | None
    cluster: str | None
    parent_id: int | None
    path: str
    depth: int


@dataclass(slots=True)
class UnitSummary:
    """One unit's figures, each including everything under it (`work_status` is its own)."""

    unit: UnitInfo
    members: int = 0
    commitments: int = 0  # registered (not withdrawn)
    pacts: int = 0  # accepted
    grassroots: int = 0
    grassroots_with_work: int = 0
    works_completed: int = 0
    initiatives_accepted: int = 0
    initiatives_waiting: int = 0
    commendations: int = 0
    target: int | None = None  # the unit's own target for accepted initiatives
    work_status: WorkStatus | None = None  # a CĐCS's own congress work, if it has one

    @property
    def percent(self) -> int | None:
        """Return the share of the target reached, or None without a (non-zero) target."""
        if not self.target:
            return None
        return round(100 * self.initiatives_accepted / self.target)

    def add(self, other: UnitSummary) -> None:
        for name in _ADDED:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_ADDED = (
    "members",
    "commitments",
    "pacts",
    "grassroots",
    "grassroots_with_work",
    "works_completed",
    "initiatives_accepted",
    "initiatives_waiting",
    "commendations",
)


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: int
    name: str
    unit_id: int
    role: Role
    joined_at: datetime
    commitments: int  # registered individual commitments (of the period)
    initiatives_accepted: int  # as first author (of the period)


@dataclass(frozen=True, slots=True)
class CommitmentRow:
    reference: str
    created_at: datetime
    unit_id: int
    author_id: int
    author: str
    kind: CommitmentKind
    movement: str
    content: str
    target_value: float | None
    target_unit: str | None
    progress_percent: int
    status: CommitmentStatus
    late: bool


@dataclass(frozen=True, slots=True)
class PactRow:
    commitment_reference: str
    created_at: datetime
    unit_id: int  # the proposing commitment's unit
    proposer: str
    counterpart_member: str | None
    counterpart_unit: str | None  # the counterpart unit, or the counterpart member's unit
    status: PactStatus
    responded_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkRow:
    reference: str
    unit_id: int
    title: str
    status: WorkStatus
    progress_percent: int
    registered_by: str
    created_at: datetime
    updated_at: datetime
    late: bool


@dataclass(frozen=True, slots=True)
class InitiativeRow:
    reference: str
    title: str
    unit_id: int
    author_id: int
    author: str
    co_authors: tuple[str, ...]
    field: str | None
    submitted_at: datetime | None
    status: InitiativeStatus
    estimated_value: int | None
    recognised_value: int | None
    recognised_level: str | None
    reviewer: str | None
    reviewed_at: datetime | None
    review_note: str | None


@dataclass(frozen=True, slots=True)
class CommendationRow:
    created_at: datetime
    title: str
    member: str | None  # None when the unit itself is commended
    unit_id: int
    reason: str
    phase: str | None
    awarded_by: str


@dataclass(frozen=True, slots=True)
class Period:
    """The phase a report is limited to."""

    number: int
    name: str
    starts_on: date
    ends_on: date


@dataclass(slots=True)
class ReportData:
    root: UnitInfo
    campaign_code: str
    campaign_name: str
    campaign_starts_on: date
    campaign_ends_on: date
    period: Period | None
    units: dict[int, UnitInfo]
    summaries: list[UnitSummary] = field(default_factory=list)  # the tree, depth first
    members: list[MemberRow] = field(default_factory=list)
    commitments: list[CommitmentRow] = field(default_factory=list)
    pacts: list[PactRow] = field(default_factory=list)
    works: list[WorkRow] = field(default_factory=list)
    initiatives: list[InitiativeRow] = field(default_factory=list)
    commendations: list[CommendationRow] = field(default_factory=list)

    def summary_of(self, unit_id: int) -> UnitSummary:
        return next(s for s in self.summaries if s.unit.id == unit_id)


def phase_window(phase: Phase, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the moments a phase starts and ends: its first and the day after its last, local."""
    start = datetime.combine(phase.starts_on, time(0, 0), tzinfo=zone)
    end = datetime.combine(phase.ends_on + timedelta(days=1), time(0, 0), tzinfo=zone)
    return start, end


async def load(
    session: AsyncSession,
    root: Unit,
    campaign: Campaign,
    *,
    phase: Phase | None = None,
    zone: ZoneInfo,
) -> ReportData:
    """Read everything a report of `root`'s subtree in `campaign` shows, in one session."""
    scope = in_subtree(root.path)
    unit_rows = await session.execute(
        select(
            Unit.id,
            Unit.code,
            Unit.name,
            Unit.kind,
            Unit.sector,
            Unit.cluster,
            Unit.parent_id,
            Unit.path,
            Unit.depth,
        ).where(scope)
    )
    units = {row.id: UnitInfo(*row) for row in unit_rows.all()}
    window = phase_window(phase, zone) if phase is not None else None

    def within(
        column: SQLColumnExpression[datetime] | SQLColumnExpression[datetime | None],
    ) -> list[ColumnElement[bool]]:
        if window is None:
            return []
        return [column >= window[0], column < window[1]]

    data = ReportData(
        root=units[root.id],
        campaign_code=campaign.code,
        campaign_name=campaign.name,
        campaign_starts_on=campaign.starts_on,
        campaign_ends_on=campaign.ends_on,
        period=Period(phase.number, phase.name, phase.starts_on, phase.ends_on)
        if phase is not None
        else None,
        units=units,
    )
    data.commitments = await _commitments(
        session, scope, campaign.id, within(Commitment.created_at)
    )
    data.pacts = await _pacts(session, scope, campaign.id, within(Pact.created_at))
    data.works = await _works(session, scope, campaign.id, within(CongressWork.created_at))
    data.initiatives = await _initiatives(
        session, scope, campaign.id, within(Initiative.submitted_at)
    )
    commended = [Commendation.phase_id == phase.id] if phase is not None else []
    if window is not None:
        commended.append(and_(Commendation.phase_id.is_(None), *within(Commendation.created_at)))
    data.commendations = await _commendations(session, scope, campaign.id, commended)
    data.members = await _members(session, scope, data)
    goals = await session.execute(
        select(Target.unit_id, Target.value)
        .join(Unit, Unit.id == Target.unit_id)
        .where(scope, Target.campaign_id == campaign.id, Target.metric == targets.INITIATIVES)
    )
    order = _unit_order(units)
    data.summaries = _summaries(data, {unit_id: int(value) for unit_id, value in goals.all()})
    data.summaries.sort(key=lambda s: order[s.unit.id])
    # Detail rows by unit in the summary's order; within a unit, as the queries gave them.
    # Vietnamese rolls go by given name (the last word), then the whole name.
    data.members.sort(key=lambda m: (order[m.unit_id], _given_name(m.name), fold(m.name), m.id))
    for rows in (data.commitments, data.pacts, data.works, data.initiatives, data.commendations):
        rows.sort(key=lambda r: order[r.unit_id])
    return data


async def _members(
    session: AsyncSession, scope: ColumnElement[bool], data: ReportData
) -> list[MemberRow]:
    rows = await session.execute(
        select(Member.id, Member.full_name, Member.unit_id, Member.role, Member.created_at)
        .join(Unit, Unit.id == Member.unit_id)
        .where(scope, Member.status == MemberStatus.ACTIVE)
    )
    commitments = Counter(
        c.author_id
        for c in data.commitments
        if c.kind == CommitmentKind.INDIVIDUAL and c.status == CommitmentStatus.REGISTERED
    )
    accepted = Counter(
        i.author_id for i in data.initiatives if i.status == InitiativeStatus.ACCEPTED
    )
    members = [
        MemberRow(
            id=member_id,
            name=name,
            unit_id=unit_id,
            role=role,
            joined_at=joined_at,
            commitments=commitments[member_id],
            initiatives_accepted=accepted[member_id],
        )
        for member_id, name, unit_id, role, joined_at in rows.all()
    ]
    return members


async def _commitments(
    session: AsyncSession,
    scope: ColumnElement[bool],
    campaign_id: int,
    period: list[ColumnElement[bool]],
) -> list[CommitmentRow]:
    rows = await session.execute(
        select(
            Commitment.reference,
            Commitment.created_at,
            Commitment.unit_id,
            Commitment.author_id,
            Member.full_name,
            Commitment.kind,
            Movement.name,
            Commitment.content,
            Commitment.target_value,
            Commitment.target_unit,
            Commitment.progress_percent,
            Commitment.status,
            Commitment.late,
        )
        .join(Unit, Unit.id == Commitment.unit_id)
        .join(Member, Member.id == Commitment.author_id)
        .join(Movement, Movement.id == Commitment.movement_id)
        .where(scope, Commitment.campaign_id == campaign_id, *period)
        .order_by(Commitment.created_at, Commitment.id)
    )
    return [CommitmentRow(*tuple(row)) for row in rows.all()]


async def _pacts(
    session: AsyncSession,
    scope: ColumnElement[bool],
    campaign_id: int,
    period: list[ColumnElement[bool]],
) -> list[PactRow]:
    proposer, counterpart = aliased(Member), aliased(Member)
    counterpart_unit, member_unit = aliased(Unit), aliased(Unit)
    rows = await session.execute(
        select(
            Commitment.reference,
            Pact.created_at,
            Commitment.unit_id,
            proposer.full_name,
            counterpart.full_name,
            counterpart_unit.name,
            member_unit.name,
            Pact.status,
            Pact.responded_at,
        )
        .join(Commitment, Commitment.id == Pact.commitment_id)
        .join(Unit, Unit.id == Commitment.unit_id)
        .join(proposer, proposer.id == Pact.proposer_id)
        .outerjoin(counterpart, counterpart.id == Pact.counterpart_member_id)
        .outerjoin(counterpart_unit, counterpart_unit.id == Pact.counterpart_unit_id)
        .outerjoin(member_unit, member_unit.id == counterpart.unit_id)
        .where(scope, Commitment.campaign_id == campaign_id, *period)
        .order_by(Pact.created_at, Pact.id)
    )
    return [
        PactRow(
            commitment_reference=reference,
            created_at=created_at,
            unit_id=unit_id,
            proposer=proposer_name,
            counterpart_member=member_name,
            counterpart_unit=unit_name if unit_name is not None else member_unit_name,
            status=status,
            responded_at=responded_at,
        )
        for (
            reference,
            created_at,
            unit_id,
            proposer_name,
            member_name,
            unit_name,
            member_unit_name,
            status,
            responded_at,
        ) in rows.all()
    ]


async def _works(
    session: AsyncSession,
    scope: ColumnElement[bool],
    campaign_id: int,
    period: list[ColumnElement[bool]],
) -> list[WorkRow]:
    rows = await session.execute(
        select(
            CongressWork.reference,
            CongressWork.unit_id,
            CongressWork.title,
            CongressWork.status,
            CongressWork.progress_percent,
            Member.full_name,
            CongressWork.created_at,
            CongressWork.updated_at,
            CongressWork.late,
        )
        .join(Unit, Unit.id == CongressWork.unit_id)
        .join(Member, Member.id == CongressWork.registered_by_id)
        .where(scope, CongressWork.campaign_id == campaign_id, *period)
    )
    return [WorkRow(*row) for row in rows.all()]


async def _initiatives(
    session: AsyncSession,
    scope: ColumnElement[bool],
    campaign_id: int,
    period: list[ColumnElement[bool]],
) -> list[InitiativeRow]:
    author, reviewer = aliased(Member), aliased(Member)
    rows = (
        await session.execute(
            select(
                Initiative.reference,
                Initiative.title,
                Initiative.unit_id,
                Initiative.author_id,
                author.full_name,
                Initiative.co_author_ids,
                Initiative.field,
                Initiative.submitted_at,
                Initiative.status,
                Initiative.estimated_value,
                Initiative.recognised_value,
                Initiative.recognised_level,
                reviewer.full_name,
                Initiative.reviewed_at,
                Initiative.review_note,
            )
            .join(Unit, Unit.id == Initiative.unit_id)
            .join(author, author.id == Initiative.author_id)
            .outerjoin(reviewer, reviewer.id == Initiative.reviewer_id)
            .where(
                scope,
                Initiative.campaign_id == campaign_id,
                # A draft is the author's own until it is sent for review.
                Initiative.status != InitiativeStatus.DRAFT,
                *period,
            )
            .order_by(Initiative.submitted_at, Initiative.id)
        )
    ).all()
    co_author_ids = {i for row in rows for i in (row.co_author_ids or [])}
    names = await _names(session, co_author_ids)
    return [
        InitiativeRow(
            reference=row.reference or "",
            title=row.title,
            unit_id=row.unit_id,
            author_id=row.author_id,
            author=row[4],
            co_authors=tuple(names[i] for i in (row.co_author_ids or []) if i in names),
            field=row.field,
            submitted_at=row.submitted_at,
            status=row.status,
            estimated_value=row.estimated_value,
            recognised_value=row.recognised_value,
            recognised_level=row.recognised_level,
            reviewer=row[12],
            reviewed_at=row.reviewed_at,
            review_note=row.review_note,
        )
        for row in rows
    ]


async def _commendations(
    session: AsyncSession,
    scope: ColumnElement[bool],
    campaign_id: int,
    period: list[ColumnElement[bool]],
) -> list[CommendationRow]:
    commended, awarded_by = aliased(Member), aliased(Member)
    statement = (
        select(
            Commendation.created_at,
            Commendation.title,
            commended.full_name,
            Commendation.unit_id,
            Commendation.reason,
            Phase.name,
            awarded_by.full_name,
        )
        .join(Unit, Unit.id == Commendation.unit_id)
        .outerjoin(commended, commended.id == Commendation.member_id)
        .outerjoin(Phase, Phase.id == Commendation.phase_id)
        .join(awarded_by, awarded_by.id == Commendation.awarded_by_id)
        .where(scope, Commendation.campaign_id == campaign_id)
        .order_by(Commendation.created_at, Commendation.id)
    )
    if period:
        statement = statement.where(or_(*period))
    return [CommendationRow(*row) for row in (await session.execute(statement)).all()]


async def _names(session: AsyncSession, member_ids: Iterable[int]) -> dict[int, str]:
    """Return the names of a few members (co-authors), in batches the databases accept."""
    ids = sorted(member_ids)
    names: dict[int, str] = {}
    for start in range(0, len(ids), _BATCH):
        rows = await session.execute(
            select(Member.id, Member.full_name).where(Member.id.in_(ids[start : start + _BATCH]))
        )
        names.update({member_id: name for member_id, name in rows.all()})
    return names


_BATCH = 5000


def _unit_order(units: dict[int, UnitInfo]) -> dict[int, int]:
    """Number the units depth first, siblings by name: the order every sheet follows."""
    children: dict[int | None, list[UnitInfo]] = defaultdict(list)
    for unit in units.values():
        parent = unit.parent_id if unit.parent_id in units else None
        children[parent].append(unit)
    order: dict[int, int] = {}
    stack = sorted(children[None], key=_name_key, reverse=True)
    while stack:
        unit = stack.pop()
        order[unit.id] = len(order)
        stack.extend(sorted(children[unit.id], key=_name_key, reverse=True))
    return order


def _given_name(full_name: str) -> str:
    words = fold(full_name).split()
    return words[-1] if words else ""


def _name_key(unit: UnitInfo) -> tuple[str, str]:
    return fold(unit.name), unit.code


def _summaries(data: ReportData, goals: dict[int, int]) -> list[UnitSummary]:
    """Count each unit's own figures from the detail rows, then add them up the tree."""
    own = {
        unit_id: UnitSummary(unit, target=goals.get(unit_id))
        for unit_id, unit in data.units.items()
    }
    for member in data.members:
        own[member.unit_id].members += 1
    for commitment in data.commitments:
        if commitment.status == CommitmentStatus.REGISTERED:
            own[commitment.unit_id].commitments += 1
    for pact in data.pacts:
        if pact.status == PactStatus.ACCEPTED:
            own[pact.unit_id].pacts += 1
    for unit_id, unit in data.units.items():
        if unit.kind == UnitKind.GRASSROOTS:
            own[unit_id].grassroots = 1
    for work in data.works:
        summary = own[work.unit_id]
        summary.work_status = work.status
        summary.grassroots_with_work = summary.grassroots
        summary.works_completed += int(work.status == WorkStatus.COMPLETED)
    for initiative in data.initiatives:
        if initiative.status == InitiativeStatus.ACCEPTED:
            own[initiative.unit_id].initiatives_accepted += 1
        elif initiative.status == InitiativeStatus.SUBMITTED:
            own[initiative.unit_id].initiatives_waiting += 1
    for commendation in data.commendations:
        own[commendation.unit_id].commendations += 1
    totals = {
        unit_id: UnitSummary(s.unit, target=s.target, work_status=s.work_status)
        for unit_id, s in own.items()
    }
    for unit_id, summary in own.items():
        for part in data.units[unit_id].path.strip("/").split("/"):
            ancestor = totals.get(int(part))
            if ancestor is not None:
                ancestor.add(summary)
    return list(totals.values())

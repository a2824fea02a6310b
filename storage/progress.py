"""A campaign's progress per unit, computed in a few grouped queries and rolled up the tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
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
    initiatives_submitted: int = 0
    initiatives_accepted: int = 0

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


async def progress(
    session: AsyncSession, root: Unit, campaign_id: int, *, since: datetime | None = None
) -> Progress:
    """Compute the figures of every unit under `root`, each including its own subtree."""
    units = {u.id: u for u in (await session.scalars(select(Unit).where(in_subtree(root.path))))}
    own: dict[int, Figures] = {unit_id: Figures() for unit_id in units}
    scope = in_subtree(root.path)

    members = await session.execute(
        select(Member.unit_id, func.count())
        .join(Unit, Unit.id == Member.unit_id)
        .where(scope, Member.status == MemberStatus.ACTIVE)
        .group_by(Member.unit_id)
    )
    for unit_id, n in members.all():
        own[unit_id].members = int(n)

    # One row per member, however many commitments they hold: when they first registered.
    registered = (
        select(Member.unit_id, func.min(Commitment.created_at))
        .join(Unit, Unit.id == Member.unit_id)
        .join(Commitment, Commitment.author_id == Member.id)
        .where(
            scope,
            Member.status == MemberStatus.ACTIVE,
            Commitment.campaign_id == campaign_id,
            Commitment.kind == CommitmentKind.INDIVIDUAL,
            Commitment.status == CommitmentStatus.REGISTERED,
        )
        .group_by(Member.id, Member.unit_id)
    )
    for unit_id, created_at in (await session.execute(registered)).all():
        own[unit_id].registered += 1
        if since is not None and created_at >= since:
            own[unit_id].registered_recently += 1

    with_work = set(
        (
            await session.scalars(
                select(CongressWork.unit_id)
                .join(Unit, Unit.id == CongressWork.unit_id)
                .where(scope, CongressWork.campaign_id == campaign_id)
            )
        ).all()
    )
    for unit in units.values():
        if unit.kind == UnitKind.GRASSROOTS:
            own[unit.id].grassroots = 1
            own[unit.id].grassroots_with_work = int(unit.id in with_work)

    pacts = await session.execute(
        select(Commitment.unit_id, func.count())
        .join(Pact, Pact.commitment_id == Commitment.id)
        .join(Unit, Unit.id == Commitment.unit_id)
        .where(scope, Commitment.campaign_id == campaign_id, Pact.status == PactStatus.ACCEPTED)
        .group_by(Commitment.unit_id)
    )
    for unit_id, n in pacts.all():
        own[unit_id].pacts_accepted = int(n)

    initiatives = await session.execute(
        select(Initiative.unit_id, Initiative.status, func.count())
        .join(Unit, Unit.id == Initiative.unit_id)
        .where(
            scope,
            Initiative.campaign_id == campaign_id,
            Initiative.status != InitiativeStatus.DRAFT,
        )
        .group_by(Initiative.unit_id, Initiative.status)
    )
    for unit_id, status, n in initiatives.all():
        own[unit_id].initiatives_submitted += int(n)
        if status == InitiativeStatus.ACCEPTED:
            own[unit_id].initiatives_accepted += int(n)

    return Progress(units=units, totals=_roll_up(units, own))


def _roll_up(units: dict[int, Unit], own: dict[int, Figures]) -> dict[int, Figures]:
    """Add each unit's own figures to itself and to every ancestor within the subtree."""
    totals = {unit_id: Figures() for unit_id in units}
    for unit in units.values():
        for part in unit.path.strip("/").split("/"):
            ancestor = int(part)
            if ancestor in totals:
                totals[ancestor].add(own[unit.id])
    return totals


def behind(progress: Progress, units: Sequence[Unit]) -> list[tuple[Unit, Figures]]:
    """Return those of `units` with members still to register, the furthest behind first."""
    found = [
        (u, progress.of(u)) for u in units if progress.of(u).registered < progress.of(u).members
    ]
    return sorted(found, key=lambda pair: (pair[1].registered_percent, pair[0].name))

"""Emulation clusters (khối, cụm thi đua) and the ranking of their units.

A cluster is a name given to units in the units file; its units compete with one another.
Each unit counts with everything under it: its active members and the initiatives accepted
in the campaign. Units are ranked by accepted initiatives per member and by the share of
their own target reached; equal values share a rank ("1, 1, 3"), and units the measure does
not apply to (no members, no target) are listed apart, unranked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import targets
from storage.models import Initiative, InitiativeStatus, Member, MemberStatus, Unit
from storage.text import fold
from storage.units import ancestors, in_subtree


@dataclass(frozen=True, slots=True)
class Entry:
    """A unit of a cluster with its subtree's figures."""

    unit: Unit
    members: int
    accepted: int
    target: int | None

    @property
    def per_member(self) -> Fraction | None:
        """Accepted initiatives per member; None for a unit without members."""
        return Fraction(self.accepted, self.members) if self.members else None

    @property
    def of_target(self) -> Fraction | None:
        """The share of the target reached; None without a (non-zero) target."""
        return Fraction(self.accepted, self.target) if self.target else None


@dataclass(frozen=True, slots=True)
class Ranked:
    rank: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Ranking:
    ranked: list[Ranked]
    unranked: list[Entry]  # the measure does not apply: no members, or no target


def _name_key(unit: Unit) -> tuple[str, str]:
    return fold(unit.name), unit.code


async def cluster_of(session: AsyncSession, unit: Unit) -> str | None:
    """Return the cluster `unit` competes in: its own, else that of its nearest ancestor."""
    if unit.cluster:
        return unit.cluster
    for ancestor in await ancestors(session, unit):
        if ancestor.cluster:
            return ancestor.cluster
    return None


async def clusters_within(session: AsyncSession, root: Unit) -> list[str]:
    """Return the clusters that have units at or under `root`, by name."""
    rows = await session.scalars(
        select(Unit.cluster).where(in_subtree(root.path), Unit.cluster.is_not(None)).distinct()
    )
    return sorted((name for name in rows.all() if name), key=fold)


async def cluster_units(session: AsyncSession, root: Unit, cluster: str) -> Sequence[Unit]:
    """Return the units of a cluster within `root`'s subtree (the campaign's tree)."""
    rows = await session.scalars(
        select(Unit).where(in_subtree(root.path), Unit.cluster == cluster).order_by(Unit.path)
    )
    return rows.all()


async def entries(session: AsyncSession, units: Sequence[Unit], campaign_id: int) -> list[Entry]:
    """Count each unit's active members and accepted initiatives, subtree included.

    Two grouped queries over the units' subtrees give the figures per unit path; each path
    counts for every unit of the list it lies under.
    """
    if not units:
        return []
    scope = or_(*(in_subtree(u.path) for u in units))
    by_path = {u.path: u for u in units}
    members: dict[int, int] = dict.fromkeys((u.id for u in units), 0)
    accepted: dict[int, int] = dict.fromkeys((u.id for u in units), 0)
    member_rows = await session.execute(
        select(Unit.path, func.count())
        .join(Member, Member.unit_id == Unit.id)
        .where(scope, Member.status == MemberStatus.ACTIVE)
        .group_by(Unit.path)
    )
    initiative_rows = await session.execute(
        select(Unit.path, func.count())
        .join(Initiative, Initiative.unit_id == Unit.id)
        .where(
            scope,
            Initiative.campaign_id == campaign_id,
            Initiative.status == InitiativeStatus.ACCEPTED,
        )
        .group_by(Unit.path)
    )
    for counts, rows in ((members, member_rows), (accepted, initiative_rows)):
        for path, n in rows.all():
            for unit in _covering(by_path, path):
                counts[unit.id] += int(n)
    goals = await targets.of_units(session, members, campaign_id, targets.INITIATIVES)
    return [Entry(u, members[u.id], accepted[u.id], goals.get(u.id)) for u in units]


def _covering(by_path: dict[str, Unit], path: str) -> list[Unit]:
    """Return the units of the list that `path` is, or lies under."""
    found = []
    end = path.find("/", 1)
    while end != -1:
        unit = by_path.get(path[: end + 1])
        if unit is not None:
            found.append(unit)
        end = path.find("/", end + 1)
    return found


def rank(found: Sequence[Entry], measure: Callable[[Entry], Fraction | None]) -> Ranking:
    """Rank entries by a measure, highest first; equal measures share a rank.

    Among equals, more accepted initiatives come first, then the name; entries the measure
    does not apply to are returned apart, by name.
    """
    measured = [(measure(e), e) for e in found]
    ranked_entries = sorted(
        ((value, e) for value, e in measured if value is not None),
        key=lambda pair: (-pair[0], -pair[1].accepted, _name_key(pair[1].unit)),
    )
    ranked: list[Ranked] = []
    previous: Fraction | None = None
    for position, (value, entry) in enumerate(ranked_entries, 1):
        shared = ranked[-1].rank if ranked and value == previous else position
        ranked.append(Ranked(shared, entry))
        previous = value
    unranked = sorted(
        (e for value, e in measured if value is None), key=lambda e: _name_key(e.unit)
    )
    return Ranking(ranked, unranked)


def by_member(found: Sequence[Entry]) -> Ranking:
    return rank(found, lambda e: e.per_member)


def by_target(found: Sequence[Entry]) -> Ranking:
    return rank(found, lambda e: e.of_target)

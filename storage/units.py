"""Queries on the unit tree."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Unit, UnitKind
from storage.text import fold


def path_upper_bound(path: str) -> str:
    """Return the smallest string above every path that starts with `path` ("/1/5/")."""
    # '/' sorts just below '0', so "/1/5/..." < "/1/50" while "/1/6/" and "/1/50/" are not below.
    return path[:-1] + "0"


def in_subtree(path: str, *, include_root: bool = True) -> ColumnElement[bool]:
    """Filter units at `path` or below it, as one range on the unique path index."""
    lower = Unit.path >= path if include_root else Unit.path > path
    return and_(lower, Unit.path < path_upper_bound(path))


def is_within(unit: Unit, ancestor: Unit) -> bool:
    """Tell whether `unit` is `ancestor` or lies under it."""
    return unit.path.startswith(ancestor.path)


async def get_by_code(session: AsyncSession, code: str) -> Unit | None:
    """Find a unit by its code, ignoring case and surrounding blanks."""
    normalized = code.strip().upper()
    return await session.scalar(select(Unit).where(Unit.code == normalized))


async def get(session: AsyncSession, unit_id: int) -> Unit | None:
    return await session.get(Unit, unit_id)


async def subtree(session: AsyncSession, root: Unit, *, limit: int | None = None) -> Sequence[Unit]:
    """Return `root` and every unit under it, parents before children."""
    query = select(Unit).where(in_subtree(root.path)).order_by(Unit.depth, Unit.name)
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


async def subtree_size(session: AsyncSession, root: Unit) -> int:
    count = await session.scalar(select(func.count()).where(in_subtree(root.path)))
    return int(count or 0)


async def ancestors(session: AsyncSession, unit: Unit) -> Sequence[Unit]:
    """Return the units above `unit`, nearest first."""
    ids = [int(part) for part in unit.path.strip("/").split("/")[:-1]]
    if not ids:
        return []
    rows = (await session.scalars(select(Unit).where(Unit.id.in_(ids)))).all()
    return sorted(rows, key=lambda u: -u.depth)


async def search(
    session: AsyncSession,
    query: str,
    *,
    kinds: Sequence[UnitKind] | None = None,
    within: Unit | None = None,
    limit: int = 8,
) -> Sequence[Unit]:
    """Find units whose code equals, or whose name contains, `query`, accents ignored."""
    folded = fold(query)
    if not folded:
        return []
    words = folded.split()
    name_match = and_(*(Unit.name_folded.contains(word, autoescape=True) for word in words))
    condition = or_(Unit.code == query.strip().upper(), name_match)
    statement = select(Unit).where(condition)
    if kinds:
        statement = statement.where(Unit.kind.in_(kinds))
    if within is not None:
        statement = statement.where(in_subtree(within.path))
    statement = statement.order_by(Unit.depth, Unit.name).limit(limit)
    return (await session.scalars(statement)).all()


async def children(session: AsyncSession, parent: Unit) -> Sequence[Unit]:
    """Return the units directly under `parent`, by name."""
    statement = select(Unit).where(Unit.parent_id == parent.id).order_by(Unit.name)
    return (await session.scalars(statement)).all()

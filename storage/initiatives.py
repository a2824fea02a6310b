"""Initiatives (sáng kiến): drafts, the review queue, similar titles and a member's list."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Initiative, InitiativeStatus, Member, Unit
from storage.units import in_subtree

# Titles compared for the "similar initiatives" hint: the most recent ones of the subtree.
SIMILAR_POOL = 5000
SIMILAR_SCORE = 75  # out of 100, on accent-folded titles


async def draft_of(session: AsyncSession, campaign_id: int, author_id: int) -> Initiative | None:
    """Return the member's unfinished draft, if any."""
    return await session.scalar(
        select(Initiative)
        .where(
            Initiative.campaign_id == campaign_id,
            Initiative.author_id == author_id,
            Initiative.status == InitiativeStatus.DRAFT,
        )
        .order_by(Initiative.id.desc())
        .limit(1)
    )


async def of_author(
    session: AsyncSession, campaign_id: int, author_id: int
) -> Sequence[Initiative]:
    """Return a member's initiatives past the draft stage, newest first."""
    rows = await session.scalars(
        select(Initiative)
        .where(
            Initiative.campaign_id == campaign_id,
            Initiative.author_id == author_id,
            Initiative.status != InitiativeStatus.DRAFT,
        )
        .order_by(Initiative.id.desc())
    )
    return rows.all()


async def similar(
    session: AsyncSession,
    scope: Unit,
    campaign_id: int,
    title_folded: str,
    *,
    exclude_id: int | None,
    limit: int = 3,
) -> list[tuple[Initiative, float]]:
    """Return up to `limit` initiatives of the subtree whose titles resemble this one.

    Titles are compared accent-folded with rapidfuzz's token-set ratio, which forgives typos,
    word order and extra words.
    """
    rows = (
        await session.execute(
            select(Initiative.id, Initiative.title_folded)
            .join(Unit, Unit.id == Initiative.unit_id)
            .where(
                in_subtree(scope.path),
                Initiative.campaign_id == campaign_id,
                Initiative.status != InitiativeStatus.DRAFT,
                Initiative.id != (exclude_id or 0),
            )
            .order_by(Initiative.id.desc())
            .limit(SIMILAR_POOL)
        )
    ).all()
    titles = {row.id: row.title_folded for row in rows}
    matches = process.extract(
        title_folded,
        titles,
        scorer=fuzz.token_set_ratio,
        score_cutoff=SIMILAR_SCORE,
        limit=limit,
    )
    found: list[tuple[Initiative, float]] = []
    for _, score, initiative_id in matches:
        initiative = await session.get(Initiative, initiative_id)
        if initiative is not None:
            found.append((initiative, score))
    return found


async def review_queue(
    session: AsyncSession, scope: Unit, campaign_id: int, *, reviewer_id: int
) -> Sequence[tuple[Initiative, Member, Unit]]:
    """Return the submitted initiatives of the subtree, oldest first; never the reviewer's own."""
    rows = await session.execute(
        select(Initiative, Member, Unit)
        .join(Member, Member.id == Initiative.author_id)
        .join(Unit, Unit.id == Initiative.unit_id)
        .where(
            in_subtree(scope.path),
            Initiative.campaign_id == campaign_id,
            Initiative.status == InitiativeStatus.SUBMITTED,
            Initiative.author_id != reviewer_id,
        )
        .order_by(Initiative.submitted_at, Initiative.id)
    )
    return [(row[0], row[1], row[2]) for row in rows.all()]


async def names(session: AsyncSession, member_ids: Sequence[int]) -> list[str]:
    """Return the full names of members, in the order given."""
    if not member_ids:
        return []
    rows = dict(
        (
            await session.execute(
                select(Member.id, Member.full_name).where(Member.id.in_(list(member_ids)))
            )
        ).all()
    )
    return [rows[i] for i in member_ids if i in rows]

"""Expire pact proposals nobody answered in time, and tell their proposers."""

from __future__ import annotations

import logging

from sqlalchemy import select

from handlers.i18n import Catalogue
from storage import accounts, outbox
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import Commitment, Pact, PactStatus

log = logging.getLogger(__name__)


async def expire_pacts(sessions: SessionFactory, clock: Clock, texts: Catalogue) -> int:
    """Mark overdue proposals expired and queue a message to each proposer; return how many."""
    now = clock.now()
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                select(Pact, Commitment)
                .join(Commitment, Commitment.id == Pact.commitment_id)
                .where(Pact.status == PactStatus.PROPOSED, Pact.expires_at <= now)
                .order_by(Pact.id)
                .with_for_update(of=Pact, skip_locked=True)
            )
        ).all()
        for pact, commitment in rows:
            pact.status = PactStatus.EXPIRED
            account = await accounts.preferred(session, pact.proposer_id)
            if account is not None:
                text = texts("pact.proposer_expired", reference=commitment.reference)
                outbox.enqueue(
                    session,
                    account_id=account.id,
                    channel=account.channel,
                    payload={"text": text},
                    now=now,
                )
    if rows:
        log.info("expired %d unanswered pact proposals", len(rows))
    return len(rows)

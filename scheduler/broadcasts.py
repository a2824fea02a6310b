"""Finished broadcasts are reported to their authors."""

from __future__ import annotations

import logging

from handlers.i18n import Catalogue
from storage import accounts, outbox
from storage import broadcasts as broadcast_store
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import OutboxStatus

log = logging.getLogger(__name__)


async def report_finished(sessions: SessionFactory, clock: Clock, texts: Catalogue) -> int:
    """Send each author the delivery report of their broadcasts that have finished."""
    now = clock.now()
    reported = 0
    async with sessions() as session, session.begin():
        for broadcast in await broadcast_store.finished_unreported(session):
            broadcast.finished_at = now
            if broadcast.author_id is None:
                continue  # the bot's own announcement: nobody to report to
            account = await accounts.preferred(session, broadcast.author_id)
            if account is None:
                continue
            counts = await broadcast_store.counts(session, broadcast.id)
            text = texts(
                "broadcast.finished",
                number=broadcast.id,
                sent=counts[OutboxStatus.SENT],
                failed=counts[OutboxStatus.FAILED],
                unreachable=counts[OutboxStatus.UNREACHABLE],
            )
            outbox.enqueue(
                session,
                account_id=account.id,
                channel=account.channel,
                payload={"text": text},
                now=now,
            )
            reported += 1
    return reported

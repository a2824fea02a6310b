"""Scheduled broadcasts go out when due; finished ones are reported to their authors."""

from __future__ import annotations

import logging

from handlers.i18n import Catalogue
from storage import accounts, outbox, units
from storage import broadcasts as broadcast_store
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import OutboxStatus

log = logging.getLogger(__name__)


async def queue_due(sessions: SessionFactory, clock: Clock) -> int:
    """Queue the recipients of every scheduled broadcast whose time has come."""
    now = clock.now()
    queued = 0
    async with sessions() as session, session.begin():
        for broadcast in await broadcast_store.due(session, now):
            scope = await units.get(session, broadcast.scope_unit_id)
            if scope is None:
                continue
            queued += await broadcast_store.queue(session, broadcast, scope, now)
            log.info("scheduled broadcast %s queued", broadcast.id)
    return queued


async def report_finished(sessions: SessionFactory, clock: Clock, texts: Catalogue) -> int:
    """Send each author the delivery report of their broadcasts that have finished."""
    now = clock.now()
    reported = 0
    async with sessions() as session, session.begin():
        for broadcast in await broadcast_store.finished_unreported(session):
            broadcast.finished_at = now
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

"""The scheduler: APScheduler runs the bot's periodic work; the work only queues messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from handlers.i18n import Catalogue
from scheduler import broadcasts
from scheduler.pacts import expire_pacts
from storage import inbox
from storage.clock import Clock
from storage.engine import SessionFactory

log = logging.getLogger(__name__)

TICK_JOB = "tick"
# Long enough to recognise any redelivered update; Telegram retries for at most a day.
INBOX_RETENTION = timedelta(days=7)


class Scheduler:
    """Run every periodic job once a minute against the injectable clock."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        texts: Catalogue,
        zone: ZoneInfo,
        on_queued: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._texts = texts
        self._zone = zone
        self._on_queued = on_queued
        self._aps: AsyncIOScheduler | None = None

    def start(self) -> None:
        self._aps = AsyncIOScheduler(timezone=self._zone)
        self._aps.add_job(
            self.tick,
            IntervalTrigger(minutes=1, timezone=self._zone),
            id=TICK_JOB,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )
        self._aps.start()

    def stop(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        self._aps = None

    async def tick(self) -> int:
        """Do whatever is due at the clock's current time; return how many messages it queued."""
        queued = 0
        try:
            queued += await expire_pacts(self._sessions, self._clock, self._texts)
            queued += await broadcasts.queue_due(self._sessions, self._clock)
            queued += await broadcasts.report_finished(self._sessions, self._clock, self._texts)
            async with self._sessions() as session, session.begin():
                await inbox.purge(session, self._clock.now() - INBOX_RETENTION)
        except Exception:
            log.exception("scheduled work failed")
        if queued:
            self._on_queued()
        return queued

"""The scheduler: the database decides what is due, APScheduler wakes the bot to do it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.i18n import Catalogue
from scheduler import broadcasts, runs
from scheduler.leader import Leadership
from scheduler.pacts import expire_pacts
from storage import inbox, privacy, schedule_runs
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import RunStatus
from storage.schedule import PlanConfig, Run, derive

log = logging.getLogger(__name__)

TICK_JOB = "tick"
# Long enough to recognise any redelivered update; Telegram retries for at most a day.
INBOX_RETENTION = timedelta(days=7)
# Runs older than this are neither run nor recorded: they belong to another season.
LOOKBACK = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When runs happen and how late they may still happen."""

    zone: ZoneInfo
    run_time: time = time(8, 0)
    grace: timedelta = timedelta(hours=6)
    horizon: timedelta = timedelta(days=14)  # how far ahead APScheduler holds jobs
    leader_check: float = 5.0  # seconds between tries to take the lead
    # Members who left the union longer ago than this are erased; None keeps them.
    left_member_retention: timedelta | None = timedelta(days=365)

    @property
    def plan(self) -> PlanConfig:
        return PlanConfig(zone=self.zone, run_time=self.run_time)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one pass over the due runs did."""

    ran: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    messages: int = 0


class Scheduler:
    """Run what the database says is due, exactly once, in the process that leads."""

    def __init__(
        self,
        sessions: SessionFactory,
        engine: AsyncEngine,
        clock: Clock,
        texts: Catalogue,
        config: ScheduleConfig,
        on_queued: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._texts = texts
        self.config = config
        self._on_queued = on_queued
        self.leadership = Leadership(engine)
        self._aps: AsyncIOScheduler | None = None
        self._lead_task: asyncio.Task[None] | None = None
        self._due_lock = asyncio.Lock()

    @property
    def leading(self) -> bool:
        return self._aps is not None

    def start(self) -> None:
        if self._lead_task is None:
            self._lead_task = asyncio.create_task(self._lead(), name="scheduler-leadership")

    async def stop(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead_task
            self._lead_task = None
        self.stop_jobs()
        await self.leadership.release()

    async def _lead(self) -> None:
        """Take the lead when it is free; start the jobs when we have it, stop them if lost."""
        while True:
            try:
                leading = await self.leadership.check()
            except Exception:
                log.exception("could not check the scheduler lock")
                leading = False
            if leading and self._aps is None:
                await self.start_jobs()
            elif not leading and self._aps is not None:
                self.stop_jobs()
            await asyncio.sleep(self.config.leader_check)

    async def start_jobs(self) -> None:
        self._aps = AsyncIOScheduler(timezone=self.config.zone)
        self._aps.add_job(
            self.tick,
            IntervalTrigger(minutes=1, timezone=self.config.zone),
            id=TICK_JOB,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )
        self._aps.start()
        # Whatever fell due while no process was leading runs now (within the grace window).
        await self.tick()

    def stop_jobs(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        self._aps = None

    async def tick(self) -> int:
        """Do whatever is due at the clock's current time; return how many messages it queued."""
        queued = 0
        try:
            queued += (await self.run_due()).messages
            queued += await expire_pacts(self._sessions, self._clock, self._texts)
            queued += await broadcasts.report_finished(self._sessions, self._clock, self._texts)
            async with self._sessions() as session, session.begin():
                await inbox.purge(session, self._clock.now() - INBOX_RETENTION)
            await self.erase_left_members()
            await self.sync_jobs()
        except Exception:
            log.exception("scheduled work failed")
        if queued:
            self._on_queued()
        return queued

    async def erase_left_members(self) -> int:
        """Erase the members who left longer ago than the retention period; return how many."""
        retention = self.config.left_member_retention
        if retention is None:
            return 0
        words = privacy.Placeholders(
            name=self._texts("privacy.erased_name"), text=self._texts("privacy.erased_text")
        )
        async with self._sessions() as session, session.begin():
            now = self._clock.now()
            due = await privacy.left_before(session, now - retention)
            for member in due:
                await privacy.erase(
                    session, member, now, placeholders=words, by=None, via="scheduler"
                )
        if due:
            log.info("erased %d members who left more than %s ago", len(due), retention)
        return len(due)

    async def run_due(self) -> Outcome:
        """Run every due run not yet recorded; record those too late as skipped."""
        async with self._due_lock:
            now = self._clock.now()
            async with self._sessions() as session:
                due = await derive(session, self.config.plan, now - LOOKBACK, now + _EPSILON)
                done = await schedule_runs.recorded(session, (run.key for run in due))
            ran: list[str] = []
            skipped: list[str] = []
            messages = 0
            for run in due:
                if run.key in done:
                    continue
                try:
                    result = await self._run_once(run, now)
                except Exception:
                    # Not recorded: the next tick tries again, until the grace window closes.
                    log.exception("scheduled run %s failed", run.key)
                    continue
                if result is None:
                    continue
                if result < 0:
                    skipped.append(run.key)
                else:
                    ran.append(run.key)
                    messages += result
            if skipped:
                log.info("skipped %d runs missed beyond the grace window", len(skipped))
            return Outcome(tuple(ran), tuple(skipped), messages)

    async def _run_once(self, run: Run, now: datetime) -> int | None:
        """Run (or skip) one run in one transaction; None if another process had it already."""
        late = now - run.at > self.config.grace or (run.expires is not None and now >= run.expires)
        status = RunStatus.SKIPPED if late else RunStatus.DONE
        context = runs.RunContext(texts=self._texts, zone=self.config.zone, now=now)
        async with self._sessions() as session, session.begin():
            record = await schedule_runs.claim(
                session, key=run.key, kind=run.kind.value, status=status, due_at=run.at, now=now
            )
            if record is None:
                return None
            if late:
                record.note = f"missed by {now - run.at}"
                log.info("skipped %s, due %s, missed by %s", run.key, run.at, now - run.at)
                await runs.skip(session, run, context)
                return -1
            record.messages = await runs.execute(session, run, context)
        log.info("ran %s: %d recipients", run.key, record.messages)
        return record.messages

    async def sync_jobs(self) -> None:
        """Hold one APScheduler job per run of the coming days, moved or removed as plans change."""
        aps = self._aps
        if aps is None:
            return
        now = self._clock.now()
        # The demo's clock runs ahead of the machine's; jobs are set in the machine's time.
        offset = now - datetime.now(UTC)
        async with self._sessions() as session:
            coming = await derive(session, self.config.plan, now, now + self.config.horizon)
        wanted = set()
        for run in coming:
            wanted.add(run.key)
            aps.add_job(
                self.tick,
                DateTrigger(run_date=run.at - offset, timezone=self.config.zone),
                id=run.key,
                name=run.title[:80],
                replace_existing=True,
                coalesce=True,
                misfire_grace_time=int(self.config.grace.total_seconds()),
            )
        for job in aps.get_jobs():
            if job.id != TICK_JOB and job.id not in wanted:
                job.remove()

    async def next_run(self, after: datetime, until: datetime) -> datetime | None:
        """Return when the first run after `after` and up to `until` falls, if any does."""
        async with self._sessions() as session:
            coming = await derive(session, self.config.plan, after + _EPSILON, until + _EPSILON)
        return coming[0].at if coming else None

    def job_next_run(self, job_id: str) -> datetime | None:
        """Return when APScheduler will next fire a job, in the machine's time."""
        job = self._aps.get_job(job_id) if self._aps is not None else None
        return job.next_run_time if job is not None else None

    def job_ids(self) -> list[str]:
        """Return the ids of the jobs APScheduler holds (for tests and the CLI)."""
        return [job.id for job in self._aps.get_jobs()] if self._aps is not None else []


_EPSILON = timedelta(microseconds=1)

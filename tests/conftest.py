"""Shared fixtures: a migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.channel import opt_in_to_timedelta_periods
from storage.base import Base
from storage.clock import ManualClock
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Role
from tests.builders import add_member, ninh_thuan_tree
from tests.telegram_harness import TelegramBot, running_bot

BACKENDS = ["sqlite", "postgresql"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Tests that start bot processes, kill them, fuzz or pace in real time.
HEAVY_MARKERS = ("slow", "crash", "fault", "fuzz", "timing")


def pytest_configure(config: pytest.Config) -> None:
    """Run every test as `thidua` runs: python-telegram-bot's time periods as timedelta."""
    opt_in_to_timedelta_periods()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the heavy tests one after another on one xdist worker, the rest beside them.

    `make test` runs two workers on two cores: two heavy tests at once would starve each
    other's bot processes of CPU, and their deadlines are set for one at a time.
    """
    for item in items:
        if any(item.get_closest_marker(name) for name in HEAVY_MARKERS):
            item.add_marker(pytest.mark.xdist_group("heavy"))


def _pg_admin_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_pg_database(url: str) -> str:
    """Create a private database for this test session and return its URL."""
    name = f"thidua_test_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(_pg_admin_dsn(url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(_pg_admin_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test copies it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A private PostgreSQL database migrated to head, or None without TEST_DATABASE_URL."""
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        yield None
        return
    try:
        url = asyncio.run(_create_pg_database(admin_url))
    except (OSError, asyncpg.PostgresError) as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable in CI: {error}")
        yield None
        return
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(_drop_pg_database(admin_url, url))


async def _empty_tables(url: str) -> None:
    """Empty every table of the shared PostgreSQL test database for the next test."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    connection = await asyncpg.connect(_pg_admin_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    postgres_url: str | None,
    tmp_path: Path,
) -> AsyncIterator[str]:
    """The URL of a fresh migrated database, once per backend."""
    if request.param == "sqlite":
        path = tmp_path / "thidua.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if postgres_url is None:
        if IN_CI:
            pytest.fail("TEST_DATABASE_URL must point at PostgreSQL in CI")
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    # Whoever used the database (this process or a child one), it is emptied afterwards.
    yield postgres_url
    await _empty_tables(postgres_url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture
def clock() -> ManualClock:
    """A clock standing at 01/03/2023 08:00 in Hanoi (01:00 UTC)."""
    return ManualClock(datetime(2023, 3, 1, 1, 0, tzinfo=UTC))


@pytest.fixture
async def org(sessions: SessionFactory) -> dict[str, int]:
    """A small province with an officer of CD-KCN (Telegram 9001) and a member (Telegram 1001)."""
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        await add_member(
            session, tree["CD-KCN"], "Trần Văn Minh", role=Role.OFFICER, telegram_id=9001
        )
        await add_member(session, tree["CDCS-MAYNT"], "Nguyễn Thị Lan", telegram_id=1001)
        return {code: unit.id for code, unit in tree.items()}


@pytest.fixture
async def bot(database_url: str, clock: ManualClock) -> AsyncIterator[TelegramBot]:
    """The real bot in webhook mode against a fake Bot API."""
    async with running_bot(database_url, clock) as bot:
        yield bot


@pytest.fixture(autouse=True)
async def _release_abandoned_sqlite_closes() -> AsyncIterator[None]:
    """Finish the graceful closes SQLAlchemy leaves behind for terminated aiosqlite connections.

    When a task is cancelled mid-statement (a bot stopping under a test), SQLAlchemy terminates
    the connection: it force-stops aiosqlite's worker and leaves a shielded graceful close
    running. With the worker gone, that close can wait forever, and the event loop's teardown
    (which waits for every task) with it. Such a leftover is given a moment, then released.
    """
    yield
    stuck: list[asyncio.Task[object]] = []
    for _ in range(30):
        stuck = [
            task
            for task in asyncio.all_tasks()
            if not task.done() and "_terminate_graceful_close" in repr(task.get_coro())
        ]
        if not stuck:
            return
        await asyncio.sleep(0.1)
    for task in stuck:
        waiter = getattr(task, "_fut_waiter", None)  # the future the close waits on
        if waiter is not None and not waiter.done():
            waiter.cancel()
        task.cancel()
    await asyncio.wait(stuck, timeout=5)

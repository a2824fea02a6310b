"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.base import Base
from storage.engine import create_engine
from storage.migrate import current_revision, upgrade
from tests.conftest import IN_CI, _create_pg_database, _drop_pg_database


async def test_head_matches_the_models(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


async def test_upgrading_twice_is_harmless(engine: AsyncEngine) -> None:
    before = await current_revision(engine)
    await upgrade(engine)
    assert await current_revision(engine) == before
    assert before is not None


async def test_processes_migrating_an_empty_database_together_all_succeed() -> None:
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        if IN_CI:
            pytest.fail("TEST_DATABASE_URL must point at PostgreSQL in CI")
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    url = await _create_pg_database(admin_url)
    engines = [create_engine(url) for _ in range(3)]
    try:
        # As when a deploy with a new migration restarts several bot processes at once.
        await asyncio.wait_for(asyncio.gather(*(upgrade(engine) for engine in engines)), 30)
        revisions = {await current_revision(engine) for engine in engines}
    finally:
        for engine in engines:
            await engine.dispose()
        await _drop_pg_database(admin_url, url)
    assert len(revisions) == 1
    assert None not in revisions

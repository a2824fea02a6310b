"""Time subtree questions on a 10,000-unit tree, on SQLite and PostgreSQL.

Run: `.venv/bin/python -m bench.subtree` (PostgreSQL from BENCH_POSTGRES_URL, default the
local server; it is skipped with a note when unreachable). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from storage import units
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.importers.units import import_units
from storage.migrate import upgrade
from storage.models import Member, Unit

UPPER, PER_UPPER = 50, 200  # 1 + 50 + 10,000 units
RUNS = 200


def write_tree(path: Path) -> int:
    """Write a province with 50 upper-level unions of 200 CĐCS each; return the unit count."""
    lines = ["code,name,parent_code,kind,sector", "ROOT,Liên đoàn Lao động tỉnh,,province,"]
    for u in range(UPPER):
        lines.append(f"U{u},Công đoàn cấp trên số {u},ROOT,upper,")
        for g in range(PER_UPPER):
            sector = "enterprise" if g % 2 else "administrative"
            lines.append(f"G{u}-{g},Công đoàn cơ sở Công ty số {u}-{g},U{u},grassroots,{sector}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


async def timed(label: str, action: Callable[[], Awaitable[object]]) -> tuple[str, float, float]:
    """Run `action` RUNS times; return its median and 99th percentile in milliseconds."""
    for _ in range(10):
        await action()
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return label, statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def measure(url: str, csv: Path) -> list[tuple[str, float, float]]:
    engine = create_engine(url)
    sessions: SessionFactory = create_session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions() as session, session.begin():
            await import_units(session, csv, datetime.now(UTC))
        if engine.dialect.name == "postgresql":
            async with engine.connect() as connection:
                await connection.execute(text("ANALYZE"))
        async with sessions() as session:
            root = await units.get_by_code(session, "ROOT")
            upper = await units.get_by_code(session, "U17")
            leaf = await units.get_by_code(session, "G17-123")
            if root is None or upper is None or leaf is None:
                raise RuntimeError("the generated tree lacks its sample units")

            async def count_root() -> object:
                return await units.subtree_size(session, root)

            async def list_upper() -> object:
                return await units.subtree(session, upper)

            async def members_under_upper() -> object:
                return await session.scalar(
                    select(func.count(Member.id))
                    .join(Unit, Unit.id == Member.unit_id)
                    .where(units.in_subtree(upper.path))
                )

            async def ancestors_of_leaf() -> object:
                return await units.ancestors(session, leaf)

            async def search_name() -> object:
                return await units.search(session, "cong ty so 17-12")

            return [
                await timed("count the whole tree (10,051 units)", count_root),
                await timed("list one upper union's subtree (201 units)", list_upper),
                await timed("count members under an upper union (join)", members_under_upper),
                await timed("ancestors of a CĐCS", ancestors_of_leaf),
                await timed("accent-insensitive name search", search_name),
            ]
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1/test"
        ),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "tree.csv"
        count = write_tree(csv)
        print(f"tree: {count} units; {RUNS} runs each; median / p99 in ms\n")
        print("| query | SQLite median | SQLite p99 | PostgreSQL median | PostgreSQL p99 |")
        print("|---|---|---|---|---|")
        sqlite = await measure(f"sqlite+aiosqlite:///{folder}/bench.db", csv)
        postgres = await _on_scratch_postgres(args.postgres, csv)
        for index, (label, median, p99) in enumerate(sqlite):
            pg = f"{postgres[index][1]:.2f} | {postgres[index][2]:.2f}" if postgres else "– | –"
            print(f"| {label} | {median:.2f} | {p99:.2f} | {pg} |")


async def _on_scratch_postgres(url: str, csv: Path) -> list[tuple[str, float, float]] | None:
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"thidua_bench_{uuid.uuid4().hex[:8]}"
    try:
        connection = await asyncpg.connect(admin)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"PostgreSQL skipped: {error}")
        return None
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        scratch = make_url(url).set(database=name).render_as_string(hide_password=False)
        return await measure(scratch, csv)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Time the initiative roll-up on a 10,000-unit tree with 1,000,000 initiatives, on PostgreSQL.

Run: `.venv/bin/python -m bench.rollup` (PostgreSQL from BENCH_POSTGRES_URL, default the local
server). It creates a scratch database, bulk-loads it with INSERT … SELECT generate_series,
runs VACUUM ANALYZE, times the queries /tiendo makes, and records the figures in the
"Initiative roll-up" section of docs/BENCHMARKS.md (`--no-write` only prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import sqlalchemy
from sqlalchemy import select
from sqlalchemy.engine import make_url

from storage import progress as progress_store
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Unit

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## Initiative roll-up"
BEGIN = "<!-- figures written by `python -m bench.rollup`; edit outside these markers -->"
END = "<!-- end of bench.rollup figures -->"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1/test"

# Province → 20 upper unions → 5 upper unions each (100) → 99 CĐCS each (9,900): 10,021 units.
LEVEL1, LEVEL2_EACH, GRASSROOTS_EACH = 20, 5, 99
LEVEL2 = LEVEL1 * LEVEL2_EACH
GRASSROOTS = LEVEL2 * GRASSROOTS_EACH
UNITS = 1 + LEVEL1 + LEVEL2 + GRASSROOTS
MEMBERS_EACH = 10  # per CĐCS
MEMBERS = GRASSROOTS * MEMBERS_EACH
INITIATIVES = 1_000_000
TARGET_MS = 300.0

# Units get ids in tree order: the root 1, level 1 from 2, level 2 and CĐCS after them.
L1_FIRST = 2
L2_FIRST = L1_FIRST + LEVEL1
G_FIRST = L2_FIRST + LEVEL2

LOAD = [
    """
    INSERT INTO units (id, code, name, name_folded, kind, sector, parent_id, path, depth,
                       created_at, updated_at)
    VALUES (1, 'ROOT', 'Liên đoàn Lao động tỉnh', 'lien doan lao dong tinh', 'province', NULL,
            NULL, '/1/', 0, now(), now())
    """,
    f"""
    INSERT INTO units (id, code, name, name_folded, kind, sector, parent_id, path, depth,
                       created_at, updated_at)
    SELECT {L1_FIRST} + i, 'U' || i, 'Công đoàn cấp trên số ' || i,
           'cong doan cap tren so ' || i, 'upper', NULL, 1,
           '/1/' || ({L1_FIRST} + i) || '/', 1, now(), now()
    FROM generate_series(0, {LEVEL1 - 1}) AS i
    """,
    f"""
    INSERT INTO units (id, code, name, name_folded, kind, sector, parent_id, path, depth,
                       created_at, updated_at)
    SELECT {L2_FIRST} + j, 'V' || j, 'Công đoàn ngành số ' || j,
           'cong doan nganh so ' || j, 'upper', NULL, {L1_FIRST} + j / {LEVEL2_EACH},
           '/1/' || ({L1_FIRST} + j / {LEVEL2_EACH}) || '/' || ({L2_FIRST} + j) || '/', 2,
           now(), now()
    FROM generate_series(0, {LEVEL2 - 1}) AS j
    """,
    f"""
    INSERT INTO units (id, code, name, name_folded, kind, sector, parent_id, path, depth,
                       created_at, updated_at)
    SELECT {G_FIRST} + k, 'G' || k, 'Công đoàn cơ sở Công ty số ' || k,
           'cong doan co so cong ty so ' || k, 'grassroots',
           CASE WHEN k % 2 = 0 THEN 'enterprise' ELSE 'administrative' END,
           {L2_FIRST} + k / {GRASSROOTS_EACH},
           '/1/' || ({L1_FIRST} + k / {GRASSROOTS_EACH} / {LEVEL2_EACH}) || '/'
               || ({L2_FIRST} + k / {GRASSROOTS_EACH}) || '/' || ({G_FIRST} + k) || '/',
           3, now(), now()
    FROM generate_series(0, {GRASSROOTS - 1}) AS k
    """,
    f"SELECT setval(pg_get_serial_sequence('units', 'id'), {UNITS})",
    """
    INSERT INTO campaigns (id, code, name, year, root_unit_id, starts_on, ends_on, description,
                           options, created_at, updated_at)
    VALUES (1, 'NT-2023', 'Phong trào thi đua yêu nước năm 2023', 2023, 1, '2023-02-01',
            '2023-12-31', '', '{}', now(), now())
    """,
    """
    INSERT INTO movements (id, campaign_id, code, kind, name, description, sectors, position,
                           active)
    VALUES (1, 1, 'LDG-LDST', 'movement', 'Lao động giỏi, lao động sáng tạo', '', '[]', 0, true)
    """,
    f"""
    INSERT INTO members (id, full_name, name_folded, unit_id, role, status, consent_at,
                         consent_version, created_at)
    SELECT m, 'Đoàn viên số ' || m, 'doan vien so ' || m,
           {G_FIRST} + (m - 1) / {MEMBERS_EACH}, 'member', 'active', now(), '1', now()
    FROM generate_series(1, {MEMBERS}) AS m
    """,
    f"SELECT setval(pg_get_serial_sequence('members', 'id'), {MEMBERS})",
    # Seven members in ten have registered a commitment.
    f"""
    INSERT INTO commitments (reference, campaign_id, movement_id, kind, author_id, unit_id,
                             content, progress_percent, status, late, created_at, updated_at)
    SELECT 'DK-2023-' || lpad(m::text, 6, '0'), 1, 1, 'individual', m,
           {G_FIRST} + (m - 1) / {MEMBERS_EACH},
           'Tôi cam kết hoàn thành xuất sắc nhiệm vụ được giao', 0, 'registered', false,
           now(), now()
    FROM generate_series(1, {MEMBERS}) AS m
    WHERE m % 10 < 7
    """,
    # Half accepted, 15% waiting for review, the rest drafts, sent back or rejected; spread
    # evenly over the members; the targets differ, so units stand at different percentages.
    f"""
    INSERT INTO initiatives (reference, campaign_id, author_id, unit_id, title, title_folded,
                             problem, solution, benefit, estimated_value, field, co_author_ids,
                             attachments, status, submitted_at, reviewed_at, created_at,
                             updated_at)
    SELECT CASE WHEN s <> 'draft' THEN 'SK-2023-' || lpad(i::text, 7, '0') END, 1, a,
           {G_FIRST} + (a - 1) / {MEMBERS_EACH},
           'Cải tiến quy trình đóng gói sản phẩm số ' || i,
           'cai tien quy trinh dong goi san pham so ' || i,
           'Hiện trạng: công đoạn đóng gói thủ công mất nhiều thời gian, dễ sai sót, '
               || 'công nhân phải làm thêm giờ vào cuối tháng.',
           'Giải pháp: thiết kế lại băng chuyền và bàn đóng gói, thêm cữ gá định vị '
               || 'để một người đóng được hai thùng cùng lúc.',
           'Lợi ích: năng suất tăng khoảng 20%, giảm giờ làm thêm, giảm hàng lỗi.',
           50000000, 'Kỹ thuật', '[]', '[]', s,
           CASE WHEN s <> 'draft' THEN now() END,
           CASE WHEN s IN ('accepted', 'rejected', 'changes_requested') THEN now() END,
           now(), now()
    FROM (
        SELECT i, 1 + (i::bigint * 7919) % {MEMBERS} AS a,
               CASE WHEN i % 20 < 10 THEN 'accepted'
                    WHEN i % 20 < 13 THEN 'submitted'
                    WHEN i % 20 < 15 THEN 'draft'
                    WHEN i % 20 < 16 THEN 'changes_requested'
                    ELSE 'rejected' END AS s
        FROM generate_series(1, {INITIATIVES}) AS i
    ) AS generated
    """,
    # Every unit has a target; children's targets add up to less than their parents' here
    # and there, as in real life.
    """
    INSERT INTO targets (unit_id, campaign_id, metric, value, updated_at)
    SELECT id, 1, 'initiatives',
           CASE depth WHEN 0 THEN 600000 WHEN 1 THEN 30000 WHEN 2 THEN 5500
                      ELSE 40 + id % 41 END,
           now()
    FROM units
    """,
]


async def load(url: str) -> float:
    """Migrate and bulk-load the scratch database; return the seconds it took."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    start = time.perf_counter()
    connection = await asyncpg.connect(_dsn(url))
    try:
        for statement in LOAD:
            await connection.execute(statement)
        # As autovacuum would have by then: statistics, and the visibility map that lets
        # index-only scans skip the table.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - start


Sample = tuple[str, float, float, float]


async def timed(label: str, runs: int, action: Callable[[], Awaitable[object]]) -> Sample:
    """Run `action` a few times to warm up, then `runs` times; return median, p95, max in ms."""
    for _ in range(3):
        await action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
    return label, statistics.median(samples), p95, samples[-1]


async def measure(url: str, runs: int) -> tuple[list[Sample], dict[str, object]]:
    """Time each view on the loaded database; return the samples and a correctness check."""
    engine = create_engine(url)
    sessions: SessionFactory = create_session_factory(engine)
    try:
        async with sessions() as session:
            by_code = {
                u.code: u
                for u in (
                    await session.scalars(
                        select(Unit).where(Unit.code.in_(["ROOT", "U7", "G4321"]))
                    )
                ).all()
            }
        root, upper, leaf = by_code["ROOT"], by_code["U7"], by_code["G4321"]

        def view(unit: Unit) -> Callable[[], Awaitable[object]]:
            async def run() -> object:
                async with sessions() as session:
                    return await progress_store.standings(session, unit, 1)

            return run

        async def whole_tree() -> object:
            async with sessions() as session:
                return await progress_store.progress(session, root, 1)

        samples = [
            await timed(f"officer of the province: {LEVEL1} units below", runs, view(root)),
            await timed(f"officer of an upper union: {LEVEL2_EACH} units below", runs, view(upper)),
            await timed("member of a CĐCS: their unit", runs, view(leaf)),
            await timed("every unit of the tree (scheduler digest)", max(5, runs // 4), whole_tree),
        ]
        async with sessions() as session:
            top, children = await progress_store.standings(session, root, 1)
        check = {
            "accepted": top.figures.initiatives_accepted,
            "waiting": top.figures.initiatives_waiting,
            "children_sum": sum(c.figures.initiatives_accepted for c in children),
            "members": top.figures.members,
        }
        return samples, check
    finally:
        await engine.dispose()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _server_version(url: str) -> str:
    connection = await asyncpg.connect(_dsn(url))
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def render(
    samples: list[Sample],
    check: dict[str, object],
    load_s: float,
    version: str,
    busy: tuple[float, float],
) -> str:
    """Format the figures as the Markdown section for docs/BENCHMARKS.md."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} with `.venv/bin/python -m bench.rollup`.",
        "",
        f"- Code: {_commit()}.",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; PostgreSQL {version} on the same machine "
        f"(default settings); SQLAlchemy {sqlalchemy.__version__}, asyncpg {asyncpg.__version__}.",
        f"- Data: {UNITS:,} units (province → {LEVEL1} upper unions → {LEVEL2} upper unions → "
        f"{GRASSROOTS:,} CĐCS), {MEMBERS:,} members, {MEMBERS * 7 // 10:,} commitments, "
        f"{INITIATIVES:,} initiatives of one campaign (50% accepted, 15% waiting for review, "
        "35% drafts, sent back or rejected; ≈ 400 bytes of text each), a target for every "
        f"unit; bulk-loaded with INSERT … SELECT generate_series in {load_s:.0f} s, then "
        "VACUUM ANALYZE.",
        "- Each view is `storage.progress.standings` in a new session, as /tiendo calls it: "
        "members, commitments, accepted and waiting initiatives of each unit below, each "
        "including its whole subtree, and the targets. The last row is "
        "`storage.progress.progress` over the whole tree (the scheduler's digests).",
        f"- Check: the province totals {check['accepted']:,} accepted and "
        f"{check['waiting']:,} waiting initiatives, {check['members']:,} members; its "
        f"{LEVEL1} units below add up to {check['children_sum']:,} accepted.",
        "",
        "| view | median ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {m:.1f} | {p95:.1f} | {top:.1f} |" for label, m, p95, top in samples]
    lines += [
        "",
        f"Machine load (1-minute load average, {os.cpu_count()} CPUs) before the timed runs "
        f"{busy[0]:.1f}, after them {busy[1]:.1f}: other work on the machine counts in these "
        "figures.",
    ]
    officer = samples[0][1]
    verdict = "met" if officer <= TARGET_MS else "**NOT met**"
    lines += [
        "",
        f"Target ≤ {TARGET_MS:.0f} ms for the province officer's view (median): {verdict} "
        f"({officer:.1f} ms).",
    ]
    return "\n".join(lines)


def _commit() -> str:
    """Name the commit measured, and whether the checkout had changes on top of it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def _replace_section(path: Path, figures: str) -> None:
    """Put the figures into this benchmark's section, keeping what people wrote around them."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    generated = f"{BEGIN}\n\n{figures.strip()}\n\n{END}"
    section = re.compile(rf"^{re.escape(SECTION)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    found = section.search(text)
    if found is None:
        text = f"{text.rstrip()}\n\n\n{SECTION}\n\n{generated}\n"
    else:
        old = found.group(0)
        if BEGIN in old and END in old:
            before, _, rest = old.partition(BEGIN)
            _, _, after = rest.partition(END)
            new = before + generated + after
        else:
            new = f"{SECTION}\n\n{generated}\n\n"
        text = text[: found.start()] + new + text[found.end() :]
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rollup", description=__doc__)
    parser.add_argument("--runs", type=int, default=40, help="timed runs of each view")
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    name = f"thidua_bench_rollup_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_dsn(url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        scratch = make_url(url).set(database=name).render_as_string(hide_password=False)
        print(f"loading {UNITS:,} units and {INITIATIVES:,} initiatives into {name}…")
        load_s = await load(scratch)
        before = os.getloadavg()[0]
        samples, check = await measure(scratch, args.runs)
        busy = (before, os.getloadavg()[0])
        figures = render(samples, check, load_s, await _server_version(scratch), busy)
        print(figures)
        if not args.no_write:
            _replace_section(DOC_PATH, figures)
            print(f"\nrecorded in {DOC_PATH.relative_to(ROOT)}")
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())

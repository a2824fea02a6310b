"""`thidua backup` and `thidua restore`, as an operator runs them: a round trip loses nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.cli_runner import thidua

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "data" / "sample-units.csv"


def unit_codes(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT code FROM units ORDER BY code")]


async def test_a_backup_restores_the_database_as_it_was(tmp_path: Path) -> None:
    database = tmp_path / "data" / "thidua.db"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "LOG_LEVEL": "WARNING"}
    assert (await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path))[0] == 0
    before = unit_codes(database)
    assert len(before) > 10

    status, out, err = await thidua("backup", "--out", "saved/b.db", env=env, cwd=tmp_path)
    assert status == 0, err
    assert out.startswith("Đã sao lưu vào saved/b.db (")
    assert not list((tmp_path / "saved").glob("*.partial"))
    # Members' personal data: nobody but the operator may read the copy.
    assert (tmp_path / "saved" / "b.db").stat().st_mode & 0o777 == 0o600

    with sqlite3.connect(database) as connection:  # something goes wrong afterwards
        connection.execute("DELETE FROM units WHERE parent_id IS NOT NULL AND code LIKE 'CDCS-%'")
    assert unit_codes(database) != before

    status, _, err = await thidua("restore", "saved/b.db", env=env, cwd=tmp_path)
    assert status == 2
    assert "chạy lại lệnh với --yes" in err
    status, out, err = await thidua("restore", "saved/b.db", "--yes", env=env, cwd=tmp_path)
    assert status == 0, err
    assert unit_codes(database) == before


async def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    database = tmp_path / "thidua.db"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "LOG_LEVEL": "WARNING"}
    assert (await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path))[0] == 0
    before = unit_codes(database)
    (tmp_path / "notes.db").write_text("không phải cơ sở dữ liệu")
    status, _, err = await thidua("restore", "notes.db", "--yes", env=env, cwd=tmp_path)
    assert status == 1
    assert err.strip() == (
        "Tệp notes.db không phải bản sao lưu hợp lệ của thidua; cơ sở dữ liệu không thay đổi."
    )
    assert unit_codes(database) == before


async def test_backup_on_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test"}
    status, _, err = await thidua("backup", "--out", "x.db", env=env, cwd=tmp_path)
    assert status == 2
    assert "pg_dump" in err

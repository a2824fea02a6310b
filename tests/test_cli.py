"""The `thidua` command as an operator runs it."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli_runner import thidua
from tests.fakes.telegram_api import BOT_USERNAME, FakeTelegramAPI
from tests.telegram_harness import TOKEN

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample-units.csv"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url}


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeTelegramAPI]:
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TIMEZONE", "Mars/Olympus"),
        ("HTTP_PORT", "eighty"),
        ("DATABASE_URL", "mysql://nope"),
        ("TELEGRAM_WEBHOOK_SECRET", "has spaces"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "sqlite+aiosqlite://data/thidua.db"),  # two slashes: a host
        ("DATABASE_URL", "postgresql+asyncpg://thidua@127.0.0.1:abc/thidua"),
        ("TELEGRAM_API_BASE_URL", "http://"),
        ("TELEGRAM_BOT_TOKEN", "copied with the wrong half"),
    ],
)
async def test_a_bad_setting_is_one_line_naming_it_and_status_2(
    variable: str, value: str, tmp_path: Path
) -> None:
    status, _out, err = await thidua("db", "upgrade", env={variable: value}, cwd=tmp_path)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert variable in lines[0]
    assert "Traceback" not in err


async def test_webhook_url_without_secret_is_refused(tmp_path: Path) -> None:
    env = {"TELEGRAM_WEBHOOK_URL": "https://example.org/telegram/webhook"}
    status, _, err = await thidua("db", "upgrade", env=env, cwd=tmp_path)
    assert status == 2
    assert "TELEGRAM_WEBHOOK_SECRET" in err


async def test_db_upgrade_says_what_it_did_in_one_line(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fresh.db"}
    status, out, err = await thidua("db", "upgrade", env=env, cwd=tmp_path)
    assert status == 0, err
    assert out.startswith("Đã cập nhật cơ sở dữ liệu từ phiên bản — lên ")
    assert "alembic" not in err  # Alembic's English INFO lines stay out of a one-off command
    status, out, _err = await thidua("db", "upgrade", env=env, cwd=tmp_path)
    assert "đã ở phiên bản mới nhất" in out


async def test_a_webhook_without_a_token_is_refused(tmp_path: Path) -> None:
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://thidua.example/telegram/webhook",
        "TELEGRAM_WEBHOOK_SECRET": "webhook-secret",
    }
    status, _, err = await thidua("db", "upgrade", env=env, cwd=tmp_path)
    assert status == 2
    assert "TELEGRAM_BOT_TOKEN is required when TELEGRAM_WEBHOOK_URL is set" in err


async def test_an_http_webhook_on_telegrams_cloud_is_refused(tmp_path: Path) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "123456789:AAE-looks_like_a_real_token",
        "TELEGRAM_WEBHOOK_URL": "http://thidua.example/telegram/webhook",
        "TELEGRAM_WEBHOOK_SECRET": "webhook-secret",
    }
    status, _, err = await thidua("db", "upgrade", env=env, cwd=tmp_path)
    assert status == 2
    assert "TELEGRAM_WEBHOOK_URL must be an https:// URL" in err
    assert "AAE-looks_like_a_real_token" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://thidua:mat-khau-bi-mat@127.0.0.1:9/thidua",  # nothing listens
        "sqlite+aiosqlite:///{tmp}/not-a-database.db",
        "sqlite+aiosqlite:///{tmp}/newer.db",
    ],
)
async def test_a_database_that_cannot_be_used_is_one_line_naming_it(
    url: str, tmp_path: Path
) -> None:
    (tmp_path / "not-a-database.db").write_text("garbage, not SQLite\n")
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as made_by_a_later_thidua:
        made_by_a_later_thidua.execute("CREATE TABLE alembic_version (version_num TEXT)")
        made_by_a_later_thidua.execute("INSERT INTO alembic_version VALUES ('9999')")
    url = url.format(tmp=tmp_path)
    for command in (("db", "upgrade"), ("units", "import", str(SAMPLE))):
        status, out, err = await thidua(*command, env={"DATABASE_URL": url}, cwd=tmp_path)
        assert status == 1, err
        lines = [line for line in err.splitlines() if " INFO " not in line]
        assert len(lines) == 1, err
        assert "DATABASE_URL=" in lines[0]
        assert "mat-khau-bi-mat" not in err + out
        assert "Traceback" not in err
    if "newer" in url:
        assert "phiên bản thidua mới hơn" in err


async def test_an_import_in_the_wrong_encoding_says_how_to_save_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    ansi = tmp_path / "don-vi.csv"
    # What Excel's plain "CSV" save gives: the office PC's code page, not UTF-8.
    ansi.write_bytes(
        "code,name,parent_code,kind,sector\nA,Công ty Lê,,province,\n".encode("cp1252")
    )
    status, _out, err = await thidua("units", "import", str(ansi), env=env, cwd=tmp_path)
    assert status == 1
    assert "UTF-8" in err
    assert "not_utf8" not in err


async def test_a_file_wrong_on_every_line_lists_the_first_problems(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    rows = "".join(f"X{n},Đơn vị {n},KHONGCO,upper,\n" for n in range(400))
    bad.write_text("code,name,parent_code,kind,sector\n" + rows, encoding="utf-8")
    status, _out, err = await thidua("units", "import", str(bad), env=env, cwd=tmp_path)
    assert status == 1
    assert "Dòng 51" in err
    assert "Dòng 52:" not in err
    assert "… và 350 lỗi khác" in err


async def test_run_with_a_rejected_token_says_so_without_showing_it(
    env: dict[str, str], tmp_path: Path, fake_api: FakeTelegramAPI
) -> None:
    wrong = "123456789:REVOKED-token_that_the_server_refuses"
    run_env = {**env, "TELEGRAM_BOT_TOKEN": wrong, "TELEGRAM_API_BASE_URL": fake_api.base_url}
    status, out, err = await thidua("run", env={**run_env, "HTTP_PORT": "0"}, cwd=tmp_path)
    assert status == 2
    assert "TELEGRAM_BOT_TOKEN: Telegram từ chối mã bot này" in err
    assert "REVOKED" not in err + out
    assert "Traceback" not in err


async def test_run_on_a_port_in_use_names_the_port_not_the_database(
    env: dict[str, str], tmp_path: Path, fake_api: FakeTelegramAPI
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_env = {
            **env,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": fake_api.base_url,
            "HTTP_PORT": str(port),
        }
        status, _out, err = await thidua("run", env=run_env, cwd=tmp_path)
    assert status == 2
    assert f"HTTP_HOST/HTTP_PORT: không mở được cổng web 127.0.0.1:{port}" in err
    assert "cơ sở dữ liệu" not in err
    assert "Traceback" not in err


async def test_import_then_invite_prints_the_code_last(env: dict[str, str], tmp_path: Path) -> None:
    status, out, _ = await thidua("units", "import", str(SAMPLE), env=env, cwd=tmp_path)
    assert status == 0
    assert "17 mới" in out
    status, out, _ = await thidua("units", "import", str(SAMPLE), env=env, cwd=tmp_path)
    assert "0 mới" in out
    assert "17 không đổi" in out

    status, out, err = await thidua(
        "invite", "cdcs-maynt", "--uses", "30", "--days", "10", env=env, cwd=tmp_path
    )
    assert status == 0, err
    lines = out.strip().splitlines()
    code = lines[-1]
    assert len(code) == 8
    assert code.isalnum()
    assert "30 lượt" in out
    assert f"/start {code}" in out  # no token: how to use the code without a link


async def test_invite_with_a_token_prints_the_deep_link(
    env: dict[str, str], tmp_path: Path, fake_api: FakeTelegramAPI
) -> None:
    await thidua("units", "import", str(SAMPLE), env=env, cwd=tmp_path)
    bot_env = {**env, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake_api.base_url}
    status, out, err = await thidua(
        "invite", "CD-KCN", "--role", "officer", env=bot_env, cwd=tmp_path
    )
    assert status == 0, err
    code = out.strip().splitlines()[-1]
    assert f"https://t.me/{BOT_USERNAME}?start={code}" in out
    assert "1 lượt" in out  # an officer's code makes one officer
    assert TOKEN not in out + err


async def test_invite_refuses_numbers_out_of_range_and_members_above_a_cdcs(
    env: dict[str, str], tmp_path: Path
) -> None:
    await thidua("units", "import", str(SAMPLE), env=env, cwd=tmp_path)
    for option, value in (("--days", "99999999"), ("--uses", "99999999999"), ("--uses", "0")):
        status, out, err = await thidua(
            "invite", "CDCS-MAYNT", option, value, env=env, cwd=tmp_path
        )
        assert status == 2, (option, value, err)
        assert "Số lượt dùng phải từ 1 đến 100000, số ngày từ 1 đến 3650." in err
        assert "Traceback" not in err
        assert out == ""

    status, out, err = await thidua("invite", "CD-KCN", env=env, cwd=tmp_path)
    assert status == 2
    assert "chỉ tạo được cho công đoàn cơ sở" in err
    assert "--role officer" in err
    assert out == ""


async def test_import_of_a_bad_file_lists_every_problem_and_changes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "code,name,parent_code,kind,sector\n"
        "A,Đơn vị A,,province,\n"
        "B,Đơn vị B,KHONGCO,upper,\n"
        "A,Đơn vị A lặp,,province,\n",
        encoding="utf-8",
    )
    status, _out, err = await thidua("units", "import", str(bad), env=env, cwd=tmp_path)
    assert status == 1
    assert "Dòng 3" in err
    assert "KHONGCO" in err
    assert "Dòng 4" in err
    assert "trùng" in err
    status, _out, err = await thidua("invite", "A", env=env, cwd=tmp_path)
    assert status == 1
    assert "Không có đơn vị mã A" in err


async def test_unknown_unit_and_missing_file(env: dict[str, str], tmp_path: Path) -> None:
    status, _, err = await thidua("units", "import", "nope.csv", env=env, cwd=tmp_path)
    assert status == 1
    assert "Không tìm thấy tệp" in err

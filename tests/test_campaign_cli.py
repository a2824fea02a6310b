"""`thidua campaign import` and `thidua campaign new`, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.campaign_file import load_campaign_file, parse_campaign_text
from tests.cli_runner import thidua

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "data" / "sample-units.csv"
PLAN = ROOT / "campaigns" / "ninh-thuan-2023.yaml"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    """The child's settings, on this test's database."""
    return {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}


async def test_import_prints_a_summary_and_a_second_import_changes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    status, _, err = await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path)
    assert status == 0, err

    status, out, err = await thidua("campaign", "import", str(PLAN), env=env, cwd=tmp_path)

    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == (
        "Đã nhập kế hoạch NT-2023: Phong trào thi đua yêu nước năm 2023 (01/02/2023 – 31/12/2023)."
    )
    assert "Phong trào, chương trình, cuộc vận động, hội thi: 8 mới" in out
    assert "Đợt thi đua: 2 mới" in out
    assert "Mốc, ngày kỷ niệm: 13 mới" in out
    assert "Hạn chót: 4 mới" in out

    status, out, _ = await thidua("campaign", "import", str(PLAN), env=env, cwd=tmp_path)
    assert status == 0
    assert "Mốc, ngày kỷ niệm: 0 mới, 0 cập nhật, 13 không đổi, 0 ngừng áp dụng" in out


async def test_a_bad_file_exits_1_listing_every_problem_by_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        PLAN.read_text("utf-8")
        .replace("  end: 2023-12-31", "  end: 31/02/2023", 1)
        .replace("audience: grassroots_officers", "audience: cdcs", 1),
        encoding="utf-8",
    )

    status, out, err = await thidua("campaign", "import", str(bad), env=env, cwd=tmp_path)

    assert status == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("Không nhập tệp")
    assert "2 lỗi" in lines[0]
    assert lines[1].startswith('Dòng 15 (campaign.end): ngày "31/02/2023"')
    assert "deadlines[1].audience" in lines[2]
    assert "cdcs" in lines[2]
    assert "Traceback" not in err
    # Nothing was imported: the good file creates the campaign afterwards.
    status, out, _ = await thidua("campaign", "import", str(PLAN), env=env, cwd=tmp_path)
    assert "Kế hoạch: 1 mới" in out


async def test_an_unknown_root_unit_is_reported(env: dict[str, str], tmp_path: Path) -> None:
    status, _, err = await thidua("campaign", "import", str(PLAN), env=env, cwd=tmp_path)

    assert status == 1
    assert "campaign.root_unit" in err
    assert 'không có đơn vị mã "LDLD-NT"' in err


async def test_new_writes_next_years_file_that_imports(env: dict[str, str], tmp_path: Path) -> None:
    out_file = tmp_path / "ninh-thuan-2027.yaml"

    status, out, err = await thidua(
        "campaign",
        "new",
        "--from",
        str(PLAN),
        "--year",
        "2027",
        "--out",
        str(out_file),
        env=env,
        cwd=tmp_path,
    )

    assert status == 0, err
    assert f"Đã tạo tệp {out_file}" in out
    assert "DAI-HOI-XIII-CDVN" in out  # the congress left out, for the officer to add back
    written = out_file.read_text("utf-8")
    assert written.startswith("# Kế hoạch thi đua năm 2027")
    new = load_campaign_file(out_file)
    birthday = next(m for m in new.milestones if m.code == "SINH-NHAT-BAC")
    assert new.milestone_title(birthday).startswith("Kỷ niệm 137 năm")

    await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path)
    status, out, err = await thidua("campaign", "import", str(out_file), env=env, cwd=tmp_path)
    assert status == 0, err
    assert "NT-2027" in out
    assert "Mốc, ngày kỷ niệm: 9 mới" in out

    # An existing file is never overwritten.
    status, _, err = await thidua(
        "campaign",
        "new",
        "--from",
        str(PLAN),
        "--year",
        "2028",
        "--out",
        str(out_file),
        env=env,
        cwd=tmp_path,
    )
    assert status == 1
    assert "đã có" in err
    assert load_campaign_file(out_file).campaign.year == 2027


async def test_new_without_out_prints_the_file(env: dict[str, str], tmp_path: Path) -> None:
    status, out, err = await thidua(
        "campaign", "new", "--from", str(PLAN), "--year", "2024", env=env, cwd=tmp_path
    )

    assert status == 0, err
    assert parse_campaign_text(out).campaign.code == "NT-2024"
    assert "Cần xem lại" in err


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--from", "nope.yaml", "--year", "2024"], 1, "Không tìm thấy tệp"),
        (["--from", str(PLAN), "--year", "1890"], 2, "Năm phải từ 2000 đến 2100"),
    ],
)
async def test_new_refuses_a_missing_source_or_a_wrong_year(
    args: list[str], status: int, message: str, env: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = await thidua("campaign", "new", *args, env=env, cwd=tmp_path)

    assert code == status
    assert message in err
    assert out == ""

"""`thidua targets import` as an operator runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from storage.engine import SessionFactory
from storage.models import Target, Unit
from tests.cli_runner import thidua

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "data" / "sample-units.csv"
PLAN = ROOT / "campaigns" / "ninh-thuan-2023.yaml"


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The sample units and the 2023 plan, imported as an operator would."""
    env = {"DATABASE_URL": database_url}
    for args in (("units", "import", str(UNITS)), ("campaign", "import", str(PLAN))):
        status, _, err = await thidua(*args, env=env, cwd=tmp_path)
        assert status == 0, err
    return env


async def stored(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Unit.code, Target.value).join(Target, Target.unit_id == Unit.id)
        )
        return {code: int(value) for code, value in rows.all()}


async def test_import_sets_targets_and_warns_of_parents_left_short(
    env: dict[str, str], sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "chi-tieu.csv"
    path.write_text(
        "unit_code,campaign,metric,value\n"
        "LDLD-NT,NT-2023,initiatives,1.000\n"
        "CD-KCN,NT-2023,sáng kiến,300\n"
        "CD-PRTC,NT-2023,initiatives,400\n"
        "CD-GD,NT-2023,initiatives,300\n"
        "CDCS-MAYNT,NT-2023,initiatives,120\n",
        encoding="utf-8",
    )

    status, out, err = await thidua("targets", "import", str(path), env=env, cwd=tmp_path)

    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "Đã nhập chỉ tiêu: 5 mới, 0 thay đổi, 0 không đổi."
    # The province's 1,000 is handed down in full; CD-KCN's 300 is not, nor CD-PRTC's or CD-GD's.
    warned = sorted(line.split(" ")[1] for line in lines[1:])
    assert warned == ["CD-GD", "CD-KCN", "CD-PRTC"]
    assert any(
        "CD-KCN (Công đoàn các Khu công nghiệp tỉnh Ninh Thuận, NT-2023): tổng chỉ tiêu các đơn vị "
        "trực thuộc là 120, thấp hơn chỉ tiêu 300 của đơn vị (thiếu 180; 3 đơn vị chưa có chỉ tiêu)"
        in line
        for line in lines
    )
    assert await stored(sessions) == {
        "LDLD-NT": 1000,
        "CD-KCN": 300,
        "CD-PRTC": 400,
        "CD-GD": 300,
        "CDCS-MAYNT": 120,
    }

    status, out, _ = await thidua("targets", "import", str(path), env=env, cwd=tmp_path)
    assert status == 0
    assert out.splitlines()[0] == "Đã nhập chỉ tiêu: 0 mới, 0 thay đổi, 5 không đổi."


async def test_a_bad_file_lists_every_problem_by_line_and_changes_nothing(
    env: dict[str, str], sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "chi-tieu.csv"
    path.write_text(
        "unit_code,campaign,metric,value\n"
        "LDLD-NT,NT-2023,initiatives,1000\n"
        "KHONGCO,NT-2023,initiatives,5\n"
        'CD-KCN,NT-2023,initiatives,"2,5"\n'
        "CD-GD,NT-2099,đoàn viên,10\n",
        encoding="utf-8",
    )

    status, out, err = await thidua("targets", "import", str(path), env=env, cwd=tmp_path)

    assert status == 1
    assert out == ""
    # Log lines (time stamped) come first on standard error.
    lines = err[err.index("Không nhập tệp") :].strip().splitlines()
    assert lines[0].endswith("có 4 lỗi, cơ sở dữ liệu không thay đổi.")
    assert lines[1] == 'Dòng 3: không có đơn vị mã "KHONGCO" trên hệ thống.'
    assert lines[2].startswith('Dòng 4: chỉ tiêu "2,5" không phải là số nguyên không âm')
    assert {lines[3].split(":")[0], lines[4].split(":")[0]} == {"Dòng 5"}
    assert "NT-2099" in err
    assert "đoàn viên" in err
    assert "Traceback" not in err
    assert await stored(sessions) == {}


async def test_an_unreadable_file_is_explained(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    path = tmp_path / "chi-tieu.ods"
    path.write_text("x", encoding="utf-8")

    status, _, err = await thidua("targets", "import", str(path), env=env, cwd=tmp_path)

    assert status == 1
    assert "Dòng 1: không đọc được tệp: chỉ nhận tệp .csv hoặc .xlsx." in err

    status, _, err = await thidua("targets", "import", "khong-co.csv", env=env, cwd=tmp_path)
    assert status == 1
    assert "Không tìm thấy tệp" in err

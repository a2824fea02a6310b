"""The audit log: officers' and admins' actions are recorded as they act, /nhatky shows them to
admins of the unit, and `thidua audit export` writes them for Excel."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import select

from storage import audit
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import AuditEntry, Broadcast, Member, Role, Unit
from tests.builders import add_member
from tests.cli_runner import thidua
from tests.telegram_harness import running_bot
from tests.test_permission_matrix import (
    ADMINS_ONLY,
    MAYNT,
    PEOPLE,
    World,
    build_world,
    choose,
    numbered,
)
from tests.zalo_harness import running_zalo_bot

PROVINCE = "Liên đoàn Lao động tỉnh Ninh Thuận"
GD = "Công đoàn ngành Giáo dục tỉnh Ninh Thuận"
HEADER = [
    "Thời gian",
    "Người thực hiện",
    "Kênh",
    "Thao tác",
    "Mã đơn vị",
    "Tên đơn vị",
    "Đối tượng",
    "Chi tiết",
]


async def all_entries(sessions: SessionFactory) -> list[AuditEntry]:
    async with sessions() as session:
        found = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return list(found)


# --- what is recorded, driving the bot --------------------------------------------------------


async def test_officers_actions_are_recorded_with_who_what_when_and_which_unit(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    world = await build_world(sessions)
    maynt = world.units["CDCS-MAYNT"]
    hoa_id, minh_id = world.members["unit_officer"], world.members["officer_above"]
    async with running_bot(database_url, clock) as bot:
        hoa = bot.user(PEOPLE["unit_officer"].telegram_id, "Hoa")
        minh = bot.user(PEOPLE["officer_above"].telegram_id, "Minh")

        # Hoa accepts Tư's initiative at her unit's level, with no value and no note.
        await hoa.send("/duyet")
        await choose(hoa, "accept")
        await choose(hoa, "none")
        await choose(hoa, "unit")
        accepted = await choose(hoa, "none")
        assert any(m.text.startswith("✅") and "SK-2023-000001" in m.text for m in accepted)

        # Minh turns down the join request and makes an officer's invitation for MAYNT.
        await minh.press_data(f"a:join:{world.applicant}:n")
        await minh.send("/moi")
        await choose(minh, f"u{maynt}")
        created = await choose(minh, "officer")
        code = created[-1].text.split("\n")[0].removeprefix("🎟 Mã mời: ")

        # Minh schedules an announcement to his whole branch, then calls it off.
        await minh.send("/thongbao")
        await choose(minh, "new")
        await minh.send("Hội nghị người lao động năm 2023 dời sang thứ Hai.")
        await choose(minh, "audience")
        await choose(minh, "everyone")
        await choose(minh, "later")
        scheduled = await minh.send("05/03/2023 08:00")
        assert "05/03/2023 08:00" in scheduled[-1].text
        async with sessions() as session:
            number = await session.scalar(select(Broadcast.id))
        await minh.send("/thongbao")
        await choose(minh, "list")
        await choose(minh, f"b{number}")
        await choose(minh, f"stop:{number}")

        # Hoa turns down the story about Tư, saying why.
        await hoa.press_data(f"a:story:{world.story}")
        await choose(hoa, "reject")
        rejected = await hoa.send("Câu chuyện cần thêm chi tiết và xác nhận của tổ trưởng.")
        assert any("Lê Văn Tư" in m.text for m in rejected)
        await bot.runtime.deliverer.drain()

        entries = [e for e in await all_entries(sessions) if e.via != "cli"]
    got = [(e.action, e.actor_id, e.via, e.unit_id, e.subject) for e in entries]
    assert got == [
        ("initiative.accept", hoa_id, "telegram", maynt, f"initiative:{world.initiative}"),
        ("join.reject", minh_id, "telegram", maynt, f"member:{world.applicant}"),
        ("invite.create", minh_id, "telegram", maynt, got[2][4]),
        ("broadcast.schedule", minh_id, "telegram", world.units["CD-KCN"], f"broadcast:{number}"),
        ("broadcast.cancel", minh_id, "telegram", world.units["CD-KCN"], f"broadcast:{number}"),
        ("story.reject", hoa_id, "telegram", maynt, f"story:{world.story}"),
    ]
    assert all(e.at == clock.now() for e in entries)
    assert entries[0].detail == {"reference": "SK-2023-000001", "level": "unit"}
    assert entries[2].subject is not None
    assert entries[2].subject.startswith("invitation:")
    assert entries[2].detail == {"role": "officer", "uses": 1, "days": 14}
    # The invitation's code lets people in: it is never written to the log.
    assert code
    assert all(code not in json.dumps(e.detail) for e in entries)
    assert entries[3].detail["audience"] == "everyone"
    assert entries[4].detail == {"scheduled": True, "cancelled": 0}


async def test_zalo_actions_are_recorded_as_coming_from_zalo(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    world = await build_world(sessions)
    async with running_zalo_bot(database_url, clock) as zbot:
        minh = zbot.zalo_user(PEOPLE["officer_above"].zalo_id, "Minh")
        asked = await minh.send("/moi")
        labels = numbered(asked[-1].text)
        await minh.send(str(labels.index(f"{MAYNT} (CDCS-MAYNT)") + 1))
        roles = numbered(minh.last.text)
        created = await minh.send(str(roles.index("Đoàn viên") + 1))
        assert created[-1].text.startswith("🎟 Mã mời:")
        entries = [e for e in await all_entries(sessions) if e.via != "cli"]
    assert [(e.action, e.actor_id, e.via, e.unit_id) for e in entries] == [
        ("invite.create", world.members["officer_above"], "zalo", world.units["CDCS-MAYNT"])
    ]
    assert entries[0].detail == {"role": "member", "uses": 50, "days": 14}


# --- /nhatky -----------------------------------------------------------------------------------


async def seed_log(sessions: SessionFactory, world: World, start: datetime) -> None:
    """Twelve entries a minute apart across the province, and one in the education branch."""
    async with sessions() as session, session.begin():
        hoa = await session.get(Member, world.members["unit_officer"])
        minh = await session.get(Member, world.members["officer_above"])
        for minute in range(12):
            audit.record(
                session,
                now=start + timedelta(minutes=minute),
                actor=hoa if minute % 2 else minh,
                via="telegram",
                action="broadcast.send",
                unit_id=world.units["CDCS-MAYNT"],
                subject=f"broadcast:{minute + 1}",
            )
        # Names the other helpers or later versions write: shown by label, or as they are.
        audit.record(
            session,
            now=start + timedelta(minutes=20),
            actor=None,
            via="scheduler",
            action="member.erase",
            unit_id=world.units["CDCS-MAYNT"],
            subject="member:77",
        )
        audit.record(
            session,
            now=start + timedelta(minutes=21),
            actor=minh,
            via="zalo",
            action="unit.frobnicate",
            unit_id=world.units["CDCS-MAYNT"],
        )
        audit.record(
            session,
            now=start + timedelta(minutes=22),
            actor=None,
            via="cli",
            action="invite.create",
            unit_id=world.units["CD-GD"],
            subject="invitation:5",
        )


async def test_nhatky_pages_the_admins_subtree_newest_first_in_local_time(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    world = await build_world(sessions)
    start = datetime(2023, 3, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi
    await seed_log(sessions, world, start)
    async with sessions() as session, session.begin():
        gd = await session.get(Unit, world.units["CD-GD"])
        assert gd is not None
        await add_member(session, gd, "Lý Thị Giáo", role=Role.ADMIN, telegram_id=7002)
    async with running_bot(database_url, clock) as bot:
        admin = bot.user(PEOPLE["admin"].telegram_id, "Quản")
        first = (await admin.send("/nhatky"))[-1]
        lines = first.text.split("\n")
        assert lines[0] == f"🧾 Nhật ký thao tác – {PROVINCE} (mục 1–10, mới nhất trước):"
        assert lines[1:5] == [
            f"• 01/03/2023 08:22 · Dòng lệnh (quản trị hệ thống) · Tạo mã mời · {GD}"
            " (invitation:5)",
            f"• 01/03/2023 08:21 · Trần Văn Minh · unit.frobnicate · {MAYNT}",
            f"• 01/03/2023 08:20 · Hệ thống · Xóa dữ liệu cá nhân của đoàn viên · {MAYNT}"
            " (member:77)",
            f"• 01/03/2023 08:11 · Phạm Thị Hoa · Gửi thông báo · {MAYNT} (broadcast:12)",
        ]
        assert first.labels == ["Xem thêm"]
        second = (await admin.press("Xem thêm"))[-1]
        lines = second.text.split("\n")
        assert lines[0] == f"🧾 Nhật ký thao tác – {PROVINCE} (mục 11–16, mới nhất trước):"
        # The tree's import concerns no one unit: the province's admins see it, as the whole.
        assert lines[-1] == (
            "• 01/03/2023 08:00 · Dòng lệnh (quản trị hệ thống) · Nhập danh sách đơn vị"
            " · toàn hệ thống"
        )
        assert lines[-2] == (
            f"• 01/03/2023 08:00 · Trần Văn Minh · Gửi thông báo · {MAYNT} (broadcast:1)"
        )
        assert second.labels == []

        # The education union's admin sees their own branch only.
        giao = bot.user(7002, "Giáo")
        theirs = (await giao.send("/nhatky"))[-1].text.split("\n")
        assert theirs[0] == f"🧾 Nhật ký thao tác – {GD} (mục 1–1, mới nhất trước):"
        assert len(theirs) == 2
        assert "Tạo mã mời" in theirs[1]

        # Officers are refused, and their help does not offer it; the admins' does.
        minh = bot.user(PEOPLE["officer_above"].telegram_id, "Minh")
        assert (await minh.send("/nhatky"))[-1].text == ADMINS_ONLY
        assert all("/nhatky" not in m.text for m in await minh.send("/help"))
        assert any("/nhatky" in m.text for m in await admin.send("/help"))


# --- thidua audit export ------------------------------------------------------------------------


async def test_cli_export_round_trips_csv_and_xlsx_with_vietnamese_intact(
    database_url: str, sessions: SessionFactory, tmp_path: Path
) -> None:
    world = await build_world(sessions)
    await seed_log(sessions, world, datetime(2023, 3, 1, 1, 0, tzinfo=UTC))
    env = {"DATABASE_URL": database_url}
    status, _out, err = await thidua("invite", "CDCS-MAYNT", env=env, cwd=tmp_path)
    assert status == 0, err

    status, out, err = await thidua(
        "audit", "export", "--out", str(tmp_path / "nhat-ky.csv"), env=env, cwd=tmp_path
    )
    assert status == 0, err
    # 12 + 3 seeded, the seed's own import, and the command-line invitation.
    assert out.strip() == f"Đã ghi 17 mục nhật ký vào {tmp_path / 'nhat-ky.csv'}."
    raw = (tmp_path / "nhat-ky.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    newest = rows[1]
    assert newest[1:7] == [
        "Dòng lệnh (quản trị hệ thống)",
        "cli",
        "Tạo mã mời",
        "CDCS-MAYNT",
        MAYNT,
        newest[6],
    ]
    assert newest[6].startswith("invitation:")
    assert json.loads(newest[7]) == {"role": "member", "uses": 50, "days": 14}
    assert [
        "01/03/2023 08:11:00",
        "Phạm Thị Hoa",
        "telegram",
        "Gửi thông báo",
        "CDCS-MAYNT",
        MAYNT,
        "broadcast:12",
        "",
    ] in rows
    assert any(r[3] == "unit.frobnicate" for r in rows)

    # Only 01/03/2023 (local): the seeded day with the tree's import, not today's invitation.
    status, out, err = await thidua(
        "audit",
        "export",
        "--out",
        str(tmp_path / "nhat-ky.xlsx"),
        "--from",
        "01/03/2023",
        "--to",
        "01/03/2023",
        env=env,
        cwd=tmp_path,
    )
    assert status == 0, err
    sheet = load_workbook(tmp_path / "nhat-ky.xlsx", read_only=True).worksheets[0]
    # A read-only sheet leaves out the empty cells at a row's end.
    values = [[*row, *[None] * (8 - len(row))] for row in sheet.iter_rows(values_only=True)]
    assert values[0] == HEADER
    assert len(values) == 1 + 16
    assert values[1][:6] == [
        "01/03/2023 08:22:00",
        "Dòng lệnh (quản trị hệ thống)",
        "cli",
        "Tạo mã mời",
        "CD-GD",
        GD,
    ]
    assert [
        "01/03/2023 08:00:00",
        "Trần Văn Minh",
        "telegram",
        "Gửi thông báo",
        "CDCS-MAYNT",
        MAYNT,
        "broadcast:1",
        None,
    ] in values

    status, _out, err = await thidua(
        "audit",
        "export",
        "--out",
        str(tmp_path / "x.csv"),
        "--from",
        "2023-03-01",
        env=env,
        cwd=tmp_path,
    )
    assert status == 2
    assert "dd/mm/yyyy" in err
    status, _out, err = await thidua(
        "audit", "export", "--out", str(tmp_path / "x.txt"), env=env, cwd=tmp_path
    )
    assert status == 2
    assert ".csv hoặc .xlsx" in err

    # Each export is itself on record, with no more than what was written.
    async with sessions() as session:
        exports = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.export"))
        )
    assert [(e.actor_id, e.via, e.detail.get("rows")) for e in exports] == [
        (None, "cli", 17),
        (None, "cli", 16),
    ]

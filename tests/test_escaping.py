"""What members write is shown as written: markup, math and formulas in names change nothing.

A name travels through joining, the officer's approval prompt, /toi, a broadcast's preview and
delivery, the review queue, the progress chart and the spreadsheet report. The bot sends plain
text (no parse_mode, no entities), so Telegram and Zalo show the characters literally.
"""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import pytest
from PIL import Image
from sqlalchemy import select

from storage import targets
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Initiative, InitiativeStatus, Member, Unit
from tests.builders import T0, add_campaign, add_unit
from tests.factories import document_update
from tests.telegram_harness import TelegramBot, TelegramUser, running_bot
from tests.zalo_harness import ZaloBot, running_zalo_bot

NAMES = [
    "<b>Lan</b>",
    "*Lan*",
    "_Lan_",
    "[Lan](http://x)",
    "$Lan^x$",
    '=HYPERLINK("http://x")',
]
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMATTING = {"parse_mode", "entities", "caption_entities"}


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> int:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        campaign = await add_campaign(session, root)
        return campaign.id


async def _named_unit(
    sessions: SessionFactory, org: dict[str, int], campaign_id: int, name: str
) -> None:
    """A CĐCS under CD-KCN named like the member, with a target, so that it is charted."""
    async with sessions() as session, session.begin():
        kcn = await session.get(Unit, org["CD-KCN"])
        assert kcn is not None
        unit = await add_unit(session, "CDCS-X", f"CĐCS {name}", parent=kcn)
        # Another whose "$...$" is no valid math at all: read as math, it could not be drawn.
        other = await add_unit(session, "CDCS-Y", f"Tổ {name} $\\nope$", parent=kcn)
        for unit_id in (unit.id, other.id, org["CDCS-MAYNT"], org["CD-KCN"]):
            await targets.put(
                session,
                unit_id=unit_id,
                campaign_id=campaign_id,
                metric=targets.INITIATIVES,
                value=3,
                now=T0,
            )


async def _submitted_initiative(sessions: SessionFactory, campaign_id: int, name: str) -> None:
    """An initiative titled like its author's name, waiting in the review queue."""
    async with sessions() as session, session.begin():
        author = await session.scalar(select(Member).where(Member.full_name == name))
        assert author is not None
        session.add(
            Initiative(
                campaign_id=campaign_id,
                author_id=author.id,
                unit_id=author.unit_id,
                title=name,
                title_folded=name.lower(),
                status=InitiativeStatus.SUBMITTED,
                submitted_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )


def _assert_plain(calls: list[tuple[str, dict[str, Any]]]) -> None:
    """No call asked the messenger to read formatting in a text."""
    for method, params in calls:
        assert not FORMATTING & params.keys(), (method, params)


def _texts(user: TelegramUser) -> str:
    return "\n".join(m.text for m in user.inbox)


@pytest.mark.parametrize("name", NAMES)
async def test_a_name_with_markup_arrives_literally_on_telegram(
    database_url: str,
    clock: ManualClock,
    org: dict[str, int],
    campaign: int,
    sessions: SessionFactory,
    name: str,
) -> None:
    await _named_unit(sessions, org, campaign, name)
    async with running_bot(database_url, clock) as bot:
        minh = bot.user(9001, "Minh")
        newcomer = bot.user(1020, name)

        # Joining: the name typed, echoed back, and shown to the officer who approves.
        await newcomer.send("/start")
        await newcomer.send("cong ty may")
        await newcomer.press("May Ninh Thuận")
        await newcomer.send(name)
        requested = await newcomer.press("Tôi đồng ý")
        assert "Đã gửi yêu cầu" in requested[-1].text
        prompt = (await minh.wait_for(1))[-1]
        assert name in prompt.text
        before = len(newcomer.inbox)
        await minh.press("Duyệt", prompt)
        await newcomer.wait_for(before + 1)

        profile = await newcomer.send("/toi")
        assert f"👤 {name}\n" in profile[0].text

        # A broadcast quoting the name: the preview and what the member receives.
        notice = f"Chúc mừng {name} đã tham gia!"
        await minh.send("/thongbao")
        await minh.press("Soạn thông báo mới")
        preview = await minh.send(notice)
        assert notice in [m.text for m in preview]
        await minh.press("Chọn người nhận")
        await minh.press("Tất cả đoàn viên")
        before = len(newcomer.inbox)
        await minh.press("Gửi ngay")
        delivered = await newcomer.wait_for(before + 1)
        assert delivered[-1].text == notice

        # The review queue shows the initiative's title and its author as written.
        await _submitted_initiative(sessions, campaign, name)
        queue = await minh.send("/duyet")
        shown = "\n".join([m.text for m in queue] + [label for m in queue for label in m.labels])
        assert name in shown

        # The progress chart draws the unit's name without reading it as math.
        progress = await minh.send("/tiendo")
        assert [m.method for m in progress] == ["sendMessage", "sendPhoto", "sendPhoto"]
        assert f"CĐCS {name}" in progress[0].text
        assert f"Tổ {name} $\\nope$" in progress[0].text
        for chart in progress[1:]:
            assert chart.content is not None
            assert chart.content.startswith(PNG_SIGNATURE)
            with Image.open(io.BytesIO(chart.content)) as image:
                assert image.format == "PNG"

        # The spreadsheet keeps the name as text, never as a formula.
        await minh.send("/baocao")
        report = await minh.press("Cả phong trào")
        [document] = [m for m in report if m.method == "sendDocument"]
        assert document.content is not None
        workbook = openpyxl.load_workbook(io.BytesIO(document.content))
        cells = [
            cell
            for sheet in workbook.worksheets
            for row in sheet.iter_rows()
            for cell in row
            if isinstance(cell.value, str) and name in cell.value
        ]
        assert cells, "the name is in no cell"
        for cell in cells:
            assert cell.data_type == "s", (cell.coordinate, cell.value)
        assert any(cell.value == name for cell in cells)

        assert "⚠️ Đã xảy ra lỗi" not in _texts(minh) + _texts(newcomer)
        _assert_plain(bot.api.calls)


@pytest.mark.parametrize("name", NAMES)
async def test_a_name_with_markup_arrives_literally_on_zalo(
    database_url: str,
    clock: ManualClock,
    org: dict[str, int],
    campaign: int,
    sessions: SessionFactory,
    name: str,
) -> None:
    async with running_zalo_bot(database_url, clock) as zbot:
        await _zalo_join_and_broadcast(zbot, name)


async def _zalo_join_and_broadcast(zbot: ZaloBot, name: str) -> None:
    person = zbot.zalo_user("7a1b2c3d4e5f", name)
    await person.send("/start")
    await person.send("cong ty may")
    await person.send("1")
    await person.send(name)
    sent = await person.send("Tôi đồng ý")
    assert f"Đã gửi yêu cầu tham gia {MAYNT}" in sent[-1].text

    minh = zbot.telegram.user(9001, "Minh")
    prompt = (await minh.wait_for(1))[-1]
    assert name in prompt.text
    before = len(person.inbox)
    await minh.press("Duyệt", prompt)
    await person.wait_for(before + 1)

    profile = await person.send("/toi")
    assert f"👤 {name}\n" in profile[0].text

    notice = f"Chúc mừng {name} đã tham gia!"
    await minh.send("/thongbao")
    await minh.press("Soạn thông báo mới")
    await minh.send(notice)
    await minh.press("Chọn người nhận")
    await minh.press("Tất cả đoàn viên")
    before = len(person.inbox)
    await minh.press("Gửi ngay")
    delivered = await person.wait_for(before + 1)
    assert delivered[-1].text == notice

    _assert_plain(zbot.zalo.calls)
    _assert_plain(zbot.telegram_api.calls)


# --- input hygiene ------------------------------------------------------------------------


async def test_an_over_long_search_is_refused_naming_the_limit(
    bot: TelegramBot, org: dict[str, int]
) -> None:
    newcomer = bot.user(1030, "Bình")
    await newcomer.send("/start")

    refused = await newcomer.send("công ty " * 20)

    assert refused[-1].text == (
        "Nội dung dài tối đa 100 ký tự (bạn gửi 159 ký tự). Vui lòng rút gọn rồi gửi lại."
    )
    found = await newcomer.send("cong ty may")  # still searching: a shorter query works
    assert any("May Ninh Thuận" in label for label in found[-1].labels)


async def test_a_broadcast_attachment_too_big_or_of_a_wrong_type_is_refused(
    bot: TelegramBot, campaign: int
) -> None:
    minh = bot.user(9001, "Minh")
    await minh.send("/thongbao")
    await minh.press("Soạn thông báo mới")
    await minh.send("Lịch họp công đoàn tháng 3.")
    await minh.press("Thêm ảnh hoặc tệp")
    pdf = "application/pdf"

    big = await minh.send_update(
        document_update(minh.tg, "doc-big", "lich.pdf", pdf, size=30 * 1024 * 1024)
    )
    assert big[0].text == (
        "Tệp lich.pdf nặng 30.0 MB, vượt giới hạn 20 MB; tệp này không được nhận. "
        "Vui lòng gửi tệp nhỏ hơn."
    )
    program = await minh.send_update(
        document_update(minh.tg, "doc-exe", "setup.exe", "application/x-msdownload")
    )
    assert program[0].text.startswith("Tệp setup.exe không thuộc loại được nhận")
    taken = await minh.send_update(document_update(minh.tg, "doc-ok", "lich.pdf", pdf))
    assert "Xem trước" in taken[0].text
    assert [m.file_id for m in taken if m.method == "sendDocument"] == ["doc-ok"]

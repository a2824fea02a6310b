"""Initiatives on Telegram: writing, drafts, the similar-title hint, review and its notices."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from storage.engine import SessionFactory
from storage.models import ChannelAccount, Initiative, InitiativeStatus, Role, Unit
from storage.text import fold
from tests.builders import add_campaign, add_member
from tests.factories import document_update, photo_update
from tests.telegram_harness import TelegramBot, TelegramUser

MINH, LAN, TU, HOA, CUC, THU = 9001, 1001, 1002, 9002, 1003, 9003
TITLE = "Cải tiến máy cắt vải tự động"
PROBLEM = "Máy cắt cũ phải căn vải bằng tay, mỗi ca mất 40 phút."
SOLUTION = "Lắp thêm cảm biến quang và bộ căn lề tự động."
BENEFIT = "Tiết kiệm 40 phút mỗi ca, giảm vải hỏng 3%."
FIELD = "Cải tiến kỹ thuật, công nghệ sản xuất"
FIELDS = [FIELD, "Tiết kiệm trong sản xuất và công tác", "Lĩnh vực khác"]


@pytest.fixture
async def people(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """Besides Minh (officer, CD-KCN) and Lan (CDCS-MAYNT): Tư, a colleague of Lan's; Hoa,
    officer of CDCS-MAYNT; Cúc (CDCS-CVA) and Thu, officer of CD-GD, in the other branch."""
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, maynt, cva, gd = (units[c] for c in ("LDLD-NT", "CDCS-MAYNT", "CDCS-CVA", "CD-GD"))
        assert None not in (root, maynt, cva, gd)
        assert root is not None
        assert maynt is not None
        assert cva is not None
        assert gd is not None
        campaign = await add_campaign(session, root)
        campaign.options = {**campaign.options, "initiative_fields": FIELDS}
        await add_member(session, maynt, "Lê Văn Tư", telegram_id=TU)
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        await add_member(session, cva, "Võ Thị Cúc", telegram_id=CUC)
        await add_member(session, gd, "Trần Thị Thu", role=Role.OFFICER, telegram_id=THU)
        return {"campaign": campaign.id, **org}


async def write_until_summary(lan: TelegramUser) -> str:
    """Write the whole initiative as Lan, attachments included; return the summary shown."""
    await lan.send("/sangkien")
    await lan.send(TITLE)
    await lan.send(PROBLEM)
    await lan.send(SOLUTION)
    asked = await lan.send(BENEFIT)
    assert asked[-1].text.startswith("Giá trị làm lợi ước tính (đồng)")
    asked = await lan.send("50tr")
    assert asked[-1].text == "Sáng kiến thuộc lĩnh vực nào?"
    assert asked[-1].labels == FIELDS
    asked = await lan.press(FIELD)
    assert asked[-1].text.startswith("Đồng tác giả (chưa có)")
    found = await lan.send("tu")
    assert found[-1].labels == [
        "Lê Văn Tư – Công đoàn cơ sở Công ty TNHH May Ninh Thuận",
        "✅ Xong",
    ]
    added = await lan.press("Lê Văn Tư")
    assert added[0].text == "Đã thêm Lê Văn Tư."
    asked = await lan.press("Xong")
    assert asked[-1].text.startswith(
        "📎 Gửi ảnh hoặc tệp minh chứng (tối đa 5 tệp, mỗi tệp tối đa 20 MB"
    )
    got = await lan.send_update(photo_update(lan.tg, "photo-may-cat"))
    assert got[-1].text == "Đã nhận ảnh (1/5). Gửi thêm hoặc bấm Xong."
    pdf = "application/pdf"
    got = await lan.send_update(document_update(lan.tg, "doc-ban-ve", "ban-ve.pdf", pdf))
    assert got[-1].text == "Đã nhận ban-ve.pdf (2/5). Gửi thêm hoặc bấm Xong."
    refused = await lan.send_update(
        document_update(lan.tg, "doc-big", "video.pdf", pdf, size=30 * 1024 * 1024)
    )
    assert (
        refused[-1].text
        == "Tệp video.pdf nặng 30.0 MB, vượt giới hạn 20 MB; tệp này không được thêm."
    )
    refused = await lan.send_update(
        document_update(lan.tg, "doc-exe", "setup.exe", "application/x-msdownload")
    )
    assert refused[-1].text.startswith("Tệp setup.exe không thuộc loại được nhận")
    summary = await lan.press("Xong")
    return summary[-1].text


async def stored(sessions: SessionFactory) -> list[Initiative]:
    async with sessions() as session:
        return list((await session.scalars(select(Initiative).order_by(Initiative.id))).all())


async def test_a_member_submits_an_initiative_with_attachments_and_gets_a_receipt(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(LAN, "Lan")
    summary = await write_until_summary(lan)
    assert summary == (
        "📝 Xem lại sáng kiến:\n"
        f"Tên: {TITLE}\nThực trạng: {PROBLEM}\nGiải pháp: {SOLUTION}\nHiệu quả: {BENEFIT}\n"
        "Giá trị làm lợi ước tính: 50.000.000 đồng\n"
        f"Lĩnh vực: {FIELD}\nĐồng tác giả: Lê Văn Tư\nTệp đính kèm: ảnh, ban-ve.pdf"
    )
    receipt = await lan.press("Gửi sáng kiến")
    assert receipt[-1].text.startswith(f"✅ Đã gửi sáng kiến SK-2023-000001: {TITLE}.")

    (initiative,) = await stored(sessions)
    assert initiative.status == InitiativeStatus.SUBMITTED
    assert initiative.estimated_value == 50_000_000
    assert [a["file_ref"] for a in initiative.attachments] == ["photo-may-cat", "doc-ban-ve"]
    assert initiative.attachments[1]["name"] == "ban-ve.pdf"
    assert initiative.attachments[1]["mime_type"] == "application/pdf"
    # Hoa, the officer of Lan's CĐCS, is told there is something to review.
    hoa = bot.user(HOA, "Hoa")
    told = await hoa.wait_for(1)
    assert told[0].text == (
        f"💡 Sáng kiến mới chờ duyệt: SK-2023-000001 – {TITLE} "
        "(Nguyễn Thị Lan, Công đoàn cơ sở Công ty TNHH May Ninh Thuận). Gõ /duyet để xem."
    )
    mine = await lan.send("/cuatoi")
    assert f"• SK-2023-000001 – {TITLE}: chờ duyệt" in mine[-1].text


async def test_the_review_notice_goes_up_when_the_cdcs_officer_cannot_be_reached(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    async with sessions() as session, session.begin():
        # Hoa, the officer of Lan's CĐCS, blocked the bot: Minh, one level up, is told instead.
        await session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.external_id == str(HOA))
            .values(reachable=False)
        )
    lan = bot.user(LAN, "Lan")
    await write_until_summary(lan)
    await lan.press("Gửi sáng kiến")

    told = await bot.user(MINH, "Minh").wait_for(1)
    assert told[0].text.startswith(f"💡 Sáng kiến mới chờ duyệt: SK-2023-000001 – {TITLE}")
    assert bot.api.messages_to(HOA) == []


async def test_a_member_who_leaves_halfway_finds_the_draft_waiting(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(LAN, "Lan")
    await lan.send("/sangkien")
    await lan.send(TITLE)
    await lan.send(PROBLEM)
    await lan.send("/lich")  # she wanders off to another command
    await lan.send("/huy")

    back = await lan.send("/sangkien")
    assert back[-1].text == f"📝 Bạn có bản nháp sáng kiến “{TITLE}” chưa gửi."
    assert back[-1].labels == ["▶️ Làm tiếp bản nháp", "🆕 Bỏ nháp, viết sáng kiến mới"]
    asked = await lan.press("Làm tiếp")
    assert asked[-1].text.startswith("Giải pháp: bạn đã làm gì")  # title and problem were kept

    too_short = await lan.send("Lắp")
    assert too_short[-1].text == "Phần này cần 10–2000 ký tự (bạn gửi 3 ký tự). Vui lòng gửi lại."
    (draft,) = await stored(sessions)
    assert draft.status == InitiativeStatus.DRAFT
    assert (draft.title, draft.problem) == (TITLE, PROBLEM)


async def test_a_bad_amount_is_explained_and_nothing_is_lost(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(LAN, "Lan")
    for text in ("/sangkien", TITLE, PROBLEM, SOLUTION, BENEFIT):
        await lan.send(text)
    answer = await lan.send("khoảng năm chục triệu")
    assert answer[-1].text.startswith("Chưa đọc được số tiền “khoảng năm chục triệu”.")
    assert answer[-1].labels == ["Bỏ qua"]
    asked = await lan.send("1,5 tỷ")
    assert asked[-1].text == "Sáng kiến thuộc lĩnh vực nào?"
    (draft,) = await stored(sessions)
    assert draft.estimated_value == 1_500_000_000
    assert draft.benefit == BENEFIT


async def add_submitted(
    sessions: SessionFactory, people: dict[str, int], title: str, unit_code: str
) -> None:
    """Store an initiative of Tư's as already submitted."""
    async with sessions() as session, session.begin():
        from storage.models import Member

        tu = await session.scalar(select(Member).where(Member.full_name == "Lê Văn Tư"))
        assert tu is not None
        session.add(
            Initiative(
                reference="SK-2023-000099",
                campaign_id=people["campaign"],
                author_id=tu.id,
                unit_id=people[unit_code],
                title=title,
                title_folded=fold(title),
                problem=PROBLEM,
                solution=SOLUTION,
                benefit=BENEFIT,
                status=InitiativeStatus.SUBMITTED,
                submitted_at=tu.created_at,
                created_at=tu.created_at,
                updated_at=tu.created_at,
            )
        )


async def test_a_similar_title_in_the_branch_is_pointed_out_before_sending(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    await add_submitted(sessions, people, "Cải tiến máy cắt vải tự động hóa", "CDCS-MAYNT")
    lan = bot.user(LAN, "Lan")
    await lan.send("/sangkien")
    # No accents, and a typo: still recognised.
    for text in ("cai tien may cat vai tu dogn", PROBLEM, SOLUTION, BENEFIT):
        await lan.send(text)
    await lan.press("Bỏ qua")
    await lan.press(FIELD)
    await lan.press("Xong")
    await lan.press("Xong")
    hint = await lan.press("Gửi sáng kiến")
    assert hint[-1].text == (
        "🔎 Đã có sáng kiến có tên gần giống trong đơn vị:\n"
        "• SK-2023-000099 – Cải tiến máy cắt vải tự động hóa (chờ duyệt)"
    )
    assert hint[-1].labels == ["📤 Vẫn gửi", "✋ Chưa gửi"]
    kept = await lan.press("Chưa gửi")
    assert kept[-1].text.startswith("Chưa gửi. Bản nháp vẫn được lưu")
    assert (await stored(sessions))[-1].status == InitiativeStatus.DRAFT

    await lan.send("/sangkien")
    await lan.press("Làm tiếp")
    await lan.press("Gửi sáng kiến")
    sent = await lan.press("Vẫn gửi")
    assert sent[-1].text.startswith("✅ Đã gửi sáng kiến SK-2023-000001")


async def test_no_hint_for_a_look_alike_in_another_branch(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    await add_submitted(sessions, people, TITLE, "CDCS-CVA")
    lan = bot.user(LAN, "Lan")
    await write_until_summary(lan)
    sent = await lan.press("Gửi sáng kiến")
    assert sent[-1].text.startswith("✅ Đã gửi sáng kiến SK-2023-000001")


async def submit_one(lan: TelegramUser) -> None:
    for text in ("/sangkien", TITLE, PROBLEM, SOLUTION, BENEFIT, "50 triệu"):
        await lan.send(text)
    await lan.press(FIELD)
    await lan.press("Xong")
    await lan.send_update(photo_update(lan.tg, "photo-may-cat"))
    await lan.press("Xong")
    await lan.press("Gửi sáng kiến")


async def test_review_reject_needs_a_reason_and_the_author_is_told(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan, minh = bot.user(LAN, "Lan"), bot.user(MINH, "Minh")
    await submit_one(lan)
    shown = await minh.send("/duyet")
    assert shown[0].method == "sendMessage"
    assert shown[0].text == "📎 Tệp đính kèm (1):"
    assert shown[1].method == "sendPhoto"
    assert shown[1].file_id == "photo-may-cat"
    card = shown[-1]
    assert card.text.startswith(
        f"💡 SK-2023-000001 (1/1 chờ duyệt)\n{TITLE}\nTác giả: Nguyễn Thị Lan"
    )
    assert "Giá trị làm lợi ước tính: 50.000.000 đồng" in card.text
    assert card.labels == ["✅ Công nhận", "❌ Không công nhận", "✏️ Yêu cầu chỉnh sửa", "⏭ Để sau"]

    await minh.press("Không công nhận")
    refused = await minh.send("ok")
    assert refused[-1].text == (
        "Lý do cần 5–1000 ký tự (bạn gửi 2 ký tự). Không thể không công nhận mà không nêu lý do."
    )
    assert (await stored(sessions))[0].status == InitiativeStatus.SUBMITTED
    before = len(lan.inbox)
    done = await minh.send("Đã có sáng kiến tương tự được công nhận năm 2022.")
    assert done[0].text == "❌ Đã ghi không công nhận sáng kiến SK-2023-000001."
    kcn = "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
    assert done[-1].text == f"Không có sáng kiến nào chờ duyệt trong {kcn}. 👍"

    told = [m.text for m in await lan.wait_for(before + 1)][before]
    assert told == (
        f"Sáng kiến SK-2023-000001 “{TITLE}” chưa được công nhận.\n"
        "Lý do: Đã có sáng kiến tương tự được công nhận năm 2022."
    )
    mine = await lan.send("/cuatoi")
    assert "không được công nhận" in mine[-1].text
    assert "Ghi chú của cán bộ: Đã có sáng kiến tương tự" in mine[-1].text


async def test_changes_requested_then_resubmitted_then_accepted(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan, minh = bot.user(LAN, "Lan"), bot.user(MINH, "Minh")
    await submit_one(lan)
    await minh.send("/duyet")
    await minh.press("Yêu cầu chỉnh sửa")
    before = len(lan.inbox)  # counted before the notice can be pushed
    await minh.send("Bổ sung số liệu vải hỏng trước và sau khi áp dụng.")
    told = (await lan.wait_for(before + 1))[before].text
    assert told == (
        f"✏️ Sáng kiến SK-2023-000001 “{TITLE}” cần chỉnh sửa.\n"
        "Góp ý: Bổ sung số liệu vải hỏng trước và sau khi áp dụng.\nGõ /sangkien để sửa và gửi lại."
    )

    offer = await lan.send("/sangkien")
    assert offer[-1].labels == ["✏️ Sửa và gửi lại SK-2023-000001", "🆕 Viết sáng kiến mới"]
    await lan.press("Sửa và gửi lại")
    await lan.press("Sửa hiệu quả")
    summary = await lan.send("Vải hỏng giảm từ 5% xuống 2%, tiết kiệm 40 phút mỗi ca.")
    assert "Hiệu quả: Vải hỏng giảm từ 5% xuống 2%" in summary[-1].text
    assert "🗑 Bỏ bản nháp" not in summary[-1].labels  # it is not a draft any more
    again = await lan.press("Gửi sáng kiến")
    assert again[-1].text.startswith("✅ Đã gửi lại sáng kiến SK-2023-000001")

    await minh.send("/duyet")
    asked = await minh.press("Công nhận")
    assert asked[-1].labels == ["Giữ giá trị ước tính (50.000.000 đồng)", "Không ghi giá trị"]
    asked = await minh.send("40 triệu")
    assert asked[-1].labels == ["Cấp đơn vị", "Cấp cao hơn (đề nghị công nhận)"]
    await minh.press("Cấp đơn vị")
    before = len(lan.inbox)
    done = await minh.press("Không ghi chú")
    assert done[0].text == "✅ Đã công nhận sáng kiến SK-2023-000001 (cấp đơn vị)."

    told = (await lan.wait_for(before + 1))[before].text
    assert told == (
        f"🎉 Sáng kiến SK-2023-000001 “{TITLE}” của bạn đã được công nhận (cấp đơn vị).\n"
        "Giá trị làm lợi được công nhận: 40.000.000 đồng."
    )
    (initiative,) = await stored(sessions)
    assert initiative.status == InitiativeStatus.ACCEPTED
    assert initiative.recognised_value == 40_000_000
    assert initiative.recognised_level == "unit"


async def test_an_officer_of_another_branch_cannot_review(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan, thu = bot.user(LAN, "Lan"), bot.user(THU, "Thu")
    await submit_one(lan)
    empty = await thu.send("/duyet")
    assert empty[-1].text == (
        "Không có sáng kiến nào chờ duyệt trong Công đoàn ngành Giáo dục tỉnh Ninh Thuận. 👍"
    )
    # Forged presses carry nothing that can name Lan's initiative.
    for data in ("accept", "c:0:accept", "c:forged:reject"):
        await thu.press_data(data)
    assert (await stored(sessions))[0].status == InitiativeStatus.SUBMITTED
    member = bot.user(CUC, "Cúc")
    refused = await member.send("/review")
    assert refused[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."

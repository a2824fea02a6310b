"""Members' data rights (Nghị định 13/2023/NĐ-CP): /dulieu, /xoadulieu, /roidoan and retention."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.settings import load_settings
from storage import audit, targets
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    AuditEntry,
    ChannelAccount,
    Commendation,
    Commitment,
    CommitmentKind,
    InboundUpdate,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Movement,
    OutboxMessage,
    Unit,
)
from tests.builders import T0, add_campaign, add_member
from tests.telegram_harness import TelegramBot
from tests.zalo_harness import ZaloBot, running_zalo_bot

MINH, LAN = 9001, 1001
LAN_NAME = "Nguyễn Thị Lan"
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
ERASED = "Đoàn viên đã xóa dữ liệu"
ACCEPTED_TITLE = "Cữ gá định vị bàn cắt vải"
WAITING_TITLE = "Băng tải mini cho tổ hoàn thiện"
PROMISE = "Tôi cam kết may 500 sản phẩm đạt chuẩn mỗi ngày"
ZALO_LAN = "b1c2d3e4f5a6b7c8d9e0"


@dataclasses.dataclass(frozen=True)
class Seeded:
    campaign_id: int
    lan_id: int
    tu_id: int


async def _seed(sessions: SessionFactory, org: dict[str, int], *, commitments: int = 1) -> Seeded:
    """Lan (Telegram 1001) with commitments, two initiatives and a commendation; Tư beside her."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        maynt = await session.get(Unit, org["CDCS-MAYNT"])
        assert root is not None
        assert maynt is not None
        campaign = await add_campaign(session, root)
        await targets.put(
            session,
            unit_id=maynt.id,
            campaign_id=campaign.id,
            metric=targets.INITIATIVES,
            value=4,
            now=T0,
        )
        lan = await session.scalar(select(Member).where(Member.full_name == LAN_NAME))
        minh = await session.scalar(select(Member).where(Member.full_name == "Trần Văn Minh"))
        assert lan is not None
        assert minh is not None
        tu = await add_member(session, maynt, "Lê Văn Tư")
        movement = await session.scalar(
            select(Movement.id).where(Movement.campaign_id == campaign.id).limit(1)
        )
        assert movement is not None
        for number in range(commitments):
            session.add(
                Commitment(
                    reference=f"DK-2023-{number + 1:06d}",
                    campaign_id=campaign.id,
                    movement_id=movement,
                    kind=CommitmentKind.INDIVIDUAL,
                    author_id=lan.id,
                    unit_id=lan.unit_id,
                    content=f"{PROMISE} (mục {number + 1}), " + "giữ vệ sinh nơi làm việc " * 4,
                    progress_percent=60,
                    progress_note="Đã đạt 300 sản phẩm mỗi ngày",
                    created_at=T0,
                    updated_at=T0,
                )
            )
        for reference, title, status, author in (
            ("SK-2023-000001", ACCEPTED_TITLE, InitiativeStatus.ACCEPTED, lan),
            ("SK-2023-000002", WAITING_TITLE, InitiativeStatus.SUBMITTED, lan),
            ("SK-2023-000003", "Sắp xếp lại kho phụ liệu", InitiativeStatus.ACCEPTED, tu),
        ):
            session.add(
                Initiative(
                    reference=reference,
                    campaign_id=campaign.id,
                    author_id=author.id,
                    unit_id=author.unit_id,
                    title=title,
                    title_folded=title.lower(),
                    problem="Căn vải bằng tay mất 40 phút mỗi ca.",
                    solution="Làm cữ gá định vị bằng thép tấm.",
                    benefit="Tiết kiệm 40 phút mỗi ca.",
                    estimated_value=30_000_000,
                    co_author_ids=[tu.id] if author is lan else [],
                    attachments=[{"kind": "photo", "file_ref": "photo-lan-cu-ga"}]
                    if author is lan
                    else [],
                    status=status,
                    submitted_at=T0,
                    reviewed_at=T0 if status == InitiativeStatus.ACCEPTED else None,
                    created_at=T0,
                    updated_at=T0,
                )
            )
        session.add(
            Commendation(
                campaign_id=campaign.id,
                member_id=lan.id,
                unit_id=lan.unit_id,
                title="Lao động giỏi",
                reason="Chị Lan có sáng kiến cữ gá bàn cắt vải",
                awarded_by_id=minh.id,
                created_at=T0,
            )
        )
        return Seeded(campaign.id, lan.id, tu.id)


@pytest.fixture
async def seeded(sessions: SessionFactory, org: dict[str, int]) -> Seeded:
    return await _seed(sessions, org)


def joined(messages: Sequence[object]) -> str:
    return "\n".join(str(getattr(m, "text", "")) for m in messages)


async def test_dulieu_shows_everything_stored_about_the_member(
    bot: TelegramBot, seeded: Seeded
) -> None:
    lan = bot.user(LAN, "Lan")

    answer = joined(await lan.send("/dulieu"))

    assert f"Họ tên: {LAN_NAME}" in answer
    assert (
        "Đơn vị: Liên đoàn Lao động tỉnh Ninh Thuận › "
        f"Công đoàn các Khu công nghiệp tỉnh Ninh Thuận › {MAYNT}" in answer
    )
    # Consent with its local time (T0 is 08:00 in Hanoi) and the version of the text shown.
    assert "Đồng ý xử lý dữ liệu cá nhân: lúc 01/03/2023 08:00, văn bản phiên bản 1" in answer
    assert "Telegram: mã 1001" in answer
    assert (
        f"SK-2023-000001 – {ACCEPTED_TITLE} (được công nhận); "
        "giá trị ước tính 30.000.000 đồng; 1 tệp đính kèm" in answer
    )
    assert f"SK-2023-000002 – {WAITING_TITLE} (chờ duyệt)" in answer
    assert PROMISE in answer
    assert "Lao động giỏi (01/03/2023): Chị Lan có sáng kiến cữ gá bàn cắt vải" in answer
    assert "/xoadulieu" in answer
    # Someone else's initiative is not in it.
    assert "Sắp xếp lại kho phụ liệu" not in answer

    stranger = bot.user(4242, "Khách")
    assert "chưa lưu dữ liệu đoàn viên nào" in joined(await stranger.send("/dulieu"))


async def _officer_view(bot: TelegramBot) -> tuple[str, str]:
    """What the officer reads: /tiendo's figures and the review queue's first card."""
    minh = bot.user(MINH, "Minh")
    progress = (await minh.send("/tiendo"))[0].text
    review = joined(await minh.send("/duyet"))
    await minh.send("/huy")
    return progress, review


async def test_xoadulieu_asks_cancel_keeps_and_confirm_erases_keeping_the_figures(
    bot: TelegramBot, seeded: Seeded, sessions: SessionFactory
) -> None:
    lan = bot.user(LAN, "Lan")
    progress_before, review_before = await _officer_view(bot)
    assert f"Tác giả: {LAN_NAME}" in review_before
    assert WAITING_TITLE in review_before

    asked = await lan.send("/xoadulieu")
    assert "Sẽ bị xóa hoặc ẩn danh" in asked[-1].text
    assert "số lượng đăng ký, sáng kiến, khen thưởng" in asked[-1].text
    assert asked[-1].labels == ["🗑 Xóa dữ liệu của tôi", "Không, giữ lại"]
    kept = await lan.press("Không, giữ lại")
    assert kept[-1].text == "Đã hủy. Dữ liệu của bạn được giữ nguyên."
    async with sessions() as session:
        member = await session.get(Member, seeded.lan_id)
        assert member is not None
        assert member.full_name == LAN_NAME
    assert LAN_NAME in joined(await lan.send("/dulieu"))

    await lan.send("/xoadulieu")
    done = await lan.press("Xóa dữ liệu của tôi")
    assert done[-1].text.startswith("✅ Đã xóa dữ liệu cá nhân của bạn.")

    # The officer's figures are those of before; the name and texts are gone from their view.
    progress_after, review_after = await _officer_view(bot)
    assert progress_after == progress_before
    assert "Sáng kiến: 2 công nhận, 1 chờ duyệt · Chỉ tiêu: 4" in progress_after
    assert LAN_NAME not in review_after
    assert WAITING_TITLE not in review_after
    assert f"Tác giả: {ERASED}" in review_after

    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(Member.full_name == LAN_NAME)) == 0
        member = await session.get(Member, seeded.lan_id)
        assert member is not None
        assert member.full_name == ERASED
        assert member.status == MemberStatus.ACTIVE  # still a member: the unit counts them
        assert member.erased_at is not None
        # The consent record stays: it is the legal basis of what was done before.
        assert member.consent_version == "1"
        accounts = (
            await session.scalars(
                select(ChannelAccount).where(ChannelAccount.external_id == str(LAN))
            )
        ).all()
        assert [a.member_id for a in accounts] == []
        initiatives = (
            await session.scalars(select(Initiative).where(Initiative.author_id == member.id))
        ).all()
        assert sorted(i.status for i in initiatives) == sorted(
            [InitiativeStatus.ACCEPTED, InitiativeStatus.SUBMITTED]
        )
        for initiative in initiatives:
            assert ACCEPTED_TITLE not in initiative.title
            assert WAITING_TITLE not in initiative.title
            assert "40 phút" not in initiative.problem + initiative.solution + initiative.benefit
            assert initiative.attachments == []
            assert initiative.estimated_value == 30_000_000
        commitment = await session.scalar(
            select(Commitment).where(Commitment.author_id == member.id)
        )
        assert commitment is not None
        assert PROMISE not in commitment.content
        assert commitment.progress_percent == 60
        commendation = await session.scalar(select(Commendation))
        assert commendation is not None
        assert commendation.title == "Lao động giỏi"
        assert "Lan" not in commendation.reason
        # Nothing stored from Lan's chats: no raw update, no message of hers.
        payloads = (
            await session.scalars(
                select(InboundUpdate.payload).where(InboundUpdate.payload.is_not(None))
            )
        ).all()
        assert not any(f'"id": {LAN}' in json.dumps(p) for p in payloads)
        messages = (
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.payload.is_not(None))
            )
        ).all()
        assert not any(LAN_NAME in json.dumps(p, ensure_ascii=False) for p in messages)
        # The audit log (what /nhatky shows) records the erasure, with nothing personal.
        maynt = await session.get(Unit, member.unit_id)
        assert maynt is not None
        logged = await audit.entries(session, within=maynt)
        erasures = [(e, actor) for e, actor, _unit in logged if e.action == "member.erase"]
        assert len(erasures) == 1
        entry, actor = erasures[0]
        assert actor == ERASED
        assert entry.subject == f"member:{member.id}"
        assert entry.detail["reason"] == "request"
        assert LAN_NAME not in json.dumps(entry.detail, ensure_ascii=False)
        everything = (await session.scalars(select(AuditEntry))).all()
        assert not any(LAN_NAME in json.dumps(e.detail, ensure_ascii=False) for e in everything)

    # Writing again makes her a newcomer.
    again = await lan.send("/start")
    assert again[-1].text.startswith("Chào mừng bạn! Hãy gõ tên hoặc mã công đoàn cơ sở")
    assert "chưa lưu dữ liệu đoàn viên nào" in joined(await lan.send("/dulieu"))


@pytest.fixture
async def zbot(database_url: str, clock: ManualClock) -> AsyncIterator[ZaloBot]:
    async with running_zalo_bot(database_url, clock) as bot:
        yield bot


def numbered(text: str) -> list[str]:
    return [
        label
        for number, dot, label in (line.partition(". ") for line in text.split("\n"))
        if dot and number.isdigit()
    ]


async def test_on_zalo_a_long_listing_comes_in_parts_and_numbered_replies_erase(
    zbot: ZaloBot, sessions: SessionFactory, org: dict[str, int]
) -> None:
    seeded = await _seed(sessions, org, commitments=30)
    async with sessions() as session, session.begin():
        session.add(
            ChannelAccount(
                channel="zalo",
                external_id=ZALO_LAN,
                chat_id=ZALO_LAN,
                member_id=seeded.lan_id,
                display_name="Lan",
                reachable=True,
                last_seen_at=T0,
                created_at=T0,
            )
        )
    lan = zbot.zalo_user(ZALO_LAN, "Lan")

    parts = await lan.send("/dulieu")
    assert len(parts) > 1
    assert all(len(p.text) <= 2000 for p in parts)
    whole = joined(parts)
    for number in range(1, 31):
        assert whole.count(f"DK-2023-{number:06d} ") == 1
    assert f"Zalo: mã {ZALO_LAN}" in whole
    assert "Telegram: mã 1001" in whole

    asked = await lan.send("/xoadulieu")
    assert numbered(asked[-1].text) == ["🗑 Xóa dữ liệu của tôi", "Không, giữ lại"]
    kept = await lan.send("2")
    assert kept[-1].text == "Đã hủy. Dữ liệu của bạn được giữ nguyên."
    await lan.send("/xoadulieu")
    done = await lan.send("1")
    assert done[-1].text.startswith("✅ Đã xóa dữ liệu cá nhân của bạn.")

    async with sessions() as session:
        member = await session.get(Member, seeded.lan_id)
        assert member is not None
        assert member.full_name == ERASED
        # Both her accounts went, the Telegram one too.
        left = await session.scalar(
            select(func.count()).where(ChannelAccount.external_id.in_([ZALO_LAN, str(LAN)]))
        )
        assert left == 0
    again = await lan.send("xin chào")
    assert again[-1].text.startswith("Bạn chưa tham gia công đoàn trên hệ thống.")


async def test_members_who_left_are_erased_after_the_retention_period(
    bot: TelegramBot, seeded: Seeded, sessions: SessionFactory, clock: ManualClock
) -> None:
    minh, lan = bot.user(MINH, "Minh"), bot.user(LAN, "Lan")

    await minh.send("/roidoan")
    found = await minh.send("nguyen thi lan")
    assert found[-1].labels == [f"{LAN_NAME} – {MAYNT}"]
    confirm = await minh.press(LAN_NAME)
    assert confirm[-1].text.startswith(f"Ghi nhận {LAN_NAME} ({MAYNT}) đã rời công đoàn?")
    done = await minh.press("Xác nhận rời công đoàn")
    assert done[-1].text == f"Đã ghi nhận {LAN_NAME} rời công đoàn."
    notice = await lan.wait_for(1)
    assert notice[-1].text.startswith("Cán bộ công đoàn đã ghi nhận bạn rời")
    # She may still see her data, and is told when she left.
    mine = joined(await lan.send("/dulieu"))
    assert "Trạng thái: đã rời công đoàn" in mine
    assert "Rời công đoàn: 01/03/2023 08:00" in mine

    clock.advance(timedelta(days=200))
    await minh.send("/roidoan")
    await minh.send("Lê Văn Tư")
    await minh.press("Lê Văn Tư")
    await minh.press("Xác nhận rời công đoàn")

    async def names() -> dict[int, str]:
        async with sessions() as session:
            rows = await session.execute(
                select(Member.id, Member.full_name).where(
                    Member.id.in_([seeded.lan_id, seeded.tu_id])
                )
            )
            return {row.id: row.full_name for row in rows}

    # With retention 0 (keep forever) nothing is erased, however long ago.
    scheduler = bot.runtime.scheduler
    configured = scheduler.config
    clock.advance(timedelta(days=166, minutes=1))  # Lan left 366 days ago, Tư 166
    scheduler.config = dataclasses.replace(configured, left_member_retention=None)
    await scheduler.tick()
    assert await names() == {seeded.lan_id: LAN_NAME, seeded.tu_id: "Lê Văn Tư"}

    scheduler.config = configured  # LEFT_MEMBER_RETENTION_DAYS's default: 365
    await scheduler.tick()
    assert await names() == {seeded.lan_id: ERASED, seeded.tu_id: "Lê Văn Tư"}
    async with sessions() as session:
        accounts = await session.scalar(
            select(func.count()).where(ChannelAccount.member_id == seeded.lan_id)
        )
        assert accounts == 0
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "member.erase", AuditEntry.subject == f"member:{seeded.lan_id}"
            )
        )
        assert entry is not None
        assert entry.actor_id is None
        assert entry.detail["reason"] == "retention"
    assert "Chào mừng bạn!" in (await lan.send("/start"))[-1].text

    clock.advance(timedelta(days=200))
    await scheduler.tick()
    assert await names() == {seeded.lan_id: ERASED, seeded.tu_id: ERASED}


def test_the_retention_setting() -> None:
    assert load_settings(_env_file=None).left_member_retention == timedelta(days=365)
    assert load_settings(_env_file=None, left_member_retention_days=30).left_member_retention == (
        timedelta(days=30)
    )
    assert load_settings(_env_file=None, left_member_retention_days=0).left_member_retention is None


async def test_only_officers_record_leaving(bot: TelegramBot, seeded: Seeded) -> None:
    lan = bot.user(LAN, "Lan")
    answer = await lan.send("/roidoan")
    assert answer[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."

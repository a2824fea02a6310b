"""Who may do what, as users find out: every officer action, tried by five people, on both
messengers.

The target is always the CĐCS of the May Ninh Thuận company (MAYNT). The people: a plain member
of it, an officer of the sibling CĐCS (Muối), an officer of MAYNT itself, an officer of the
industrial-zone union above it (KCN) and an admin of the province. On Telegram every action runs
for every person, pressing forged buttons where a person does not see the target, as a forger
could; on Zalo (numbered replies, nothing to forge) a representative sample runs.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.zalo.convert import BOT_CHANNEL
from handlers.i18n import Catalogue
from storage import audit
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    AuditEntry,
    ChannelAccount,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Role,
    Story,
    StoryStatus,
)
from storage.text import fold
from tests.builders import T0, add_campaign, add_member, ninh_thuan_tree
from tests.fakes.telegram_api import SentMessage
from tests.telegram_harness import TelegramUser, running_bot
from tests.zalo_harness import ZaloUserHarness, running_zalo_bot

TEXTS = Catalogue.load()
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
INITIATIVE = "Cải tiến bàn cắt vải tự động"
STORY_NAME = "Lê Văn Tư"

OFFICERS_ONLY = "Chức năng này chỉ dành cho cán bộ công đoàn."
ADMINS_ONLY = "Chức năng này chỉ dành cho quản trị viên."
OUTSIDE = "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."
DENIED = "Bạn không có quyền thực hiện thao tác này."

Persona = Literal["member", "sibling", "unit_officer", "officer_above", "admin"]
PERSONAS: tuple[Persona, ...] = ("member", "sibling", "unit_officer", "officer_above", "admin")
ALLOWED = "allowed"


@dataclass(frozen=True)
class Person:
    name: str
    unit: str
    role: Role
    telegram_id: int
    zalo_id: str


PEOPLE: dict[Persona, Person] = {
    "member": Person("Nguyễn Thị Lan", "CDCS-MAYNT", Role.MEMBER, 1001, "a0000000000000001001"),
    "sibling": Person("Đặng Văn Sơn", "CDCS-MUOI", Role.OFFICER, 9003, "a0000000000000009003"),
    "unit_officer": Person(
        "Phạm Thị Hoa", "CDCS-MAYNT", Role.OFFICER, 9002, "a0000000000000009002"
    ),
    "officer_above": Person("Trần Văn Minh", "CD-KCN", Role.OFFICER, 9001, "a0000000000000009001"),
    "admin": Person("Võ Thị Quản", "LDLD-NT", Role.ADMIN, 7001, "a0000000000000007001"),
}


@dataclass(frozen=True)
class World:
    """The ids the scenarios need."""

    units: dict[str, int]
    members: dict[str, int]
    applicant: int
    initiative: int
    story: int


async def build_world(sessions: SessionFactory) -> World:
    """The province, the five people (on Telegram and Zalo), a campaign, and work waiting in MAYNT.

    Waiting: a join request, an initiative and a story, all by or about Lê Văn Tư (a member of
    MAYNT who is none of the five, so that nobody reviews their own work).
    """
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        campaign = await add_campaign(session, tree["LDLD-NT"])
        members: dict[str, int] = {}
        for persona, person in PEOPLE.items():
            member = await add_member(
                session,
                tree[person.unit],
                person.name,
                role=person.role,
                telegram_id=person.telegram_id,
            )
            session.add(
                ChannelAccount(
                    channel=BOT_CHANNEL,
                    external_id=person.zalo_id,
                    chat_id=person.zalo_id,
                    member_id=member.id,
                    display_name=person.name,
                    reachable=True,
                    last_seen_at=T0,
                    created_at=T0,
                )
            )
            members[persona] = member.id
        tu = await add_member(session, tree["CDCS-MAYNT"], "Lê Văn Tư", telegram_id=1002)
        applicant = await add_member(
            session, tree["CDCS-MAYNT"], "Đỗ Văn Tâm", status=MemberStatus.PENDING
        )
        initiative = Initiative(
            reference="SK-2023-000001",
            campaign_id=campaign.id,
            author_id=tu.id,
            unit_id=tree["CDCS-MAYNT"].id,
            title=INITIATIVE,
            title_folded=fold(INITIATIVE),
            problem="Cắt vải bằng tay chậm và hao phí nguyên liệu.",
            solution="Lắp bàn cắt có thước định vị và dao tự động.",
            benefit="Giảm 15% vải thừa, tăng năng suất tổ cắt.",
            status=InitiativeStatus.SUBMITTED,
            submitted_at=T0,
            created_at=T0,
            updated_at=T0,
        )
        story = Story(
            campaign_id=campaign.id,
            author_id=tu.id,
            unit_id=tree["CDCS-MAYNT"].id,
            subject_name=STORY_NAME,
            story="Anh Tư nhiều năm liền giúp đỡ công nhân mới, hiến máu tình nguyện 12 lần.",
            photos=[],
            status=StoryStatus.SUBMITTED,
            created_at=T0,
        )
        session.add_all([initiative, story])
        # Something for the admin's audit log to show: the operator's import of the tree.
        audit.record(session, now=T0, actor=None, via="cli", action="units.import")
        await session.flush()
        return World(
            units={code: unit.id for code, unit in tree.items()},
            members=members,
            applicant=applicant.id,
            initiative=initiative.id,
            story=story.id,
        )


async def audited(sessions: SessionFactory, action: str) -> list[AuditEntry]:
    """The audit entries of one kind of action."""
    async with sessions() as session:
        found = await session.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return list(found)


# --- Telegram: driving the bot as the person would, forging where they see nothing --------


def nonce_of(user: TelegramUser) -> str | None:
    """The nonce of the conversation's last offered choices, or None when none were offered."""
    for message in reversed(user.inbox):
        for label in message.labels:
            data = message.callback_data(label)
            if data.startswith("c:"):
                return data.split(":")[1]
    return None


async def choose(user: TelegramUser, value: str) -> list[SentMessage]:
    """Press a choice by its value: one offered, or one forged in the same conversation."""
    nonce = nonce_of(user)
    assert nonce is not None, [m.text for m in user.inbox[-3:]]
    return await user.press_data(f"c:{nonce}:{value}")


def refused_by(answers: list[SentMessage], *texts: str) -> str | None:
    """The refusal the person read last, if it is one of `texts`."""
    for message in reversed(answers):
        if message.text in texts:
            return message.text
    return None


Drive = Callable[[TelegramUser, World], Awaitable[list[SentMessage]]]


async def invite(user: TelegramUser, world: World, role: str) -> list[SentMessage]:
    answers = await user.send("/moi")
    if not answers[-1].buttons:
        return answers
    answers = await choose(user, f"u{world.units['CDCS-MAYNT']}")
    if not answers[-1].buttons:
        return answers
    return await choose(user, role)


async def invite_member(user: TelegramUser, world: World) -> list[SentMessage]:
    return await invite(user, world, "member")


async def invite_officer(user: TelegramUser, world: World) -> list[SentMessage]:
    return await invite(user, world, "officer")


async def approve_join(user: TelegramUser, world: World) -> list[SentMessage]:
    # The button of the officers' notice, pressed by whoever has it or forges it.
    return await user.press_data(f"a:join:{world.applicant}:y")


async def review_initiative(user: TelegramUser, world: World) -> list[SentMessage]:
    answers = await user.send("/duyet")
    if not answers[-1].buttons:
        return answers
    await choose(user, "reject")
    return await user.send("Đã có sáng kiến tương tự được công nhận năm 2022.")


async def broadcast(user: TelegramUser, world: World) -> list[SentMessage]:
    answers = await user.send("/thongbao")
    if not answers[-1].buttons:
        return answers
    await choose(user, "new")
    await user.send("Mời đoàn viên dự hội nghị người lao động lúc 14:00 thứ Sáu.")
    await choose(user, "audience")
    await choose(user, "units")
    answers = await choose(user, f"u{world.units['CDCS-MAYNT']}")
    if refused_by(answers, OUTSIDE):
        return answers
    await choose(user, "done")
    return await choose(user, "now")


async def set_targets(user: TelegramUser, world: World) -> list[SentMessage]:
    answers = await user.send("/chitieu")
    if not answers[-1].buttons:
        return answers
    answers = await choose(user, f"u{world.units['CDCS-MAYNT']}")
    if refused_by(answers, OUTSIDE):
        return answers
    return await user.send("25")


async def commend(user: TelegramUser, world: World) -> list[SentMessage]:
    answers = await user.send("/khenthuong")
    if not answers[-1].buttons:
        return answers
    await choose(user, "unit")
    answers = await choose(user, f"u{world.units['CDCS-MAYNT']}")
    if refused_by(answers, OUTSIDE):
        return answers
    await choose(user, "t0")
    await user.send("Hoàn thành xuất sắc kế hoạch sản xuất quý I, không có tai nạn lao động.")
    await choose(user, "none")
    return await choose(user, "send")


async def review_story(user: TelegramUser, world: World) -> list[SentMessage]:
    # The officers' notice button, pressed by whoever has it or forges it.
    answers = await user.press_data(f"a:story:{world.story}")
    if refused_by(answers, DENIED):
        return answers
    return await choose(user, "approve")


async def export_report(user: TelegramUser, world: World) -> list[SentMessage]:
    return await user.send("/baocao 1")


async def view_unit_progress(user: TelegramUser, world: World) -> list[SentMessage]:
    answers = await user.send("/donvi")
    if refused_by(answers, OFFICERS_ONLY):
        return answers
    # The "members not registered" button of the target unit, pressed or forged.
    return await choose(user, f"n{world.units['CDCS-MAYNT']}:0")


async def view_audit(user: TelegramUser, world: World) -> list[SentMessage]:
    return await user.send("/nhatky")


def no_children(unit: str) -> str:
    return TEXTS("targets.no_children", unit=unit)


EMPTY_QUEUE_MUOI = TEXTS("review.empty", unit=MUOI)
OWN_UNIT_ONLY = "own unit only"


@dataclass(frozen=True)
class Case:
    drive: Drive
    expected: dict[Persona, str]
    allowed_text: Callable[[World], str]  # what an allowed person reads last (a prefix)
    audit_action: str | None


def _everyone_above(member: str, sibling: str) -> dict[Persona, str]:
    return {
        "member": member,
        "sibling": sibling,
        "unit_officer": ALLOWED,
        "officer_above": ALLOWED,
        "admin": ALLOWED,
    }


CASES: dict[str, Case] = {
    "invite_member": Case(
        invite_member,
        _everyone_above(OFFICERS_ONLY, OUTSIDE),
        lambda w: "🎟 Mã mời:",
        "invite.create",
    ),
    "invite_officer": Case(
        invite_officer,
        _everyone_above(OFFICERS_ONLY, OUTSIDE),
        lambda w: "🎟 Mã mời:",
        "invite.create",
    ),
    "approve_join": Case(
        approve_join,
        _everyone_above(DENIED, DENIED),
        lambda w: TEXTS("join.officer_approved", name="Đỗ Văn Tâm", unit=MAYNT),
        "join.approve",
    ),
    "review_initiative": Case(
        review_initiative,
        _everyone_above(OFFICERS_ONLY, EMPTY_QUEUE_MUOI),
        lambda w: TEXTS("review.rejected", reference="SK-2023-000001"),
        "initiative.reject",
    ),
    "broadcast": Case(
        broadcast,
        _everyone_above(OFFICERS_ONLY, OUTSIDE),
        lambda w: "📤 Đang gửi thông báo #1 tới",
        "broadcast.send",
    ),
    "set_targets": Case(
        set_targets,
        {
            "member": OFFICERS_ONLY,
            "sibling": no_children(MUOI),
            "unit_officer": no_children(MAYNT),
            "officer_above": ALLOWED,
            # Targets are handed down one level: the province sets those of KCN, not of MAYNT.
            "admin": OUTSIDE,
        },
        lambda w: TEXTS("targets.set", value=25, unit=MAYNT),
        "target.set",
    ),
    "commend": Case(
        commend,
        _everyone_above(OFFICERS_ONLY, OUTSIDE),
        lambda w: f"🏅 Đã ghi nhận Tập thể lao động xuất sắc cho tập thể {MAYNT}",
        "commendation.create",
    ),
    "review_story": Case(
        review_story,
        _everyone_above(DENIED, DENIED),
        lambda w: f"✅ Đã duyệt gương sáng về {STORY_NAME}.",
        "story.approve",
    ),
    "export_report": Case(
        export_report,
        # Officers of the sibling export their own unit's report, which does not show MAYNT.
        _everyone_above(OFFICERS_ONLY, OWN_UNIT_ONLY),
        lambda w: "📊 Báo cáo thi đua của",
        "report.export",
    ),
    "view_unit_progress": Case(
        view_unit_progress,
        _everyone_above(OFFICERS_ONLY, OUTSIDE),
        lambda w: f"Đoàn viên chưa đăng ký thi đua – {MAYNT}",
        None,
    ),
    "view_audit": Case(
        view_audit,
        {
            "member": ADMINS_ONLY,
            "sibling": ADMINS_ONLY,
            "unit_officer": ADMINS_ONLY,
            "officer_above": ADMINS_ONLY,
            "admin": ALLOWED,
        },
        lambda w: "🧾 Nhật ký thao tác – Liên đoàn Lao động tỉnh Ninh Thuận",
        None,
    ),
}


def report_shows_maynt(message: SentMessage) -> bool:
    """Tell whether a report workbook sent to the person lists the target unit anywhere."""
    assert message.content is not None
    workbook = load_workbook(io.BytesIO(message.content), read_only=True)
    return any(
        MAYNT in str(cell)
        for sheet in workbook.worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
        if cell is not None
    )


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", list(CASES))
async def test_telegram(
    action: str,
    persona: Persona,
    database_url: str,
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    case = CASES[action]
    world = await build_world(sessions)
    person = PEOPLE[persona]
    expected = case.expected[persona]
    async with running_bot(database_url, clock) as bot:
        user = bot.user(person.telegram_id, person.name.split()[-1])
        answers = await case.drive(user, world)
        texts = [m.text for m in answers]
        if expected == OWN_UNIT_ONLY:
            document = next(m for m in answers if m.method == "sendDocument")
            assert any(t.startswith(f"📊 Báo cáo thi đua của {MUOI}") for t in texts), texts
            assert not report_shows_maynt(document)
        elif expected == ALLOWED:
            assert any(t.startswith(case.allowed_text(world)) for t in texts), texts
            if action == "export_report":
                document = next(m for m in answers if m.method == "sendDocument")
                assert report_shows_maynt(document)
        else:
            assert expected in texts, texts
            assert not any(t.startswith(case.allowed_text(world)) for t in texts), texts
        # Announcements go out before the bot stops: none is cut off mid-write.
        await bot.runtime.deliverer.drain()
        if case.audit_action is not None:
            entries = await audited(sessions, case.audit_action)
            if expected in (ALLOWED, OWN_UNIT_ONLY):
                who = [(e.actor_id, e.via) for e in entries]
                assert who == [(world.members[persona], "telegram")]
            else:
                assert entries == []
        await assert_nothing_done_unless_allowed(sessions, world, action, expected)


async def assert_nothing_done_unless_allowed(
    sessions: SessionFactory, world: World, action: str, expected: str
) -> None:
    """A refused person changed nothing: the waiting work still waits."""
    async with sessions() as session:
        applicant = await session.get(Member, world.applicant)
        initiative = await session.get(Initiative, world.initiative)
        story = await session.get(Story, world.story)
        assert applicant is not None
        assert initiative is not None
        assert story is not None
        done = expected == ALLOWED
        if action == "approve_join":
            assert (applicant.status == MemberStatus.ACTIVE) is done
        if action == "review_initiative":
            assert (initiative.status == InitiativeStatus.REJECTED) is done
        if action == "review_story":
            assert (story.status == StoryStatus.APPROVED) is done


# --- Zalo: typing numbers; a representative sample ------------------------------------------


def numbered(text: str) -> list[str]:
    """The labels of the numbered choices at the end of a Zalo text."""
    labels = []
    for line in text.split("\n"):
        number, dot, label = line.partition(". ")
        if dot and number.isdigit():
            labels.append(label)
    return labels


async def pick(user: ZaloUserHarness, label_part: str) -> list[str] | None:
    """Type the number of the choice containing `label_part`; None when it is not offered."""
    labels = numbered(user.last.text)
    for index, label in enumerate(labels, 1):
        if label_part in label:
            return [m.text for m in await user.send(str(index))]
    return None


async def zalo_invite(user: ZaloUserHarness) -> list[str]:
    answers = [m.text for m in await user.send("/moi")]
    if not numbered(answers[-1]):
        return answers
    picked = await pick(user, "(CDCS-MAYNT)")
    if picked is None:
        # Not offered: the person searches for it by name, within their own branch.
        return [m.text for m in await user.send("May Ninh Thuận")]
    return picked


async def zalo_review(user: ZaloUserHarness) -> list[str]:
    return [m.text for m in await user.send("/duyet")]


async def zalo_targets(user: ZaloUserHarness) -> list[str]:
    answers = [m.text for m in await user.send("/chitieu")]
    if not numbered(answers[-1]):
        return answers
    picked = await pick(user, MAYNT)
    if picked is None:
        return [m.text for m in await user.send("May Ninh Thuận")]
    return picked


async def zalo_audit(user: ZaloUserHarness) -> list[str]:
    return [m.text for m in await user.send("/nhatky")]


ZaloDrive = Callable[[ZaloUserHarness], Awaitable[list[str]]]
NOT_FOUND_FOR_INVITE = 'Không tìm thấy đơn vị nào thuộc phạm vi của bạn khớp với "May Ninh Thuận".'
NOT_FOUND_FOR_TARGETS = TEXTS("targets.none_found", query="May Ninh Thuận")

ZALO_CASES: dict[str, tuple[ZaloDrive, dict[Persona, str], str]] = {
    "invite_member": (
        zalo_invite,
        _everyone_above(OFFICERS_ONLY, NOT_FOUND_FOR_INVITE),
        f"Mã mời vào {MAYNT} với vai trò nào?",
    ),
    "review_initiative": (
        zalo_review,
        _everyone_above(OFFICERS_ONLY, EMPTY_QUEUE_MUOI),
        "💡 SK-2023-000001 (1/1 chờ duyệt)",
    ),
    "set_targets": (
        zalo_targets,
        {
            "member": OFFICERS_ONLY,
            "sibling": no_children(MUOI),
            "unit_officer": no_children(MAYNT),
            "officer_above": ALLOWED,
            "admin": NOT_FOUND_FOR_TARGETS,
        },
        f"Chỉ tiêu sáng kiến của {MAYNT}",
    ),
    "view_audit": (
        zalo_audit,
        {
            "member": ADMINS_ONLY,
            "sibling": ADMINS_ONLY,
            "unit_officer": ADMINS_ONLY,
            "officer_above": ADMINS_ONLY,
            "admin": ALLOWED,
        },
        "🧾 Nhật ký thao tác – Liên đoàn Lao động tỉnh Ninh Thuận",
    ),
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", list(ZALO_CASES))
async def test_zalo(
    action: str,
    persona: Persona,
    database_url: str,
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    drive, expectations, allowed_text = ZALO_CASES[action]
    await build_world(sessions)
    person = PEOPLE[persona]
    expected = expectations[persona]
    async with running_zalo_bot(database_url, clock) as zbot:
        user = zbot.zalo_user(person.zalo_id, person.name)
        texts = await drive(user)
    if expected == ALLOWED:
        assert any(t.startswith(allowed_text) for t in texts), texts
    else:
        assert any(t.startswith(expected) for t in texts), texts
        assert not any(t.startswith(allowed_text) for t in texts), texts

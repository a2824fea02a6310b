"""Builders for what the tests start from: database rows, and the handlers' services."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import CoreConfig, Services
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits
from storage import invitations
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.members import new_member
from storage.models import (
    Audience,
    Campaign,
    ChannelAccount,
    Deadline,
    DeadlineKind,
    Member,
    MemberStatus,
    Milestone,
    MilestoneKind,
    Movement,
    MovementKind,
    Phase,
    Role,
    Sector,
    Unit,
    UnitKind,
)
from storage.text import fold

T0 = datetime(2023, 3, 1, 1, 0, tzinfo=UTC)


async def add_unit(
    session: AsyncSession,
    code: str,
    name: str,
    *,
    parent: Unit | None = None,
    kind: UnitKind = UnitKind.GRASSROOTS,
    sector: Sector | None = Sector.ENTERPRISE,
) -> Unit:
    """Insert a unit under `parent` with its materialized path."""
    unit = Unit(
        code=code,
        name=name,
        name_folded=fold(name),
        kind=kind,
        sector=sector,
        parent_id=parent.id if parent else None,
        path=f"/tmp-{code}/",
        depth=parent.depth + 1 if parent else 0,
        created_at=T0,
        updated_at=T0,
    )
    session.add(unit)
    await session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    await session.flush()
    return unit


async def add_member(
    session: AsyncSession,
    unit: Unit,
    name: str,
    *,
    role: Role = Role.MEMBER,
    telegram_id: int | None = None,
    status: MemberStatus = MemberStatus.ACTIVE,
) -> Member:
    """Insert a member, with a Telegram account when `telegram_id` is given."""
    member = new_member(
        full_name=name, unit=unit, role=role, status=status, now=T0, consent_version="1"
    )
    session.add(member)
    await session.flush()
    if telegram_id is not None:
        session.add(
            ChannelAccount(
                channel="telegram",
                external_id=str(telegram_id),
                chat_id=str(telegram_id),
                member_id=member.id,
                display_name=name,
                reachable=True,
                last_seen_at=T0,
                created_at=T0,
            )
        )
        await session.flush()
    return member


async def ninh_thuan_tree(session: AsyncSession) -> dict[str, Unit]:
    """A small province: two upper-level unions, three grassroots unions."""
    province = await add_unit(
        session,
        "LDLD-NT",
        "Liên đoàn Lao động tỉnh Ninh Thuận",
        kind=UnitKind.PROVINCE,
        sector=None,
    )
    kcn = await add_unit(
        session,
        "CD-KCN",
        "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận",
        parent=province,
        kind=UnitKind.UPPER,
        sector=None,
    )
    gd = await add_unit(
        session,
        "CD-GD",
        "Công đoàn ngành Giáo dục tỉnh Ninh Thuận",
        parent=province,
        kind=UnitKind.UPPER,
        sector=None,
    )
    may = await add_unit(
        session, "CDCS-MAYNT", "Công đoàn cơ sở Công ty TNHH May Ninh Thuận", parent=kcn
    )
    muoi = await add_unit(
        session, "CDCS-MUOI", "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận", parent=kcn
    )
    cva = await add_unit(
        session,
        "CDCS-CVA",
        "Công đoàn cơ sở Trường THPT Chu Văn An",
        parent=gd,
        sector=Sector.ADMINISTRATIVE,
    )
    return {u.code: u for u in (province, kcn, gd, may, muoi, cva)}


async def invitation_code(
    sessions: SessionFactory, unit_id: int, now: datetime, *, uses: int = 5, days: int = 7
) -> str:
    """Create a member invitation to a unit and return its code."""
    async with sessions() as session, session.begin():
        unit = await session.get(Unit, unit_id)
        assert unit is not None
        invitation = await invitations.create(
            session, unit=unit, role=Role.MEMBER, uses=uses, days=days, now=now
        )
        return invitation.code


async def add_campaign(
    session: AsyncSession,
    root: Unit,
    *,
    late_registration: str = "allow",
    pact_expiry_days: int = 7,
) -> Campaign:
    """Insert a 2023 campaign like Ninh Thuận's: three movements, two phases, two deadlines."""
    campaign = Campaign(
        code="NT-2023",
        name="Phong trào thi đua yêu nước năm 2023",
        year=2023,
        root_unit_id=root.id,
        starts_on=date(2023, 2, 1),
        ends_on=date(2023, 12, 31),
        description="",
        options={"late_registration": late_registration, "pact_expiry_days": pact_expiry_days},
        created_at=T0,
        updated_at=T0,
    )
    session.add(campaign)
    await session.flush()
    movements = [
        ("LDG-LDST", MovementKind.MOVEMENT, "Lao động giỏi, lao động sáng tạo", []),
        ("NSCL", MovementKind.MOVEMENT, "Năng suất cao, chất lượng tốt", ["enterprise"]),
        (
            "KHONG-TIEU-CUC",
            MovementKind.DRIVE,
            "Cán bộ, công chức, viên chức nói không với tiêu cực",
            ["administrative"],
        ),
    ]
    for position, (code, kind, name, sectors) in enumerate(movements):
        session.add(
            Movement(
                campaign_id=campaign.id,
                code=code,
                kind=kind,
                name=name,
                description="",
                sectors=sectors,
                position=position,
            )
        )
    for number, (start, end) in enumerate(
        [(date(2023, 2, 1), date(2023, 6, 30)), (date(2023, 7, 1), date(2023, 12, 31))], 1
    ):
        session.add(
            Phase(
                campaign_id=campaign.id,
                code=f"DOT-{number}",
                number=number,
                name=f"Đợt {'I' * number}",
                starts_on=start,
                ends_on=end,
                focus="Chào mừng 75 năm Ngày Chủ tịch Hồ Chí Minh ra Lời kêu gọi thi đua ái quốc"
                if number == 1
                else "Chào mừng Đại hội XIII Công đoàn Việt Nam",
            )
        )
    for code, deadline_kind, audience in (
        ("DK-THI-DUA", DeadlineKind.COMMITMENT_REGISTRATION, Audience.MEMBERS),
        ("DK-CONG-TRINH", DeadlineKind.CONGRESS_WORK_REGISTRATION, Audience.GRASSROOTS_OFFICERS),
    ):
        session.add(
            Deadline(
                campaign_id=campaign.id,
                code=code,
                kind=deadline_kind,
                title="Đăng ký thi đua gửi về LĐLĐ tỉnh"
                if deadline_kind == DeadlineKind.COMMITMENT_REGISTRATION
                else "Đăng ký công trình, sản phẩm chào mừng Đại hội",
                due_on=date(2023, 3, 15),
                audience=audience,
                reminder_days=[7, 3, 1],
            )
        )
    session.add(
        Milestone(
            campaign_id=campaign.id,
            code="SINH-NHAT-BAC",
            kind=MilestoneKind.COMMEMORATION,
            falls_on=date(2023, 5, 19),
            title="Kỷ niệm 133 năm Ngày sinh Chủ tịch Hồ Chí Minh (19/5/1890 – 19/5/2023)",
            announcement="",
            notice_days=[7, 1],
        )
    )
    await session.flush()
    return campaign


class _NoLinks:
    def links(self, code: str) -> list[str]:
        return []


def core_services(
    sessions: SessionFactory, clock: Clock, channels: Mapping[str, ChannelTraits] | None = None
) -> Services:
    """Build the handlers' services as the composition root does, with no invite links."""
    return Services(
        sessions=sessions,
        clock=clock,
        texts=Catalogue.load(),
        config=CoreConfig(timezone=ZoneInfo("Asia/Ho_Chi_Minh")),
        channels=channels or {},
        invite_links=_NoLinks(),
    )

"""Builders for database rows the tests start from."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import invitations
from storage.engine import SessionFactory
from storage.members import new_member
from storage.models import ChannelAccount, Member, MemberStatus, Role, Sector, Unit, UnitKind
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

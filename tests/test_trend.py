"""The trend chart of /tiendo: accepted initiatives per week of a subtree, drawn against target."""

from __future__ import annotations

import io
import itertools
import random
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import charts
from handlers.charts import Trend, TrendPoint, draw_trend, trend_size
from storage import progress as progress_store
from storage import targets
from storage.engine import SessionFactory
from storage.models import Campaign, Initiative, InitiativeStatus, Member, Role, Unit, UnitKind
from storage.progress import Week, weekly
from tests.builders import T0, add_campaign, add_member, add_unit
from tests.telegram_harness import TelegramBot

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
BERLIN = ZoneInfo("Europe/Berlin")
MINH, LAN, HOA = 9001, 1001, 9002
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_numbers = itertools.count(1)


def local(
    y: int,
    m: int,
    d: int,
    hh: int = 12,
    mm: int = 0,
    ss: int = 0,
    us: int = 0,
    *,
    zone: ZoneInfo = HANOI,
) -> datetime:
    """A local time of `zone`, as the UTC time the database stores."""
    return datetime(y, m, d, hh, mm, ss, us, tzinfo=zone).astimezone(UTC)


async def add_reviewed(
    session: AsyncSession,
    campaign_id: int,
    author: Member,
    moments: Sequence[datetime | None],
    status: InitiativeStatus = InitiativeStatus.ACCEPTED,
) -> None:
    """Insert one initiative of `author`, reviewed with `status`, per review time given."""
    for moment in moments:
        title = f"Sáng kiến số {next(_numbers)}"
        session.add(
            Initiative(
                campaign_id=campaign_id,
                author_id=author.id,
                unit_id=author.unit_id,
                title=title,
                title_folded=title.lower(),
                status=status,
                submitted_at=T0,
                reviewed_at=moment,
                created_at=T0,
                updated_at=T0,
            )
        )
    await session.flush()


def week(first: str, last: str, accepted: int) -> Week:
    return Week(date.fromisoformat(first), date.fromisoformat(last), accepted)


# --- the counts per week ------------------------------------------------------------------------


def test_weeks_run_monday_to_sunday_cut_to_the_days_asked_for() -> None:
    days: dict[date | None, int] = {
        None: 1,  # accepted without a review time
        date(2023, 1, 20): 2,  # before the start
        date(2023, 2, 1): 1,
        date(2023, 2, 5): 1,  # Sunday
        date(2023, 2, 6): 3,  # Monday
        date(2023, 2, 15): 4,  # the last day asked for
        date(2023, 4, 1): 5,  # after it
    }

    # 01/02/2023 is a Wednesday.
    assert weekly(days, date(2023, 2, 1), date(2023, 2, 15)) == [
        week("2023-02-01", "2023-02-05", 5),
        week("2023-02-06", "2023-02-12", 3),
        week("2023-02-13", "2023-02-15", 9),
    ]
    assert weekly(days, date(2023, 2, 5), date(2023, 2, 5)) == [
        week("2023-02-05", "2023-02-05", 17)
    ]
    assert weekly(days, date(2023, 2, 6), date(2023, 2, 5)) == []
    assert weekly({}, date(2023, 2, 27), date(2023, 3, 12)) == [
        week("2023-02-27", "2023-03-05", 0),
        week("2023-03-06", "2023-03-12", 0),
    ]


@pytest.fixture
async def kcn_tree(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """The org's units, a 2023 campaign (from Wednesday 01/02) and one member per CĐCS."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        campaign = await add_campaign(session, root)
        found = dict(org, campaign=campaign.id)
        for code in ("CDCS-MAYNT", "CDCS-MUOI", "CDCS-CVA"):
            unit = await session.get(Unit, org[code])
            assert unit is not None
            found[f"author:{code}"] = (await add_member(session, unit, f"Tác giả {code}")).id
        return found


async def _author(session: AsyncSession, tree: dict[str, int], code: str) -> Member:
    member = await session.get(Member, tree[f"author:{code}"])
    assert member is not None
    return member


async def test_weeks_split_at_local_midnight_and_not_at_the_month(
    sessions: SessionFactory, kcn_tree: dict[str, int]
) -> None:
    campaign_id = kcn_tree["campaign"]
    async with sessions() as session, session.begin():
        may = await _author(session, kcn_tree, "CDCS-MAYNT")
        muoi = await _author(session, kcn_tree, "CDCS-MUOI")
        cva = await _author(session, kcn_tree, "CDCS-CVA")
        await add_reviewed(
            session,
            campaign_id,
            may,
            [
                local(2023, 1, 20),  # before the campaign: its first week
                None,  # no review time: the first week too
                # The last microsecond of Sunday 05/02 in Vietnam, 16:59:59.999999 UTC.
                local(2023, 2, 5, 23, 59, 59, 999_999),
                # Monday 06/02 from its first instant, while it is still Sunday in UTC.
                local(2023, 2, 6, 0, 0),
                # Tuesday 28/02 and Wednesday 01/03 in Vietnam: one week across the month.
                local(2023, 2, 28, 8, 0),
                local(2023, 3, 1, 6, 59),  # 28/02 23:59 in UTC
            ],
        )
        await add_reviewed(
            session,
            campaign_id,
            muoi,
            [
                local(2023, 3, 5, 23, 30),  # Sunday
                local(2023, 3, 6, 0, 30),  # Monday in Vietnam, Sunday 17:30 in UTC
                local(2023, 3, 31, 9, 0),  # Friday
                local(2023, 4, 1, 9, 0),  # Saturday: same week as Friday, across the month
                local(2023, 4, 4, 1, 0),  # in the week shown cut to today, 05/04
            ],
        )
        # Not CD-KCN's: another unit's, another status's, another campaign's.
        await add_reviewed(session, campaign_id, cva, [local(2023, 2, 7)])
        await add_reviewed(
            session, campaign_id, may, [local(2023, 2, 7)], status=InitiativeStatus.REJECTED
        )
        await add_reviewed(session, campaign_id, may, [None], status=InitiativeStatus.SUBMITTED)
        old = Campaign(
            code="NT-2022",
            name="Phong trào thi đua năm 2022",
            year=2022,
            root_unit_id=kcn_tree["LDLD-NT"],
            starts_on=date(2022, 2, 1),
            ends_on=date(2022, 12, 31),
            created_at=T0,
            updated_at=T0,
        )
        session.add(old)
        await session.flush()
        await add_reviewed(session, old.id, may, [local(2023, 2, 7)])

    async with sessions() as session:
        kcn = await session.get(Unit, kcn_tree["CD-KCN"])
        campaign = await session.get(Campaign, campaign_id)
        assert kcn is not None
        assert campaign is not None
        days = await progress_store.accepted_by_day(session, kcn, campaign, HANOI)
        weeks = await progress_store.accepted_by_week(
            session, kcn, campaign, HANOI, date(2023, 4, 5)
        )
        own, _ = await progress_store.standings(session, kcn, campaign_id)

    assert days == {
        None: 1,
        date(2023, 1, 20): 1,
        date(2023, 2, 5): 1,
        date(2023, 2, 6): 1,
        date(2023, 2, 28): 1,
        date(2023, 3, 1): 1,
        date(2023, 3, 5): 1,
        date(2023, 3, 6): 1,
        date(2023, 3, 31): 1,
        date(2023, 4, 1): 1,
        date(2023, 4, 4): 1,
    }
    assert [w for w in weeks if w.accepted] == [
        week("2023-02-01", "2023-02-05", 3),
        week("2023-02-06", "2023-02-12", 1),
        week("2023-02-27", "2023-03-05", 3),
        week("2023-03-06", "2023-03-12", 1),
        week("2023-03-27", "2023-04-02", 2),
        week("2023-04-03", "2023-04-05", 1),
    ]
    assert len(weeks) == 10
    assert (weeks[0].first, weeks[-1].last) == (date(2023, 2, 1), date(2023, 4, 5))
    # The chart ends where the table's count is.
    assert sum(w.accepted for w in weeks) == own.achieved == 11


@pytest.mark.parametrize("seed", [7, 8])
async def test_weekly_counts_of_a_generated_set_match_a_count_by_hand(
    sessions: SessionFactory, seed: int
) -> None:
    rng = random.Random(seed)
    statuses = list(InitiativeStatus)
    accepted: dict[int, list[datetime | None]] = {}
    async with sessions() as session, session.begin():
        root = await add_unit(session, "ROOT", "Liên đoàn Lao động tỉnh", kind=UnitKind.PROVINCE)
        campaign = await add_campaign(session, root)
        units, uppers = [root], [root]
        for number in range(15):
            parent = rng.choice(uppers)
            unit = await add_unit(
                session,
                f"U{number}",
                f"Công đoàn số {number}",
                parent=parent,
                kind=UnitKind.UPPER if rng.random() < 0.4 else UnitKind.GRASSROOTS,
            )
            units.append(unit)
            if unit.kind == UnitKind.UPPER:
                uppers.append(unit)
        for unit in units:
            author = await add_member(session, unit, f"Tác giả {unit.code}")
            moments: list[datetime | None] = []
            for _ in range(rng.randint(0, 40)):
                # From a week before the start to June, at any second; a few at local midnight.
                at = local(2023, 1, 25, 0, 0) + timedelta(
                    days=rng.randint(0, 150),
                    seconds=rng.choice([0, 1, 86_399, rng.randint(0, 86_399)]),
                    microseconds=rng.choice([0, 999_999, rng.randint(0, 999_999)]),
                )
                moments.append(at if rng.random() > 0.02 else None)
            by_status: dict[InitiativeStatus, list[datetime | None]] = {}
            for moment in moments:
                by_status.setdefault(rng.choice(statuses), []).append(moment)
            for status, reviewed in by_status.items():
                await add_reviewed(session, campaign.id, author, reviewed, status=status)
            accepted[unit.id] = by_status.get(InitiativeStatus.ACCEPTED, [])
        paths = {unit.id: unit.path for unit in units}

    today = date(2023, 5, 17)
    async with sessions() as session:
        for unit in units:
            by_hand: Counter[date | None] = Counter(
                moment.astimezone(HANOI).date() if moment is not None else None
                for unit_id, moments in accepted.items()
                if paths[unit_id].startswith(unit.path)
                for moment in moments
            )
            found = await progress_store.accepted_by_day(session, unit, campaign, HANOI)
            assert found == dict(by_hand), unit.code
            weeks = await progress_store.accepted_by_week(session, unit, campaign, HANOI, today)
            assert weeks == weekly(by_hand, campaign.starts_on, today)
            own, _ = await progress_store.standings(session, unit, campaign.id)
            assert sum(w.accepted for w in weeks) == own.achieved, unit.code


async def test_a_zone_with_summer_time_splits_days_at_its_own_midnight(
    sessions: SessionFactory, kcn_tree: dict[str, int]
) -> None:
    """The bot runs on Vietnam's time, which has no summer time; a zone that has works too."""
    moments = [
        local(2023, 3, 25, 23, 59, 59, zone=BERLIN),  # 22:59:59 UTC, winter time
        local(2023, 3, 26, 0, 0, zone=BERLIN),  # 23:00 UTC the day before
        local(2023, 3, 26, 3, 0, zone=BERLIN),  # 01:00 UTC: summer time from 01:00 UTC
        local(2023, 3, 26, 23, 59, 59, zone=BERLIN),  # 21:59:59 UTC, summer time
        local(2023, 3, 27, 0, 0, zone=BERLIN),  # 22:00 UTC the day before
        local(2023, 10, 28, 23, 59, zone=BERLIN),  # 21:59 UTC, still summer time
        local(2023, 10, 29, 0, 0, zone=BERLIN),  # 22:00 UTC the day before
        local(2023, 10, 29, 23, 59, zone=BERLIN),  # 22:59 UTC, winter time again
        local(2023, 10, 30, 0, 0, zone=BERLIN),  # 23:00 UTC the day before
    ]
    async with sessions() as session, session.begin():
        may = await _author(session, kcn_tree, "CDCS-MAYNT")
        await add_reviewed(session, kcn_tree["campaign"], may, moments)

    async with sessions() as session:
        root = await session.get(Unit, kcn_tree["LDLD-NT"])
        campaign = await session.get(Campaign, kcn_tree["campaign"])
        assert root is not None
        assert campaign is not None
        days = await progress_store.accepted_by_day(session, root, campaign, BERLIN)

    assert days == {
        date(2023, 3, 25): 1,
        date(2023, 3, 26): 3,
        date(2023, 3, 27): 1,
        date(2023, 10, 28): 1,
        date(2023, 10, 29): 2,
        date(2023, 10, 30): 1,
    }


async def test_no_weeks_before_the_campaign_starts_and_none_after_it_ends(
    sessions: SessionFactory, kcn_tree: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        may = await _author(session, kcn_tree, "CDCS-MAYNT")
        await add_reviewed(session, kcn_tree["campaign"], may, [local(2023, 12, 31, 23, 0)])
        await add_reviewed(session, kcn_tree["campaign"], may, [local(2024, 1, 3)])

    async with sessions() as session:
        kcn = await session.get(Unit, kcn_tree["CD-KCN"])
        campaign = await session.get(Campaign, kcn_tree["campaign"])
        assert kcn is not None
        assert campaign is not None
        before = await progress_store.accepted_by_week(
            session, kcn, campaign, HANOI, date(2023, 1, 31)
        )
        after = await progress_store.accepted_by_week(
            session, kcn, campaign, HANOI, date(2024, 2, 1)
        )

    assert before == []
    # Sunday 31/12 ends the campaign: a week of one day, holding what was accepted later too.
    assert after[-1] == week("2023-12-25", "2023-12-31", 2)
    assert len(after) == 48
    assert after[0] == week("2023-02-01", "2023-02-05", 0)


# --- the drawing --------------------------------------------------------------------------------


def sample_trend(weeks: int, target: int | None, *, start_day: int = 5) -> Trend:
    """A campaign of 334 days, `weeks` weeks of it gone, about ten accepted a week."""
    points = [
        TrendPoint(
            day=start_day + 7 * i,
            label=(date(2023, 2, 1) + timedelta(days=start_day - 1 + 7 * i)).strftime("%d/%m"),
            total=10 * i + i % 3,
        )
        for i in range(weeks)
    ]
    return Trend(
        title="Sáng kiến được công nhận, cộng dồn theo tuần\nCông đoàn các Khu công nghiệp tỉnh",
        x_axis="Tuần thi đua (số liệu tính đến hết ngày)",
        y_axis="Số sáng kiến được công nhận",
        points=points,
        days=334,
        total_label="Đã được công nhận (cộng dồn)",
        target=target,
        target_label="Chỉ tiêu cả đợt: 1.200"
        if target is not None
        else "Đơn vị chưa có chỉ tiêu nên không có đường chỉ tiêu",
        pace_label="Tiến độ cần có để đạt chỉ tiêu đúng hạn",
    )


@pytest.mark.parametrize(
    ("weeks", "target"),
    [(1, 1200), (6, 1200), (48, 1200), (20, None), (3, 0), (1, None)],
)
def test_the_trend_chart_is_a_png_of_the_expected_size_with_every_vietnamese_letter(
    weeks: int, target: int | None
) -> None:
    with warnings.catch_warnings():
        # Matplotlib warns "Glyph ... missing from font(s)" for a letter it cannot draw.
        warnings.simplefilter("error")
        png = draw_trend(sample_trend(weeks, target))

    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == trend_size() == (1000, 560)
        image.verify()


def test_the_week_labels_are_thinned_out_and_keep_the_last_week() -> None:
    few = sample_trend(6, 100).points
    assert charts._thinned(few) == list(few)
    many = sample_trend(48, 100).points
    kept = charts._thinned(many)
    assert len(kept) <= charts.TREND_TICKS + 1
    assert kept[0] == many[0]
    assert kept[-1] == many[-1]
    step = 4  # 48 weeks, 14 labels at most
    gaps = [b.day - a.day for a, b in itertools.pairwise(kept)]
    assert min(gaps) >= 7 * step
    assert [p.label for p in charts._thinned(sample_trend(20, 100).points)][-2:] == [
        "28/05",
        "18/06",
    ]


# --- /tiendo on Telegram ------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Trend]:
    """The trend charts the bot draws, as it asks for them; they are drawn all the same."""
    found: list[Trend] = []
    draw = charts.draw_trend

    def recording(trend: Trend) -> bytes:
        found.append(trend)
        return draw(trend)

    monkeypatch.setattr(charts, "draw_trend", recording)
    return found


@pytest.fixture
async def reviewed_over_weeks(sessions: SessionFactory, kcn_tree: dict[str, int]) -> int:
    """CD-KCN (target 10) has initiatives accepted over the campaign's first weeks."""
    campaign_id = kcn_tree["campaign"]
    async with sessions() as session, session.begin():
        await targets.put(
            session,
            unit_id=kcn_tree["CD-KCN"],
            campaign_id=campaign_id,
            metric=targets.INITIATIVES,
            value=10,
            now=T0,
        )
        may = await _author(session, kcn_tree, "CDCS-MAYNT")
        muoi = await _author(session, kcn_tree, "CDCS-MUOI")
        cva = await _author(session, kcn_tree, "CDCS-CVA")
        await add_reviewed(session, campaign_id, may, [local(2023, 2, 3), local(2023, 2, 14)])
        await add_reviewed(session, campaign_id, muoi, [local(2023, 2, 15), local(2023, 2, 27)])
        # Today, 01/03, at 07:59 in Vietnam: the clock stands at 08:00.
        await add_reviewed(session, campaign_id, muoi, [local(2023, 3, 1, 7, 59)])
        await add_reviewed(session, campaign_id, cva, [local(2023, 2, 8)])  # CD-GD's
        await add_reviewed(
            session, campaign_id, may, [local(2023, 2, 9)], status=InitiativeStatus.SUBMITTED
        )
        hoa = await session.get(Unit, kcn_tree["CDCS-CVA"])
        assert hoa is not None
        await add_member(session, hoa, "Đặng Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        return campaign_id


async def test_an_officer_gets_the_weekly_trend_of_the_subtree_against_the_target(
    bot: TelegramBot, reviewed_over_weeks: int, drawn: list[Trend]
) -> None:
    minh = bot.user(MINH, "Minh")

    answer = await minh.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage", "sendPhoto", "sendPhoto"]
    assert "5 sáng kiến được công nhận / chỉ tiêu 10 (đạt 50%)" in answer[0].text
    chart = answer[2]
    assert chart.file_id == "xu-huong-sang-kien.png"
    assert chart.content is not None
    with Image.open(io.BytesIO(chart.content)) as image:
        assert image.format == "PNG"
        assert image.size == trend_size()

    [trend] = drawn
    # Weeks end on Sundays 05/02, 12/02, 19/02, 26/02; the fifth is cut to today, 01/03.
    assert trend.points == [
        TrendPoint(5, "05/02", 1),
        TrendPoint(12, "12/02", 1),
        TrendPoint(19, "19/02", 3),
        TrendPoint(26, "26/02", 3),
        TrendPoint(29, "01/03", 5),
    ]
    assert trend.days == 334  # 01/02 to 31/12
    assert trend.title == (
        "Sáng kiến được công nhận, cộng dồn theo tuần\n"
        "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
    )
    assert (trend.target, trend.target_label) == (10, "Chỉ tiêu cả đợt: 10")
    assert trend.x_axis == "Tuần thi đua (số liệu tính đến hết ngày)"
    assert trend.y_axis == "Số sáng kiến được công nhận"
    assert trend.pace_label == "Tiến độ cần có để đạt chỉ tiêu đúng hạn"


async def test_an_officer_of_a_unit_with_nothing_below_gets_its_trend_without_a_target(
    bot: TelegramBot, reviewed_over_weeks: int, drawn: list[Trend]
) -> None:
    hoa = bot.user(HOA, "Hoa")

    answer = await hoa.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage", "sendPhoto"]
    assert answer[1].file_id == "xu-huong-sang-kien.png"
    [trend] = drawn
    assert [p.total for p in trend.points] == [0, 1, 1, 1, 1]
    assert trend.target is None
    assert trend.target_label == "Đơn vị chưa có chỉ tiêu nên không có đường chỉ tiêu"


async def test_a_member_gets_no_chart(
    bot: TelegramBot, reviewed_over_weeks: int, drawn: list[Trend]
) -> None:
    lan = bot.user(LAN, "Lan")

    answer = await lan.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage"]
    assert drawn == []


async def test_a_trend_that_cannot_be_drawn_leaves_the_table_and_the_bars(
    bot: TelegramBot, reviewed_over_weeks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(trend: Trend) -> bytes:
        raise RuntimeError("no more memory")

    monkeypatch.setattr(charts, "draw_trend", broken)
    minh = bot.user(MINH, "Minh")

    answer = await minh.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage", "sendPhoto"]
    assert answer[1].file_id == "tien-do-sang-kien.png"

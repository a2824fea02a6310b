"""The Zalo Official Account: signed webhook events, consultation replies, and the access
token refreshed before it expires, its single-use refresh token rotated exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.zalo import convert
from bot.zalo.oa import signature, signature_valid
from bot.zalo.tokens import TOKENS_KEY, OATokens, TokenPair
from storage import app_state
from storage.clock import ManualClock
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.models import ChannelAccount, InboundUpdate, Member, MemberStatus
from tests.builders import invitation_code
from tests.fakes.zalo_api import FakeZaloOA, IssuedPair
from tests.zalo_harness import ZaloBot, running_zalo_bot

CHOOSE = "👉 Trả lời bằng số thứ tự của lựa chọn (ví dụ: 1)."


@pytest.fixture
async def zbot(database_url: str, clock: ManualClock) -> AsyncIterator[ZaloBot]:
    async with running_zalo_bot(database_url, clock) as bot:
        yield bot


async def count(sessions: SessionFactory, model: type[object]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def stored_pair(sessions: SessionFactory) -> TokenPair:
    async with sessions() as session:
        raw = await app_state.get(session, TOKENS_KEY)
    assert raw is not None
    return TokenPair.from_json(raw)


# --- conversations through the OA -----------------------------------------------------------


async def test_follow_then_join_by_code_typing_numbers(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    lan = zbot.oa_user("6142494823000000001")
    welcome = await lan.follow()
    assert welcome[0].text.startswith("Chào mừng bạn!")

    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    await lan.send(f"/start {code}")
    consent = await lan.send("Trương Thị Lan")
    assert consent[-1].text.endswith(f"1. Tôi đồng ý\n2. Không đồng ý\n\n{CHOOSE}")
    welcomed = await lan.send("1")
    assert "Chào mừng Trương Thị Lan" in welcomed[-1].text
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Trương Thị Lan"))
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == "6142494823000000001")
        )
    assert member is not None
    assert member.status == MemberStatus.ACTIVE
    assert account is not None
    assert (account.channel, account.member_id) == ("zalo_oa", member.id)
    assert all(len(m.text) <= 2000 for m in lan.inbox)

    # Leaving the OA makes the account unreachable; coming back (writing) reachable again.
    await lan.deliver(zbot.oa.event(lan.user_id, "unfollow"))
    async with sessions() as session:
        account = await session.get(ChannelAccount, account.id)
    assert account is not None
    assert account.reachable is False
    await lan.send("/toi")
    async with sessions() as session:
        account = await session.get(ChannelAccount, account.id)
    assert account is not None
    assert account.reachable is True


async def test_wrong_signature_is_refused_and_nothing_stored(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    event = zbot.oa.event("6142494823000000002", text="/start")
    body, headers = zbot.oa.signed(event)
    wrong_key = dict(headers)
    wrong_key["X-ZEvent-Signature"] = signature(zbot.oa.app_id, body, event["timestamp"], "nope")
    tampered = body.replace(b"/start", b"/help!")
    no_signature = {"Content-Type": "application/json"}
    assert await zbot.post_oa(body, wrong_key) == 403
    assert await zbot.post_oa(tampered, headers) == 403
    assert await zbot.post_oa(body, no_signature) == 403
    # A signed body that is not JSON is refused after the check, still with nothing stored.
    junk = b'{"timestamp": "1", not json'
    assert await zbot.post_oa(junk, {"X-ZEvent-Signature": zbot.oa.sign(junk, "1")}) == 400
    assert await count(sessions, InboundUpdate) == 0
    assert await count(sessions, ChannelAccount) == 2  # the two people of `org`
    assert zbot.oa.sent == []


async def test_a_repeated_event_is_handled_once_and_receipts_are_ignored(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    user = zbot.oa_user("6142494823000000003")
    event = zbot.oa.event(user.user_id, text="/help", msg_id="cb31dff1c39642cc1b83")
    await user.deliver(event)
    body, headers = zbot.oa.signed(event)
    # Zalo retries an event it thinks failed (header num_retry); the bot answers it once.
    statuses = await asyncio.gather(*(zbot.post_oa(body, headers) for _ in range(3)))
    assert statuses == [200, 200, 200]
    seen = zbot.oa.event(user.user_id, "user_seen_message", msg_id="f00")
    assert await zbot.post_oa(*zbot.oa.signed(seen)) == 200
    # A later message is answered after anything the repeats could have queued before it.
    await user.send("/help")
    assert len(user.inbox) == 2  # one answer per distinct message
    async with sessions() as session:
        keys = (await session.scalars(select(InboundUpdate.update_key))).all()
    assert len(keys) == 2
    assert "cb31dff1c39642cc1b83" in keys
    assert "f00" not in keys


def test_images_and_files_become_attachments() -> None:
    oa = FakeZaloOA()
    image = oa.event(
        "u1",
        "user_send_image",
        text="Ảnh công trình",
        attachments=[{"type": "image", "payload": {"url": "https://z.example/a.jpg"}}],
    )
    file = oa.event(
        "u1",
        "user_send_file",
        attachments=[
            {
                "type": "file",
                "payload": {"url": "https://z.example/b.pdf", "name": "b.pdf", "size": "1024"},
            }
        ],
    )
    photo = convert.oa_event(image)
    document = convert.oa_event(file)
    assert photo is not None
    assert document is not None
    assert photo.incoming.text == "Ảnh công trình"
    assert [(a.kind, a.file_ref) for a in photo.incoming.attachments] == [
        ("photo", "https://z.example/a.jpg")
    ]
    [attached] = document.incoming.attachments
    assert (attached.kind, attached.name, attached.size) == ("document", "b.pdf", 1024)
    sticker = convert.oa_event(oa.event("u1", "user_send_sticker"))
    assert sticker is not None
    assert sticker.kind == "unreadable"


def test_signature_is_checked_on_the_raw_body() -> None:
    oa = FakeZaloOA()
    event = oa.event("u1", text="xin chào")
    body, headers = oa.signed(event)
    check = {"app_id": oa.app_id, "body": body, "secret_key": oa.oa_secret_key}
    assert signature_valid(headers["X-ZEvent-Signature"], **check)
    # The same event serialised differently is another body: its old signature fails.
    other = json.dumps(event, ensure_ascii=True).encode()
    assert other != body
    assert not signature_valid(headers["X-ZEvent-Signature"], **{**check, "body": other})
    assert not signature_valid(None, **check)
    assert not signature_valid("mac=", **check)


# --- access tokens --------------------------------------------------------------------------


def _tokens(
    sessions: SessionFactory, clock: ManualClock, oa: FakeZaloOA, pair: IssuedPair
) -> OATokens:
    return OATokens(
        sessions,
        clock,
        oauth_base_url=oa.base_url,
        app_id=oa.app_id,
        app_secret_key=oa.app_secret_key,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
    )


@pytest.fixture
async def fake_oa() -> AsyncIterator[FakeZaloOA]:
    # A slow OAuth answer leaves the second caller plenty of time to race the first.
    oa = FakeZaloOA(refresh_latency=0.3)
    await oa.start()
    yield oa
    await oa.stop()


async def test_two_processes_refreshing_at_once_rotate_the_token_once(
    database_url: str, sessions: SessionFactory, clock: ManualClock, fake_oa: FakeZaloOA
) -> None:
    seed = fake_oa.issue()
    # Two processes: each its own engine and token keeper, one database.
    other_engine = create_engine(database_url)
    first = _tokens(sessions, clock, fake_oa, seed)
    second = _tokens(create_session_factory(other_engine), clock, fake_oa, seed)
    try:
        await first.load()
        await second.load()
        # The pair from the settings has no known expiry: both want to refresh it now.
        tokens = await asyncio.gather(
            first.access_token(), second.access_token(), first.access_token()
        )
        assert fake_oa.used_refresh == [seed.refresh_token]
        assert fake_oa.refused_refresh == []
        assert len(set(tokens)) == 1
        assert tokens[0] != seed.access_token
        stored = await stored_pair(sessions)
        assert stored.access_token == tokens[0]
        assert stored.refresh_token in fake_oa.live_refresh  # the new one, not yet spent
        assert stored.expires_at == clock.now() + timedelta(seconds=90000)

        # Valid for 25 hours: nothing is refreshed until an hour before the end.
        clock.advance(timedelta(hours=23, minutes=59))
        assert await second.access_token() == tokens[0]
        assert len(fake_oa.used_refresh) == 1
        clock.advance(timedelta(minutes=2))
        renewed = await asyncio.gather(second.access_token(), first.access_token())
        assert fake_oa.used_refresh == [seed.refresh_token, stored.refresh_token]
        assert renewed[0] == renewed[1] != tokens[0]
        assert fake_oa.refused_refresh == []
    finally:
        await first.close()
        await second.close()
        await other_engine.dispose()


async def test_a_restart_keeps_the_rotated_pair_and_new_settings_replace_it(
    sessions: SessionFactory, clock: ManualClock, fake_oa: FakeZaloOA
) -> None:
    seed = fake_oa.issue()
    keeper = _tokens(sessions, clock, fake_oa, seed)
    await keeper.load()
    rotated = await keeper.access_token()
    await keeper.close()

    # Restarted with the same (now spent) settings: the stored pair is kept and used.
    restarted = _tokens(sessions, clock, fake_oa, seed)
    await restarted.load()
    assert await restarted.access_token() == rotated
    assert fake_oa.refused_refresh == []

    # The app was authorized again and the new pair put in the settings: it wins.
    fresh = fake_oa.issue()
    replaced = _tokens(sessions, clock, fake_oa, fresh)
    await replaced.load()
    assert (await stored_pair(sessions)).refresh_token == fresh.refresh_token
    assert await replaced.access_token() not in (rotated, fresh.access_token)
    assert fake_oa.used_refresh[-1] == fresh.refresh_token
    await restarted.close()
    await replaced.close()


async def test_an_expired_token_is_refreshed_and_the_reply_still_sent(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    user = zbot.oa_user("6142494823000000004")
    await user.send("/help")  # the first use refreshes the pair from the settings
    refreshes = len(zbot.oa.used_refresh)
    current = (await stored_pair(sessions)).access_token
    zbot.oa.expire(current)  # revoked, or expired early: Zalo answers -216
    answer = await user.send("/help")
    assert len(answer) == 1
    assert len(zbot.oa.used_refresh) == refreshes + 1
    assert (await stored_pair(sessions)).access_token != current


async def test_tokens_are_kept_fresh_without_any_traffic(
    zbot: ZaloBot, sessions: SessionFactory, clock: ManualClock
) -> None:
    # At start the pair from the settings is refreshed at once, without a message to send.
    deadline = asyncio.get_running_loop().time() + 5
    while (pair := await stored_pair(sessions)).expires_at is None:
        assert asyncio.get_running_loop().time() < deadline, "the OA token was never refreshed"
        await asyncio.sleep(0.02)
    assert pair.expires_at == clock.now() + timedelta(seconds=90000)
    assert len(zbot.oa.used_refresh) == 1

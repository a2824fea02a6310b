"""Abuse: thousands of generated, malformed and hostile updates POSTed to the real webhooks.

Hypothesis generates Telegram updates and Zalo events (Bot API and Official Account), valid-
looking and broken: wrong JSON types, missing fields, absurd ids, huge texts, emoji, decomposed
Vietnamese, control characters, forged and oversized button data, unknown chats, edited
messages, channel posts, bodies that are not JSON. Each goes through the running bot's webhook
with the right secret. The bot must never answer 5xx, never log an error, leave nobody in a
conversation /huy cannot end, and still answer a real member correctly afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.web import (
    TELEGRAM_SECRET_HEADER,
    TELEGRAM_WEBHOOK_PATH,
    ZALO_OA_WEBHOOK_PATH,
    ZALO_WEBHOOK_PATH,
)
from handlers.routing import build_routes
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import ChannelAccount, Conversation, InboundUpdate, Unit
from tests.builders import T0, add_campaign
from tests.telegram_harness import SECRET as TELEGRAM_SECRET
from tests.zalo_harness import ZaloBot, running_zalo_bot

pytestmark = pytest.mark.fuzz

# Updates per run: (Telegram, Zalo Bot API, Zalo OA). The full 10,000 go to PostgreSQL, the
# database of large deployments; SQLite, whose storing and handling code paths are the same
# but a third slower here, gets a fifth of them so that the suite stays within CI's time.
EXAMPLES = {"postgresql": (7000, 1500, 1500), "sqlite": (1400, 300, 300)}
BATCH = 10  # updates POSTed at once

ROUTES = build_routes()
COMMANDS = sorted(ROUTES.commands)
ACTIONS = sorted(ROUTES.actions)
# The org fixture's officer and member, people unknown to the bot, and absurd ids.
TELEGRAM_PEOPLE = [9001, 1001, 5001, 5002]
ZALO_PEOPLE = ["z-officer", "z-member", "z-5001", "z-5002"]

_fresh = itertools.count(10_000_000)
FRESH = "fresh"  # stands for a new, unique id filled in when the update is sent
PRESS = "press"  # (PRESS, n): the n-th button of the last message with buttons sent to them


# --- values -----------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
# Any JSON value: what a broken or hostile sender might put in place of the right one.
junk = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=5,
)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right kind of value, and now and then any JSON value instead."""
    return st.one_of(strategy, strategy, strategy, junk)


_hostile_chars = st.sampled_from(
    ["\x00", "\x1b", "\x7f", "\u200b", "\u202e", "\ufeff", "\r", "\n", "\t", "\u2028", "$", "<b>"]
)
texts = st.lists(
    st.one_of(
        st.builds(
            lambda command, rest: f"/{command} {rest}".rstrip(),
            st.sampled_from([*COMMANDS, "start@thidua_bot", "khonglenh"]),
            st.text(max_size=24),
        ),
        st.text(max_size=40),
        st.sampled_from(
            [
                "Nguye\u0302\u0303n Thi\u0323 Lan",  # decomposed, as some keyboards send it
                "sa\u0301ng kie\u0302\u0301n",
                "👩‍👩‍👧🇻🇳😀",
                "1",
                "2",
                "9",
                "0",
                "Xong",
                "Bỏ qua",
                "Tôi đồng ý",
                "/huy",
                "<b>Lan</b>",
                '=HYPERLINK("http://x")',
                "$Lan^2$",
                "12/13/2023",
                "-1",
                "1e309",
            ]
        ),
        st.lists(_hostile_chars, max_size=6).map("".join),
        # Far beyond any limit (Telegram's own is 4,096).
        st.builds(
            lambda ch, n: ch * n,
            st.sampled_from(["a", "ạ", "😀", " ", "\x00"]),
            st.integers(4097, 30_000),
        ),
    ),
    min_size=1,
    max_size=3,
).map("".join)

callback_data = st.one_of(
    st.builds(lambda nonce, value: f"c:{nonce}:{value}", st.text(max_size=8), st.text(max_size=20)),
    st.builds(
        lambda name, args: ":".join(["a", name, *args]),
        st.sampled_from([*ACTIONS, "nope", ""]),
        st.lists(
            st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=10)), max_size=4
        ),
    ),
    st.text(max_size=64),
    st.builds(lambda n: "c:" + "x" * n, st.integers(65, 5000)),  # beyond Telegram's 64 bytes
)


# --- Telegram -----------------------------------------------------------------------------

telegram_ids = st.one_of(
    st.sampled_from(TELEGRAM_PEOPLE), st.integers(min_value=-(2**70), max_value=2**70)
)


@st.composite
def telegram_user(draw: st.DrawFn) -> dict[str, Any]:
    return draw(
        st.fixed_dictionaries(
            {"id": mostly(telegram_ids)},
            optional={
                "is_bot": mostly(st.booleans()),
                "first_name": mostly(texts),
                "last_name": mostly(texts),
                "username": mostly(st.text(max_size=32)),
                "language_code": mostly(st.sampled_from(["vi", "en"])),
            },
        )
    )


@st.composite
def telegram_message(draw: st.DrawFn) -> dict[str, Any]:
    sender = draw(telegram_user())
    chat_id = draw(st.one_of(st.just(sender["id"]), telegram_ids))
    chat = draw(
        st.fixed_dictionaries(
            {
                "id": mostly(st.just(chat_id)),
                "type": mostly(
                    st.sampled_from(["private", "private", "group", "supergroup", "channel"])
                ),
            },
            optional={"first_name": texts, "title": texts},
        )
    )
    photo_size = st.fixed_dictionaries(
        {"file_id": mostly(st.text(min_size=1, max_size=80))},
        optional={
            "file_unique_id": st.text(max_size=20),
            "width": mostly(st.integers(0, 10_000)),
            "height": mostly(st.integers(0, 10_000)),
            "file_size": mostly(st.integers(-1, 10**12)),
        },
    )
    document = st.fixed_dictionaries(
        {"file_id": mostly(st.text(min_size=1, max_size=80))},
        optional={
            "file_name": mostly(texts),
            "mime_type": mostly(
                st.sampled_from(["application/pdf", "image/jpeg", "application/x-msdownload", ""])
            ),
            "file_size": mostly(st.integers(-1, 10**12)),
        },
    )
    return draw(
        st.fixed_dictionaries(
            {"message_id": mostly(st.integers(-(2**70), 2**70)), "chat": mostly(st.just(chat))},
            optional={
                "from": mostly(st.just(sender)),
                "date": mostly(st.integers(0, 2**40)),
                "text": mostly(texts),
                "caption": mostly(texts),
                "photo": mostly(st.lists(photo_size, max_size=3)),
                "document": mostly(document),
                "sticker": junk,
                "entities": junk,
            },
        )
    )


@st.composite
def sound_telegram_update(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed private message or button press from one of a few people.

    A press is of a button the bot really showed that person (PRESS, filled in when sent), or
    a forged one.
    """
    person = draw(st.sampled_from([*TELEGRAM_PEOPLE, 5003, 5004]))
    sender = {
        "id": person,
        "is_bot": False,
        "first_name": draw(st.sampled_from(["Lan", "<b>Lan</b>", "*Lan*", "$Lan^2$"])),
    }
    chat = {"id": person, "type": "private"}
    kind = draw(st.sampled_from(["text"] * 5 + ["press"] * 4 + ["photo", "document"]))
    if kind == "press":
        data = draw(st.one_of(st.tuples(st.just(PRESS), st.integers(0, 6)), callback_data))
        return {
            "update_id": FRESH,
            "callback_query": {
                "id": FRESH,
                "from": sender,
                "chat_instance": "1",
                "data": data,
                "message": {"message_id": FRESH, "date": 0, "chat": chat, "text": "…"},
            },
        }
    message: dict[str, Any] = {"message_id": FRESH, "date": 0, "chat": chat, "from": sender}
    if kind == "text":
        message["text"] = draw(texts)
    elif kind == "photo":
        message["photo"] = [
            {
                "file_id": draw(st.text(min_size=1, max_size=40)),
                "file_unique_id": "u",
                "width": 9,
                "height": 9,
                "file_size": draw(st.integers(0, 10**8)),
            }
        ]
        message["caption"] = draw(texts)
    else:
        message["document"] = {
            "file_id": draw(st.text(min_size=1, max_size=40)),
            "file_name": draw(
                st.one_of(st.text(max_size=300), st.sampled_from(["a.pdf", "x.exe", "b.docx"]))
            ),
            "mime_type": draw(
                st.sampled_from(
                    ["application/pdf", "application/x-msdownload", "image/png", "text/html"]
                )
            ),
            "file_size": draw(st.integers(0, 10**9)),
        }
    return {"update_id": FRESH, "message": message}


def telegram_update() -> st.SearchStrategy[dict[str, Any] | bytes]:
    """Sound updates, three times as often as hostile ones."""
    sound = sound_telegram_update()
    return st.one_of(sound, sound, sound, hostile_telegram_update())


@st.composite
def hostile_telegram_update(draw: st.DrawFn) -> Any:  # an object, bytes or any JSON value
    shape = draw(
        st.sampled_from(
            ["message"] * 6
            + ["callback_query"] * 3
            + ["edited_message", "channel_post", "my_chat_member", "other", "junk", "bytes", "raw"]
        )
    )
    if shape == "raw":
        # Escapes a database cannot store as they are: NUL and lone surrogates.
        text = draw(st.sampled_from(["\\u0000", "a\\ud800b", "\\udfff", "\\u0000\\ud83d"]))
        person = draw(st.sampled_from(TELEGRAM_PEOPLE))
        return (
            f'{{"update_id": {next(_fresh)}, "message": {{"message_id": 1, "from": {{"id": '
            f'{person}, "first_name": "{text}"}}, "chat": {{"id": {person}, "type": "private"}}, '
            f'"text": "{text}"}}}}'
        ).encode()
    if shape == "bytes":
        return draw(
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from(
                    [
                        b"",
                        b"{",
                        b"null",
                        b"[]",
                        b'{"update_id": 1e400}',
                        b'{"update_id": NaN}',
                        b'{"update_id": 7, "message": {"text": NaN}}',
                        b"\xff\xfe{}",
                    ]
                ),
            )
        )
    update_id: Any = draw(
        st.one_of(
            st.just(FRESH),
            st.just(FRESH),
            st.just(FRESH),
            st.integers(min_value=-(2**70), max_value=2**70),
            junk,
        )
    )
    update: dict[str, Any] = {} if draw(st.integers(0, 30)) == 0 else {"update_id": update_id}
    if shape in ("message", "edited_message", "channel_post"):
        update[shape] = draw(mostly(telegram_message()))
    elif shape == "callback_query":
        query = draw(
            st.fixed_dictionaries(
                {"id": mostly(st.text(min_size=1, max_size=20)), "from": mostly(telegram_user())},
                optional={
                    "data": mostly(callback_data),
                    "message": mostly(telegram_message()),
                    "chat_instance": st.text(max_size=10),
                },
            )
        )
        update["callback_query"] = query
    elif shape == "my_chat_member":
        update["my_chat_member"] = draw(junk)
    elif shape == "other":
        update[draw(st.text(max_size=16))] = draw(junk)
    else:
        return draw(junk)  # not even an object
    return update


# --- Zalo ---------------------------------------------------------------------------------

zalo_ids = st.one_of(
    st.sampled_from(ZALO_PEOPLE),
    st.text(max_size=80),
    st.integers(min_value=-(2**70), max_value=2**70),
)
zalo_events = st.sampled_from(
    [
        "message.text.received",
        "message.text.received",
        "message.text.received",
        "message.image.received",
        "message.sticker.received",
        "message.unsupported.received",
        "message.file.received",
        "",
    ]
)


@st.composite
def sound_zalo_update(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed private text or picture from one of a few people, bare or wrapped."""
    person = draw(st.sampled_from([*ZALO_PEOPLE, "z-5003"]))
    picture = draw(st.integers(0, 9)) == 0
    message: dict[str, Any] = {
        "from": {"id": person, "display_name": draw(st.sampled_from(["Lan", "<b>Lan</b>"]))},
        "chat": {"id": person, "chat_type": "PRIVATE"},
        "message_id": FRESH,
        "date": 0,
        "caption" if picture else "text": draw(texts),
    }
    if picture:
        message["photo_url"] = "https://photos.example/a.jpg"
    update = {
        "event_name": "message.image.received" if picture else "message.text.received",
        "message": message,
    }
    return {"ok": True, "result": update} if draw(st.booleans()) else update


def zalo_update() -> st.SearchStrategy[dict[str, Any] | bytes]:
    """Sound updates, three times as often as hostile ones."""
    sound = sound_zalo_update()
    return st.one_of(sound, sound, sound, hostile_zalo_update())


@st.composite
def hostile_zalo_update(draw: st.DrawFn) -> Any:  # an object, bytes or any JSON value
    shape = draw(st.sampled_from(["wrapped"] * 4 + ["bare"] * 4 + ["junk", "bytes"]))
    if shape == "bytes":
        return draw(st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"{", b"[1]"])))
    if shape == "junk":
        return {"ok": True, "result": draw(junk)} if draw(st.booleans()) else draw(junk)
    person = draw(zalo_ids)
    message = draw(
        st.fixed_dictionaries(
            {"message_id": st.one_of(st.just(FRESH), st.just(FRESH), st.just(FRESH), junk)},
            optional={
                "from": mostly(
                    st.fixed_dictionaries(
                        {"id": mostly(st.just(person))},
                        optional={
                            "display_name": mostly(texts),
                            "is_bot": mostly(st.booleans()),
                        },
                    )
                ),
                "chat": mostly(
                    st.fixed_dictionaries(
                        {"id": mostly(st.one_of(st.just(person), zalo_ids))},
                        optional={"chat_type": mostly(st.sampled_from(["PRIVATE", "GROUP"]))},
                    )
                ),
                "text": mostly(texts),
                "caption": mostly(texts),
                "photo_url": mostly(
                    st.sampled_from(["https://photos.example/a.jpg", "javascript:x", ""])
                ),
                "date": mostly(st.integers(0, 2**45)),
            },
        )
    )
    update = draw(
        st.fixed_dictionaries(
            {"message": mostly(st.just(message))}, optional={"event_name": mostly(zalo_events)}
        )
    )
    return {"ok": True, "result": update} if shape == "wrapped" else update


@st.composite
def oa_event(draw: st.DrawFn) -> Any:  # an object, bytes or any JSON value
    shape = draw(
        st.sampled_from(["message"] * 6 + ["follow", "unfollow", "receipt", "junk", "bytes"])
    )
    if shape == "bytes":
        return draw(st.binary(max_size=64))
    if shape == "junk":
        return draw(junk)
    person = draw(st.one_of(st.sampled_from(ZALO_PEOPLE), zalo_ids))
    event: dict[str, Any] = {
        "app_id": "fuzz",
        "timestamp": draw(mostly(st.integers(0, 2**45).map(str))),
    }
    if shape in ("follow", "unfollow"):
        event["event_name"] = shape
        event["follower"] = draw(mostly(st.fixed_dictionaries({"id": mostly(st.just(person))})))
        return event
    event["event_name"] = draw(
        mostly(
            st.sampled_from(
                ["user_send_text"] * 4
                + ["user_send_image", "user_send_file", "user_send_sticker", "user_seen_message"]
            )
            if shape == "message"
            else st.sampled_from(["user_received_message", "oa_send_text"])
        )
    )
    event["sender"] = draw(mostly(st.fixed_dictionaries({"id": mostly(st.just(person))})))
    attachment = st.fixed_dictionaries(
        {
            "payload": mostly(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "url": mostly(st.sampled_from(["https://files.example/a.pdf", ""])),
                        "size": mostly(st.integers(0, 10**10).map(str)),
                        "name": mostly(texts),
                    },
                )
            )
        }
    )
    event["message"] = draw(
        mostly(
            st.fixed_dictionaries(
                {"msg_id": st.one_of(st.just(FRESH), st.just(FRESH), junk)},
                optional={
                    "text": mostly(texts),
                    "attachments": mostly(st.lists(attachment, max_size=2)),
                },
            )
        )
    )
    return event


def _fill(value: Any) -> Any:
    """Replace the FRESH markers with new ids, so that most updates are new to the bot."""
    if value == FRESH:
        return next(_fresh)
    if isinstance(value, dict):
        return {key: _fill(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item) for item in value]
    return value


# --- running the examples against the bot ---------------------------------------------------


class Sender:
    """Send examples from Hypothesis's thread to the bot on the event loop; count the answers."""

    def __init__(self, bot: ZaloBot, loop: asyncio.AbstractEventLoop) -> None:
        self.bot = bot
        self.loop = loop
        self.statuses: Counter[int] = Counter()
        self.sent = 0

    def post(
        self, path: str, updates: list[Any], headers: Callable[[bytes], dict[str, str]]
    ) -> list[int]:
        """POST updates at once from Hypothesis's thread; return their statuses in order."""

        async def post_all() -> list[int]:
            return list(await asyncio.gather(*(self._post(path, u, headers) for u in updates)))

        future: Future[list[int]] = asyncio.run_coroutine_threadsafe(post_all(), self.loop)
        statuses = future.result(timeout=120)
        self.statuses.update(statuses)
        self.sent += len(statuses)
        return statuses

    async def _post(
        self, path: str, update: Any, headers: Callable[[bytes], dict[str, str]]
    ) -> int:
        # Filled in here, on the bot's loop, where the buttons sent so far can be read.
        body = update if isinstance(update, bytes) else self._body(update)
        url = self.bot.url(path)
        async with self.bot.http.post(url, data=body, headers=headers(body)) as response:
            return response.status

    def _body(self, update: Any) -> bytes:
        update = _fill(update)
        query = update.get("callback_query") if isinstance(update, dict) else None
        if isinstance(query, dict) and isinstance(query.get("data"), tuple):
            _, n = query["data"]
            person = query["from"]["id"]
            shown = [m for m in self.bot.telegram_api.messages_to(person) if m.buttons]
            if shown:
                buttons = [b for row in shown[-1].buttons for b in row]
                query["data"] = buttons[n % len(buttons)]["callback_data"]
                query["message"]["message_id"] = shown[-1].message_id
            else:
                query["data"] = "c:none:x"
        return json.dumps(update, ensure_ascii=False).encode()


def _run(
    examples: int, strategy: st.SearchStrategy[Any], send: Callable[[list[Any]], list[int]]
) -> None:
    """Send `examples` updates, in batches of BATCH sent at once (as a busy webhook gets them)."""

    @settings(
        max_examples=examples // BATCH,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def check(updates: list[Any]) -> None:
        for update, status in zip(updates, send(updates), strict=True):
            assert status < 500, f"webhook answered {status} to {str(update)[:500]}"

    check()


async def _all_handled(sessions: SessionFactory, within: float = 120.0) -> None:
    """Wait until the bot has handled (or set aside) every update it stored."""
    deadline = time.monotonic() + within
    while True:
        async with sessions() as session:
            left = (
                await session.scalars(
                    select(InboundUpdate.update_key).where(InboundUpdate.processed_at.is_(None))
                )
            ).all()
        if not left:
            return
        assert time.monotonic() < deadline, f"{len(left)} updates never handled: {left[:5]}"
        await asyncio.sleep(0.1)  # the bot is still answering in the background


async def test_thousands_of_hostile_updates_never_break_the_bot(
    database_url: str,
    clock: ManualClock,
    org: dict[str, int],
    sessions: SessionFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        await add_campaign(session, root)
        # The Zalo side's officer and member are the Telegram ones, linked.
        for person, telegram_id in zip(ZALO_PEOPLE[:2], (9001, 1001), strict=True):
            linked = await session.scalar(
                select(ChannelAccount).where(ChannelAccount.external_id == str(telegram_id))
            )
            assert linked is not None
            session.add(
                ChannelAccount(
                    channel="zalo",
                    external_id=person,
                    chat_id=person,
                    member_id=linked.member_id,
                    display_name=person,
                    reachable=True,
                    last_seen_at=T0,
                    created_at=T0,
                )
            )

    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    telegram_examples, zalo_examples, oa_examples = EXAMPLES[backend]
    started = time.monotonic()
    # Sends are not held to Telegram's 30 a second: the test is about what the bot survives.
    async with running_zalo_bot(database_url, clock, telegram_rate_limit=1000) as bot:
        loop = asyncio.get_running_loop()
        sender = Sender(bot, loop)
        telegram_headers = {TELEGRAM_SECRET_HEADER: TELEGRAM_SECRET}
        zalo_headers = {"X-Bot-Api-Secret-Token": "zalo-webhook-secret-for-tests"}
        stamp = "1700000000000"

        def oa_headers(body: bytes) -> dict[str, str]:
            return {"X-ZEvent-Signature": bot.oa.sign(body, stamp), "timestamp": stamp}

        with caplog.at_level(logging.ERROR):
            # Zalo first: the bot answers on Zalo at most 20 messages a second (its own limit),
            # and works through them while the Telegram examples are sent.
            await asyncio.to_thread(
                _run,
                zalo_examples,
                zalo_update(),
                lambda u: sender.post(ZALO_WEBHOOK_PATH, u, lambda _b: zalo_headers),
            )
            await asyncio.to_thread(
                _run,
                oa_examples,
                oa_event(),
                lambda u: sender.post(ZALO_OA_WEBHOOK_PATH, u, oa_headers),
            )
            await asyncio.to_thread(
                _run,
                telegram_examples,
                telegram_update(),
                lambda u: sender.post(TELEGRAM_WEBHOOK_PATH, u, lambda _b: telegram_headers),
            )
            posted = time.monotonic() - started
            await _all_handled(sessions)
            fuzzed = time.monotonic() - started

            # Nobody is left in a conversation that /huy does not end.
            async with sessions() as session:
                stuck = (
                    await session.execute(
                        select(ChannelAccount.channel, ChannelAccount.external_id)
                        .join(Conversation, Conversation.account_id == ChannelAccount.id)
                        .where(Conversation.flow.is_not(None))
                    )
                ).all()
            telegram = bot.telegram
            for channel, external_id in stuck:
                if channel == "telegram":
                    answers = await telegram.user(int(external_id), "X").send("/huy")
                    assert answers, f"no answer to /huy for {external_id}"
                elif channel == "zalo":
                    await bot.zalo_user(external_id, "X").send("/huy")
                else:
                    await bot.oa_user(external_id).send("/huy")
            async with sessions() as session:
                still = (
                    await session.scalars(
                        select(Conversation.flow).where(Conversation.flow.is_not(None))
                    )
                ).all()
            assert still == []

            # A real member is still answered, correctly, on both messengers.
            profile = await telegram.user(1001, "Lan").send("/toi")
            # (Answers to the fuzz's last messages may arrive meanwhile: look among them all.)
            assert any("👤 Nguyễn Thị Lan\nĐơn vị" in m.text for m in profile), profile
            zalo_profile = await bot.zalo_user("z-member", "Lan").send("/toi")
            assert any("👤 Nguyễn Thị Lan\nĐơn vị" in m.text for m in zalo_profile), zalo_profile
            joining = await telegram.user(6001, "Hoa").send("/start")
            assert joining, "a newcomer got no answer"

        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [(r.getMessage(), (r.exc_text or "")[-900:]) for r in errors[:10]]
        assert not sender.statuses.keys() - {200, 400, 403}, sender.statuses
        assert sender.sent == sum(EXAMPLES[backend]), sender.sent
    print(
        f"\nfuzz: {sender.sent} updates sent ({telegram_examples} Telegram, {zalo_examples} Zalo "
        f"bot, {oa_examples} Zalo OA), statuses {dict(sender.statuses)}, "
        f"{len(stuck)} conversations ended with /huy; posted in {posted:.1f} s, "
        f"all handled after {fuzzed:.1f} s"
    )


def test_the_generators_make_the_updates_they_promise() -> None:
    """The strategies produce message and button updates a handler acts on, not only junk."""
    kinds: Counter[str] = Counter()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(telegram_update())
    def look(update: Any) -> None:
        if isinstance(update, dict):
            message = update.get("message")
            if isinstance(message, dict) and isinstance(message.get("text"), str):
                kinds["text"] += 1
            if isinstance(update.get("callback_query"), dict):
                kinds["press"] += 1
        else:
            kinds["bytes"] += 1

    look()
    assert kinds["text"] > 50, kinds
    assert kinds["press"] > 30, kinds
    assert kinds["bytes"] > 5, kinds

"""The dispatcher on its own: failures, numbered menus and at-most-once handling."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select

from handlers.context import Context, Services
from handlers.dispatcher import Dispatcher
from handlers.routing import Command, Routes, build_routes
from handlers.types import ChannelTraits, Incoming
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import InboundUpdate, Member
from tests.builders import core_services, ninh_thuan_tree

TRAITS = {
    "buttons": ChannelTraits("buttons", buttons=True, text_limit=4096),
    "plain": ChannelTraits("plain", buttons=False, text_limit=2000),
}


def _services(sessions: SessionFactory, clock: ManualClock) -> Services:
    return core_services(sessions, clock, TRAITS)


def _message(text: str, key: str, channel: str = "plain", user: str = "u1") -> Incoming:
    return Incoming(channel=channel, user_id=user, chat_id=user, update_key=key, text=text)


async def _explode(ctx: Context) -> None:
    raise RuntimeError("the database of wonders is on fire")


async def test_a_failing_handler_apologises_with_a_reference_and_others_carry_on(
    sessions: SessionFactory, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    routes = build_routes()
    routes = Routes(
        commands={**routes.commands, "boom": Command(_explode)},
        flows=routes.flows,
        actions=routes.actions,
    )
    dispatcher = Dispatcher(_services(sessions, clock), routes)

    with caplog.at_level(logging.ERROR):
        outcome = await dispatcher.handle(_message("/boom", "1"))
    apology = outcome.replies[0].text
    ref = re.search(r"Mã tham chiếu: ([0-9A-F]{8})", apology)
    assert ref is not None
    assert any(ref.group(1) in r.getMessage() and r.exc_info for r in caplog.records)

    async with sessions() as session:
        row = await session.scalar(select(InboundUpdate).where(InboundUpdate.update_key == "1"))
    assert row is not None
    assert row.error_ref == ref.group(1)

    later = await dispatcher.handle(_message("/help", "2", user="u2"))
    assert "/start" in later.replies[0].text


async def test_numbers_answer_menus_on_channels_without_buttons(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    async with sessions() as session, session.begin():
        await ninh_thuan_tree(session)
    dispatcher = Dispatcher(_services(sessions, clock), build_routes())
    await dispatcher.handle(_message("/start", "1"))
    found = await dispatcher.handle(_message("cong ty", "2"))
    labels = [c.label for c in found.replies[-1].choices]
    number = next(i for i, label in enumerate(labels, 1) if "May" in label)
    chosen = await dispatcher.handle(_message(f"{number}", "3"))
    assert "Công ty TNHH May Ninh Thuận" in chosen.replies[0].text
    await dispatcher.handle(_message("Lê Văn Tâm", "4"))
    # The words of an option work as well as its number.
    declined = await dispatcher.handle(_message("không đồng ý", "5"))
    assert "chưa đồng ý" in declined.replies[-1].text
    async with sessions() as session:
        assert await session.scalar(select(Member)) is None


async def test_a_number_without_a_menu_is_just_text(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    dispatcher = Dispatcher(_services(sessions, clock), build_routes())
    outcome = await dispatcher.handle(_message("1", "1"))
    assert "/start" in outcome.replies[0].text


async def test_an_update_key_is_handled_once(sessions: SessionFactory, clock: ManualClock) -> None:
    dispatcher = Dispatcher(_services(sessions, clock), build_routes())
    first = await dispatcher.handle(_message("/help", "same", channel="buttons"))
    second = await dispatcher.handle(_message("/help", "same", channel="buttons"))
    assert first.replies
    assert second.replies == []


async def _offer_then_enter(ctx: Context) -> None:
    choice = ctx.choice("Tiếp", "next")  # built before the step changes
    ctx.enter("probe", "first")
    ctx.reply("?", [choice])


async def _probe(ctx: Context) -> None:
    ctx.reply(f"pressed {ctx.pressed}")


async def test_choices_carry_the_nonce_of_the_step_the_message_ends_in(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    routes = build_routes()
    routes = Routes(
        commands={**routes.commands, "probe": Command(_offer_then_enter)},
        flows={**routes.flows, "probe": _probe},
        actions=routes.actions,
    )
    dispatcher = Dispatcher(_services(sessions, clock), routes)
    offered = await dispatcher.handle(_message("/probe", "1", channel="buttons"))
    data = offered.replies[0].choices[0].data
    pressed = await dispatcher.handle(
        Incoming(channel="buttons", user_id="u1", chat_id="u1", update_key="2", choice=data)
    )
    assert pressed.replies[0].text == "pressed next"
    assert pressed.choice_accepted

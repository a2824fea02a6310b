"""Turn Telegram updates into neutral messages and neutral replies into Telegram markup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers.types import Attachment, Choice, Incoming

CHANNEL = "telegram"
# Labels up to this length sit two to a row; longer ones get a row each.
_SHORT_LABEL = 18


class UnreadableUpdateError(ValueError):
    """An update whose JSON does not have the shape the Bot API documents."""


@dataclass(frozen=True, slots=True)
class Received:
    """An update as the channel acts on it: the neutral message, and where a press came from."""

    incoming: Incoming
    callback_query_id: str | None = None  # a button press, to be answered
    # (chat id, message id) of the message whose button was pressed, if Telegram sent it.
    pressed_on: tuple[int, int] | None = None


def read_update(update: Mapping[str, Any]) -> Received | None:
    """Read an update's JSON: a private message or a button press, else None (ignored).

    Reads the JSON itself rather than python-telegram-bot's objects: building those for every
    update cost more CPU than the rest of receiving it. Raises UnreadableUpdateError when a
    part the bot reads is missing or of the wrong type.
    """
    try:
        return _read(update)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UnreadableUpdateError(f"{type(error).__name__}: {error}") from error


def _read(update: Mapping[str, Any]) -> Received | None:
    key = str(_integer(update["update_id"]))
    query = update.get("callback_query")
    if query is not None:
        sender = query["from"]
        data = query.get("data")
        if data is None:
            return None
        message = query.get("message")
        pressed_on = (
            (_integer(message["chat"]["id"]), _integer(message["message_id"]))
            if message is not None
            else None
        )
        incoming = Incoming(
            channel=CHANNEL,
            user_id=str(_integer(sender["id"])),
            chat_id=str(pressed_on[0] if pressed_on is not None else _integer(sender["id"])),
            update_key=key,
            choice=_string(data),
            display_name=_full_name(sender),
        )
        return Received(incoming, callback_query_id=str(query["id"]), pressed_on=pressed_on)
    message = update.get("message")
    if message is None:
        return None
    sender = message.get("from")
    chat = message["chat"]
    if sender is None or chat["type"] != "private":
        return None
    attachments: list[Attachment] = []
    if message.get("photo"):
        largest = message["photo"][-1]
        attachments.append(
            Attachment(
                "photo",
                _string(largest["file_id"]),
                size=_optional_integer(largest.get("file_size")),
            )
        )
    document = message.get("document")
    if document is not None:
        attachments.append(
            Attachment(
                "document",
                _string(document["file_id"]),
                name=_optional_string(document.get("file_name")),
                mime_type=_optional_string(document.get("mime_type")),
                size=_optional_integer(document.get("file_size")),
            )
        )
    text = message.get("text") or message.get("caption")
    return Received(
        Incoming(
            channel=CHANNEL,
            user_id=str(_integer(sender["id"])),
            chat_id=str(_integer(chat["id"])),
            update_key=key,
            text=_optional_string(text),
            attachments=tuple(attachments),
            display_name=_full_name(sender),
        )
    )


def _integer(value: object) -> int:
    # Telegram's ids fit in 52 bits; the database keeps them as text of at most 64 characters.
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
        raise TypeError(f"expected an integer, got {str(value)[:40]}")
    return value


def _optional_integer(value: object) -> int | None:
    return None if value is None else _integer(value)


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a text, got {str(value)[:40]}")
    return value


def _optional_string(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a text, got {str(value)[:40]}")
    return value


def _full_name(user: Mapping[str, Any]) -> str:
    """A user's name as python-telegram-bot's `User.full_name` gives it."""
    first, last = str(user["first_name"]), user.get("last_name")
    return f"{first} {last}" if last else first


def keyboard(choices: tuple[Choice, ...]) -> InlineKeyboardMarkup | None:
    """Lay out choices as an inline keyboard: short labels in pairs, long ones alone."""
    if not choices:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    pair: list[InlineKeyboardButton] = []
    for choice in choices:
        button = InlineKeyboardButton(choice.label, callback_data=choice.data)
        if len(choice.label) > _SHORT_LABEL:
            if pair:
                rows.append(pair)
                pair = []
            rows.append([button])
            continue
        pair.append(button)
        if len(pair) == 2:
            rows.append(pair)
            pair = []
    if pair:
        rows.append(pair)
    return InlineKeyboardMarkup(rows)

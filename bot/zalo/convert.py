"""Turn Zalo's payloads into neutral messages, and neutral replies into Zalo's plain texts.

Zalo has no buttons: choices are a numbered list, and the member answers with the number or
the words (the dispatcher reads them back from the conversation's remembered menu).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.channels import split_text
from handlers.i18n import Catalogue
from handlers.types import Attachment, Incoming, Reply

BOT_CHANNEL = "zalo"
OA_CHANNEL = "zalo_oa"
# sendMessage and the OA's consultation text message both take at most 2,000 characters.
TEXT_LIMIT = 2000

# What the adapter does with an event: hand it to the core, say it cannot be read, or note
# that the person left.
EventKind = Literal["message", "unreadable", "unfollow"]


class MalformedUpdateError(ValueError):
    """A webhook body that is not an update we can key and store."""


@dataclass(frozen=True, slots=True)
class ZaloEvent:
    """One event of either Zalo channel, as the adapter acts on it."""

    kind: EventKind
    incoming: Incoming


# --- Zalo Bot API -------------------------------------------------------------------------

BOT_TEXT = "message.text.received"
BOT_IMAGE = "message.image.received"
BOT_STICKER = "message.sticker.received"
BOT_UNSUPPORTED = "message.unsupported.received"


def unwrap_bot_update(payload: object) -> dict[str, Any]:
    """Return the update itself, whether it came wrapped in {"ok": true, "result": ...} or bare.

    Raises MalformedUpdateError when there is no message with an id to key it by.
    """
    update = payload
    if isinstance(update, dict) and "result" in update and "event_name" not in update:
        update = update["result"]
    if not isinstance(update, dict):
        raise MalformedUpdateError("not an update")
    message = update.get("message")
    if not isinstance(message, dict) or not _text_id(message.get("message_id")):
        raise MalformedUpdateError("no message_id")
    return update


def bot_update_key(update: dict[str, Any]) -> str:
    """The key a Bot API update is stored and handled once under: its message id."""
    return _text_id(update["message"]["message_id"])


def bot_event(update: dict[str, Any]) -> ZaloEvent | None:
    """Read a Bot API update; None for what the bot leaves alone (groups, other bots)."""
    message = update["message"]
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
    user_id = _text_id(sender.get("id")) or _text_id(chat.get("id"))
    chat_id = _text_id(chat.get("id")) or user_id
    if not user_id or sender.get("is_bot") is True:
        return None
    if str(chat.get("chat_type") or "PRIVATE").upper() != "PRIVATE":
        return None
    name = sender.get("display_name") or sender.get("name") or sender.get("first_name")
    base = Incoming(
        channel=BOT_CHANNEL,
        user_id=user_id,
        chat_id=chat_id,
        update_key=bot_update_key(update),
        display_name=str(name) if name else None,
    )
    event = update.get("event_name")
    if event == BOT_TEXT:
        return ZaloEvent("message", _with(base, text=_text(message.get("text"))))
    if event == BOT_IMAGE:
        url = message.get("photo_url") or message.get("photo") or message.get("url")
        attachments = (Attachment("photo", str(url)),) if isinstance(url, str) and url else ()
        return ZaloEvent(
            "message", _with(base, text=_text(message.get("caption")), attachments=attachments)
        )
    # Stickers, voice and whatever Zalo calls unsupported: the bot cannot read them.
    return ZaloEvent("unreadable", base)


# --- Zalo Official Account API v3 ---------------------------------------------------------

OA_MESSAGE_PREFIX = "user_send_"
OA_TEXT = "user_send_text"
OA_IMAGE = "user_send_image"
OA_FILE = "user_send_file"
OA_FOLLOW = "follow"
OA_UNFOLLOW = "unfollow"


def oa_update_key(payload: object) -> str | None:
    """The key an OA event is stored under, or None for events the bot does not act on
    (delivery and seen receipts, the OA's own messages).

    Raises MalformedUpdateError for an event the bot acts on that cannot be keyed.
    """
    if not isinstance(payload, dict):
        raise MalformedUpdateError("not an event")
    event = payload.get("event_name")
    if not isinstance(event, str):
        raise MalformedUpdateError("no event_name")
    if event in (OA_FOLLOW, OA_UNFOLLOW):
        follower = _text_id(_dict(payload.get("follower")).get("id"))
        if not follower:
            raise MalformedUpdateError("no follower")
        return f"{event}:{follower}:{_text_id(payload.get('timestamp'))}"
    if not event.startswith(OA_MESSAGE_PREFIX):
        return None
    message_id = _text_id(_dict(payload.get("message")).get("msg_id"))
    if not message_id or not _text_id(_dict(payload.get("sender")).get("id")):
        raise MalformedUpdateError("no msg_id or sender")
    return message_id[:64]


def oa_event(payload: dict[str, Any]) -> ZaloEvent | None:
    """Read an OA event the bot acts on (see oa_update_key)."""
    key = oa_update_key(payload)
    if key is None:
        return None
    event = payload["event_name"]
    if event in (OA_FOLLOW, OA_UNFOLLOW):
        user_id = _text_id(payload["follower"]["id"])
        base = Incoming(channel=OA_CHANNEL, user_id=user_id, chat_id=user_id, update_key=key)
        if event == OA_UNFOLLOW:
            return ZaloEvent("unfollow", base)
        # Following the OA is how people arrive: it is answered as if they typed /start.
        return ZaloEvent("message", _with(base, text="/start"))
    user_id = _text_id(payload["sender"]["id"])
    message = _dict(payload.get("message"))
    base = Incoming(channel=OA_CHANNEL, user_id=user_id, chat_id=user_id, update_key=key)
    if event == OA_TEXT:
        return ZaloEvent("message", _with(base, text=_text(message.get("text"))))
    if event in (OA_IMAGE, OA_FILE):
        attachments = tuple(_oa_attachments(message, "photo" if event == OA_IMAGE else "document"))
        return ZaloEvent(
            "message", _with(base, text=_text(message.get("text")), attachments=attachments)
        )
    return ZaloEvent("unreadable", base)


def _oa_attachments(
    message: dict[str, Any], kind: Literal["photo", "document"]
) -> list[Attachment]:
    found: list[Attachment] = []
    for raw in message.get("attachments") or []:
        payload = _dict(_dict(raw).get("payload"))
        url = payload.get("url")
        if not isinstance(url, str) or not url:
            continue
        size = str(payload.get("size") or "")
        found.append(
            Attachment(
                kind,
                url,
                name=str(payload["name"]) if payload.get("name") else None,
                size=int(size) if size.isdigit() else None,
            )
        )
    return found


# --- replies ------------------------------------------------------------------------------


def render(reply: Reply, texts: Catalogue) -> list[str]:
    """The texts of a reply as Zalo shows them: choices numbered, split to Zalo's limit."""
    text = reply.text
    if reply.choices:
        lines = [f"{number}. {choice.label}" for number, choice in enumerate(reply.choices, 1)]
        text = "\n".join([text, "", *lines, "", texts("zalo.choose_by_number")])
    return split_text(text, TEXT_LIMIT)


def calls(reply: Reply, texts: Catalogue) -> list[tuple[Literal["text", "photo"], str]]:
    """The sends a reply takes on Zalo, in order: its texts, then its files.

    A picture given by URL is sent as a picture; another file by URL as a link. A file that
    another messenger keeps by its own id (a photo sent from Telegram) cannot be sent on Zalo:
    the member is told where to find it.
    """
    sends: list[tuple[Literal["text", "photo"], str]] = [
        ("text", part) for part in render(reply, texts)
    ]
    for attachment in reply.attachments:
        name = attachment.name or texts(f"zalo.attachment_{attachment.kind}")
        if not is_url(attachment.file_ref):
            sends.append(("text", texts("zalo.attachment_elsewhere", name=name)))
        elif attachment.kind == "photo":
            sends.append(("photo", attachment.file_ref))
        else:
            sends.append(
                ("text", texts("zalo.attachment_link", name=name, url=attachment.file_ref))
            )
    return sends


def is_url(file_ref: str) -> bool:
    """Zalo sends pictures by URL; a file another messenger keeps by id cannot be sent."""
    return file_ref.startswith(("https://", "http://"))


# --- helpers ------------------------------------------------------------------------------


def _with(base: Incoming, **changes: Any) -> Incoming:
    return replace(base, **changes)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _text_id(value: object) -> str:
    """An id as text: Zalo sends ids as strings, some samples as numbers."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | str):
        return str(value)[:64]
    return ""

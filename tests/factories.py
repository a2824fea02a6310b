"""Factories for Telegram updates and users, as the Bot API would send them."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

_update_ids = itertools.count(500_000)
_message_ids = itertools.count(1)


@dataclass(frozen=True)
class TgUser:
    """A Telegram user; in a private chat the chat id equals the user id."""

    id: int
    first_name: str
    last_name: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            body["last_name"] = self.last_name
        return body


def message_update(user: TgUser, text: str, *, update_id: int | None = None) -> dict[str, Any]:
    """Build an update carrying a private text message from `user`."""
    return {
        "update_id": update_id if update_id is not None else next(_update_ids),
        "message": {
            "message_id": next(_message_ids),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_json(),
            "text": text,
        },
    }


def callback_update(
    user: TgUser, data: str, *, message_id: int = 1, update_id: int | None = None
) -> dict[str, Any]:
    """Build an update carrying a press of an inline button under a bot message."""
    return {
        "update_id": update_id if update_id is not None else next(_update_ids),
        "callback_query": {
            "id": str(next(_update_ids)),
            "from": user.as_json(),
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": user.id, "type": "private"},
                "from": {"id": 1, "is_bot": True, "first_name": "bot"},
                "text": "…",
            },
        },
    }


def photo_update(
    user: TgUser, file_id: str, *, caption: str = "", size: int = 183_000
) -> dict[str, Any]:
    """Build an update carrying a photo, in the sizes Telegram sends (largest last)."""
    update = message_update(user, "")
    message = update["message"]
    del message["text"]
    if caption:
        message["caption"] = caption
    message["photo"] = [
        {"file_id": f"{file_id}-small", "file_unique_id": "u-small", "width": 90, "height": 67},
        {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "width": 1280,
            "height": 960,
            "file_size": size,
        },
    ]
    return update


def document_update(
    user: TgUser, file_id: str, name: str, mime_type: str, *, size: int = 250_000
) -> dict[str, Any]:
    """Build an update carrying a document (a file sent as a file)."""
    update = message_update(user, "")
    message = update["message"]
    del message["text"]
    message["document"] = {
        "file_id": file_id,
        "file_unique_id": f"u-{file_id}",
        "file_name": name,
        "mime_type": mime_type,
        "file_size": size,
    }
    return update

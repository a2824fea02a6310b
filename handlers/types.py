"""Neutral messages: what adapters hand to the core and what the core answers."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

AttachmentKind = Literal["photo", "document"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file as the channel refers to it; the bytes stay on the messenger's servers.

    A file the bot made itself (a report, a chart) carries its bytes in `content` instead,
    with an empty `file_ref`: the channel uploads it under `name`.
    """

    kind: AttachmentKind
    file_ref: str
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    content: bytes | None = field(default=None, repr=False)

    @classmethod
    def generated(
        cls, kind: AttachmentKind, name: str, content: bytes, mime_type: str | None = None
    ) -> Attachment:
        """A file made by the bot, sent from memory."""
        return cls(kind, "", name=name, mime_type=mime_type, size=len(content), content=content)

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "kind": self.kind,
            "file_ref": self.file_ref,
            "name": self.name,
            "mime_type": self.mime_type,
            "size": self.size,
        }
        if self.content is not None:
            raw["content"] = base64.b64encode(self.content).decode("ascii")
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Attachment:
        content = raw.get("content")
        return cls(
            kind=raw["kind"],
            file_ref=raw["file_ref"],
            name=raw.get("name"),
            mime_type=raw.get("mime_type"),
            size=raw.get("size"),
            content=base64.b64decode(content) if content is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message or button press from a user, whatever channel it came by."""

    channel: str
    user_id: str
    chat_id: str
    update_key: str
    text: str | None = None
    # The data of a pressed choice; None for typed messages.
    choice: str | None = None
    attachments: tuple[Attachment, ...] = ()
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One option offered to the user: a button, or a numbered line where there are none."""

    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One message the bot sends back."""

    text: str
    choices: tuple[Choice, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "choices": [[c.label, c.data] for c in self.choices],
            "attachments": [a.to_dict() for a in self.attachments],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Reply:
        return cls(
            text=raw["text"],
            choices=tuple(Choice(label, data) for label, data in raw.get("choices", [])),
            attachments=tuple(Attachment.from_dict(a) for a in raw.get("attachments", [])),
        )


@dataclass(frozen=True, slots=True)
class ChannelTraits:
    """What a channel can show; the core adapts its answers to it."""

    name: str
    buttons: bool
    text_limit: int


@dataclass(slots=True)
class Outcome:
    """The core's answer to one incoming message."""

    replies: list[Reply] = field(default_factory=list)
    # A short note for the pressed button's toast (Telegram's answerCallbackQuery).
    choice_notice: str | None = None
    # Whether the pressed choice was accepted; adapters remove spent buttons.
    choice_accepted: bool = False
    # Outbox rows were queued; the delivery service should look.
    queued_notifications: bool = False
    # Outbox rows journaling the last len(journal_ids) replies, in order: the channel
    # finishes them once sent (storage.outbox.ReplyJournal).
    journal_ids: list[int] = field(default_factory=list)

"""What the delivery service needs of a messenger channel."""

from __future__ import annotations

from typing import Protocol

from handlers.types import ChannelTraits, Reply


class DeliveryError(Exception):
    """A message could not be pushed."""


class UnreachableError(DeliveryError):
    """The user blocked the bot, left, or cannot be written to on this channel."""


class RetryLaterError(DeliveryError):
    """A passing failure (rate limit, network, server error); try again after `delay`."""

    def __init__(self, reason: str, delay: float = 5.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Channel(Protocol):
    """A messenger the bot can push messages to."""

    @property
    def traits(self) -> ChannelTraits: ...

    async def push(self, chat_id: str, reply: Reply) -> None:
        """Send one message to a chat; raise a DeliveryError when it cannot be sent."""
        ...


def split_text(text: str, limit: int) -> list[str]:
    """Split a text under `limit` characters a part, at paragraph, then line, then word breaks."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), 0) or max(window.rfind("\n"), 0) or window.rfind(" ")
        if cut <= limit // 4:  # no useful break: cut hard rather than emit slivers
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts

"""What the delivery service needs of a messenger channel."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from handlers.types import ChannelTraits, Reply


class DeliveryError(Exception):
    """A message could not be pushed; `parts_done` of its parts had gone out before."""

    parts_done: int = 0


class UnreachableError(DeliveryError):
    """The user blocked the bot, left, or cannot be written to on this channel."""


class OutsideWindowError(DeliveryError):
    """The channel no longer lets the bot write to this person until they write again (a
    Zalo OA consultation message more than 7 days after their last message)."""


class RetryLaterError(DeliveryError):
    """A passing failure (rate limit, network, server error); try again after `delay`."""

    def __init__(self, reason: str, delay: float = 5.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Channel(Protocol):
    """A messenger the bot can push messages to."""

    @property
    def traits(self) -> ChannelTraits: ...

    async def push(self, chat_id: str, reply: Reply, *, skip_parts: int = 0) -> None:
        """Send a message's parts after the first `skip_parts`; raise DeliveryError on failure."""
        ...


def push_window(channel: Channel) -> timedelta | None:
    """How long after a person's last message the channel still lets the bot push to them.

    A channel with such a rule declares it as a `push_window` attribute; the others have none.
    """
    window = getattr(channel, "push_window", None)
    return window if isinstance(window, timedelta) else None


def split_text(text: str, limit: int) -> list[str]:
    """Split a text into parts under `limit` characters: at a paragraph break if one is near
    the end of the window, else a line break, else a space, and only as a last resort mid-word."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = 0
        for separator in ("\n\n", "\n", " "):
            position = window.rfind(separator)
            # A break in the first quarter would leave a sliver of a part: look for a finer one.
            if position > limit // 4:
                cut = position
                break
        if cut == 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts

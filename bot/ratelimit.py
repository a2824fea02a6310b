"""Keep one channel's sends within its limits: overall, per chat, per group; pause on 429."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

# A chat's limiter can be forgotten once this many other chats were served since: by then
# far more than its interval has passed at any rate we allow.
_REMEMBERED_CHATS = 20_000


@dataclass(frozen=True, slots=True)
class Limits:
    """A messenger's published limits for bots."""

    per_second: float
    chat_per_second: float = 1.0
    # A pushed message split in parts, or two notices at once, may go out together.
    chat_burst: int = 3
    group_per_minute: float = 20.0


class ChannelLimiter:
    """Wait for a slot before each send; every sender of the channel shares one instance."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._overall = AsyncLimiter(limits.per_second, 1)
        # Pushed messages are paced a tenth of a second's worth at a time: with a whole
        # second's burst the senders race ahead, then stall together, and a broadcast ends
        # below the limit. Answers keep the burst: people write in bursts too.
        self._pushes = AsyncLimiter(limits.per_second / 10, 0.1)
        self._chats: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self._paused_until = 0.0

    async def acquire(self, chat_id: str, *, group: bool = False, per_chat: bool = True) -> None:
        """Return when a message may be sent to `chat_id` without breaking a limit.

        Answers to a person's own message skip the per-chat limit (`per_chat=False`): they
        come at the pace the person writes; pushed messages must keep to it.
        """
        if per_chat or group:
            await self._chat_limiter(chat_id, group).acquire()
        await self._wait_out_pause()
        if per_chat:
            await self._pushes.acquire()
        await self._overall.acquire()

    def pause(self, seconds: float) -> None:
        """Stop every send of the channel for `seconds` (the messenger's retry_after)."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    async def _wait_out_pause(self) -> None:
        # Sleep again if another 429 extended the pause meanwhile.
        while (remaining := self.paused_for) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)

    def _chat_limiter(self, chat_id: str, group: bool) -> AsyncLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            limiter = (
                AsyncLimiter(self.limits.group_per_minute, 60)
                if group
                else AsyncLimiter(
                    self.limits.chat_burst, self.limits.chat_burst / self.limits.chat_per_second
                )
            )
            self._chats[chat_id] = limiter
            if len(self._chats) > _REMEMBERED_CHATS:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return limiter

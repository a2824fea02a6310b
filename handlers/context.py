"""What a handler receives: long-lived services and the state of one incoming message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Choice, Incoming, Outcome, Reply
from storage import accounts, outbox
from storage import conversations as conversation_store
from storage.clock import Clock, QuietHours
from storage.engine import SessionFactory
from storage.models import ChannelAccount, Conversation, Member, MemberStatus

# What someone who is not an active member is told about where they stand.
_STANDING = {
    MemberStatus.PENDING: "join.still_pending",
    MemberStatus.REJECTED: "join.rejected_hint",
    MemberStatus.LEFT: "join.left_hint",
}

CHOICE_PREFIX = "c"
ACTION_PREFIX = "a"
# Stands for the conversation's nonce until the handler is done and the final step is known.
NONCE_PLACEHOLDER = "*"


class InviteLinks(Protocol):
    """Turn an invitation code into the links a newcomer can open."""

    def links(self, code: str) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Settings the conversations need, taken from the application settings."""

    timezone: ZoneInfo
    consent_version: str = "1"
    invite_default_uses: int = 50
    invite_default_days: int = 14
    run_time: time = time(8, 0)  # of reminders, phase runs and digests
    quiet: QuietHours | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """Long-lived collaborators, built once by the composition root."""

    sessions: SessionFactory
    clock: Clock
    texts: Catalogue
    config: CoreConfig
    channels: Mapping[str, ChannelTraits]
    invite_links: InviteLinks


@dataclass(slots=True)
class Context:
    """One incoming message being handled, inside its own database transaction."""

    services: Services
    session: AsyncSession
    incoming: Incoming
    now: datetime
    account: ChannelAccount
    conversation: Conversation
    member: Member | None
    # The value of the pressed choice, once the dispatcher has checked it.
    pressed: str | None = None
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def t(self) -> Catalogue:
        return self.services.texts

    @property
    def text(self) -> str:
        return self.incoming.text or ""

    @property
    def active_member(self) -> Member | None:
        member = self.member
        return member if member is not None and member.status == MemberStatus.ACTIVE else None

    @property
    def has_buttons(self) -> bool:
        """Tell whether the user's messenger shows choices as buttons (else numbered lines)."""
        traits = self.services.channels.get(self.incoming.channel)
        return traits is not None and traits.buttons

    def say_standing(self) -> None:
        """Tell someone who is not an active member where they stand and what they can do."""
        member = self.member
        key = "hint.not_member" if member is None else _STANDING.get(member.status)
        self.say(key or "hint.free_text")

    def reply(self, text: str, choices: Sequence[Choice] = ()) -> None:
        """Answer the user who wrote."""
        self.outcome.replies.append(Reply(text=text, choices=tuple(choices)))

    def say(self, key: str, /, choices: Sequence[Choice] = (), **fields: object) -> None:
        """Answer with a catalogue text."""
        self.reply(self.t(key, **fields), choices)

    def choice(self, label: str, value: str) -> Choice:
        """Offer a choice within the step the conversation ends this message in."""
        return Choice(label=label, data=f"{CHOICE_PREFIX}:{NONCE_PLACEHOLDER}:{value}")

    def enter(self, flow: str, step: str, **data: object) -> None:
        """Move to a step of a flow, keeping `data` for the next message."""
        conversation_store.enter(self.conversation, flow, step, dict(data), self.now)

    def goto(self, step: str, **updates: object) -> None:
        """Move to another step of the current flow, adding to its data."""
        flow = self.conversation.flow
        if flow is None:
            raise RuntimeError("goto outside a flow")
        conversation_store.enter(
            self.conversation, flow, step, {**self.conversation.data, **updates}, self.now
        )

    def leave(self) -> None:
        """End the current flow."""
        conversation_store.leave(self.conversation, self.now)

    async def notify(self, member_id: int, reply: Reply) -> bool:
        """Queue a message to another member; False when they have no reachable account."""
        account = await accounts.preferred(self.session, member_id)
        if account is None:
            return False
        outbox.enqueue(
            self.session,
            account_id=account.id,
            channel=account.channel,
            payload=reply.to_dict(),
            now=self.now,
        )
        self.outcome.queued_notifications = True
        return True

    @property
    def today(self) -> date:
        """The local calendar day it is now."""
        return self.now.astimezone(self.services.config.timezone).date()

    def local_time(self, moment: datetime) -> str:
        """Format a stored time as people read it: dd/mm/yyyy hh:mm, local."""
        return moment.astimezone(self.services.config.timezone).strftime("%d/%m/%Y %H:%M")

    def local_date(self, moment: datetime) -> str:
        return moment.astimezone(self.services.config.timezone).strftime("%d/%m/%Y")

    @staticmethod
    def day(value: date) -> str:
        """Format a calendar day the Vietnamese way: dd/mm/yyyy."""
        return value.strftime("%d/%m/%Y")

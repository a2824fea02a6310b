"""One-time codes that link a second messenger account to a member (/lienket), kept in app_state.

A code lives under `link:<code>` with its member and expiry; the member's latest code is
remembered under `link-member:<member id>` so a new code replaces the old one. Wrong codes
typed from an account are counted under `link-tries:<account id>`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage import app_state
from storage.models import AppState

# No 0/O, 1/I/L: read aloud or copied by hand without mistakes.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
VALID_FOR = timedelta(minutes=10)
MAX_WRONG = 5
WRONG_WINDOW = timedelta(minutes=10)


def _code_key(code: str) -> str:
    return f"link:{code}"


def _member_key(member_id: int) -> str:
    return f"link-member:{member_id}"


def _tries_key(account_id: int) -> str:
    return f"link-tries:{account_id}"


def normalise(text: str) -> str:
    """Read a typed code: case, spaces and dashes do not matter."""
    return "".join(ch for ch in text.upper() if ch not in " -_.")


async def _delete(session: AsyncSession, key: str) -> None:
    await session.execute(delete(AppState).where(AppState.key == key))


async def issue(session: AsyncSession, member_id: int, now: datetime) -> str:
    """Make a fresh code for a member, valid VALID_FOR; their previous code stops working."""
    previous = await app_state.get_locked(session, _member_key(member_id))
    if previous:
        await _delete(session, _code_key(previous))
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        value = json.dumps({"member": member_id, "expires": (now + VALID_FOR).isoformat()})
        if await app_state.put_if_missing(session, _code_key(code), value):
            break
    await app_state.put(session, _member_key(member_id), code)
    return code


async def holder(session: AsyncSession, code: str, now: datetime) -> int | None:
    """Return the member a valid code belongs to (the code locked), None if unknown or expired.

    An expired code is deleted.
    """
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    raw = await app_state.get_locked(session, _code_key(code))
    if raw is None:
        return None
    found = json.loads(raw)
    if datetime.fromisoformat(found["expires"]) <= now:
        await _delete(session, _code_key(code))
        return None
    return int(found["member"])


async def use(session: AsyncSession, code: str, member_id: int) -> None:
    """Delete a code once it has linked an account."""
    await _delete(session, _code_key(code))
    await _delete(session, _member_key(member_id))


@dataclass(frozen=True, slots=True)
class Tries:
    wrong: int
    since: datetime

    @property
    def until(self) -> datetime:
        return self.since + WRONG_WINDOW


async def blocked_until(session: AsyncSession, account_id: int, now: datetime) -> datetime | None:
    """Return until when an account may not try codes (too many wrong ones), None if it may."""
    tries = await _tries(session, account_id, now)
    if tries is not None and tries.wrong >= MAX_WRONG:
        return tries.until
    return None


async def record_wrong(session: AsyncSession, account_id: int, now: datetime) -> None:
    """Count a wrong code typed from an account; the count starts again after WRONG_WINDOW."""
    tries = await _tries(session, account_id, now) or Tries(0, now)
    value = json.dumps({"wrong": tries.wrong + 1, "since": tries.since.isoformat()})
    await app_state.put(session, _tries_key(account_id), value)


async def forget_wrong(session: AsyncSession, account_id: int) -> None:
    await _delete(session, _tries_key(account_id))


async def _tries(session: AsyncSession, account_id: int, now: datetime) -> Tries | None:
    raw = await app_state.get(session, _tries_key(account_id))
    if raw is None:
        return None
    found = json.loads(raw)
    tries = Tries(int(found["wrong"]), datetime.fromisoformat(found["since"]))
    return tries if tries.until > now else None

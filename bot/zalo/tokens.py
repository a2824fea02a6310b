"""The Zalo Official Account's access token, refreshed before it expires.

Zalo gives an access token (valid about 25 hours) with a refresh token that works once: each
refresh returns a new pair and the old refresh token is dead. So the pair lives in one
`app_state` row, replaced in the transaction that holds it while refreshing, and two refreshes
never run at once: within a process an asyncio lock, across processes the row itself (FOR
UPDATE on PostgreSQL; on SQLite each transaction holds the database). A process that waited
finds the new pair and uses it instead of refreshing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from storage import app_state
from storage.clock import Clock
from storage.engine import SessionFactory

log = logging.getLogger(__name__)

TOKENS_KEY = "zalo_oa.tokens"
# Refresh this long before the access token expires.
REFRESH_AHEAD = timedelta(hours=1)
# After a failed refresh, keep using the current token and try again after this long.
RETRY_AFTER = timedelta(minutes=5)
_OAUTH_TIMEOUT = 10.0


class OATokenError(Exception):
    """No usable access token: the refresh failed and there is no token to fall back on."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access token, the refresh token that comes with it, and when the first expires."""

    access_token: str
    refresh_token: str
    # None: unknown (a pair given in the settings); it is refreshed at first use.
    expires_at: datetime | None
    # Which pair of the settings this chain of refreshes started from (a fingerprint).
    seed: str

    def due(self, now: datetime) -> bool:
        return self.expires_at is None or now >= self.expires_at - REFRESH_AHEAD

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "seed": self.seed,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> TokenPair:
        data = json.loads(raw)
        expires = data.get("expires_at")
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            seed=str(data.get("seed") or ""),
        )


def fingerprint(refresh_token: str) -> str:
    """Tell pairs from the settings apart without storing more of them than needed."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:16]


class OATokens:
    """Hand out a valid access token, refreshing the stored pair when it is due."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        oauth_base_url: str,
        app_id: str,
        app_secret_key: str,
        access_token: str | None,
        refresh_token: str,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._url = f"{oauth_base_url.rstrip('/')}/v4/oa/access_token"
        self._app_id = app_id
        self._app_secret_key = app_secret_key
        self._seed = TokenPair(access_token or "", refresh_token, None, fingerprint(refresh_token))
        self._lock = asyncio.Lock()
        self._cached: TokenPair | None = None
        self._retry_at: datetime | None = None
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def load(self) -> None:
        """Store the pair from the settings unless the database holds a later one of its chain.

        New tokens in the settings (after authorizing the app again) replace the stored pair.
        """
        async with self._sessions() as session, session.begin():
            raw = await app_state.get_locked(session, TOKENS_KEY)
            stored = TokenPair.from_json(raw) if raw else None
            if stored is None:
                if not await app_state.put_if_missing(session, TOKENS_KEY, self._seed.to_json()):
                    raw = await app_state.get_locked(session, TOKENS_KEY)
                    stored = TokenPair.from_json(raw) if raw else None
            elif stored.seed != self._seed.seed:
                log.info("Zalo OA tokens from the settings replace the stored ones")
                await app_state.put(session, TOKENS_KEY, self._seed.to_json())
                stored = None
        self._cached = stored or self._seed

    async def access_token(self) -> str:
        """Return the access token, refreshed first if it expires within the hour."""
        pair = self._cached
        now = self._clock.now()
        if pair is None or (pair.due(now) and (self._retry_at is None or now >= self._retry_at)):
            pair = await self._renew(rejected=None)
        return pair.access_token

    async def refresh(self, rejected: str) -> str:
        """Zalo refused `rejected`: return a newer token, refreshing unless someone just did."""
        return (await self._renew(rejected=rejected)).access_token

    async def _renew(self, rejected: str | None) -> TokenPair:
        async with self._lock:
            try:
                pair = await self._renew_locked(rejected)
            except OATokenError:
                raise
            except Exception as error:
                fallback = self._cached
                self._retry_at = self._clock.now() + RETRY_AFTER
                if fallback is None or not fallback.access_token or rejected is not None:
                    raise OATokenError(f"refreshing the Zalo OA token failed: {error}") from None
                log.warning(
                    "refreshing the Zalo OA token failed (%s); using the current one", error
                )
                return fallback
            self._cached = pair
            self._retry_at = None
            return pair

    async def _renew_locked(self, rejected: str | None) -> TokenPair:
        now = self._clock.now()
        # One DB transaction holds the row from reading the pair to storing its successor.
        async with self._sessions() as session, session.begin():
            raw = await app_state.get_locked(session, TOKENS_KEY)
            if raw is None:
                raise OATokenError("no Zalo OA tokens stored; is ZALO_OA_REFRESH_TOKEN set?")
            stored = TokenPair.from_json(raw)
            if rejected is None and not stored.due(now):
                return stored  # another process refreshed while we waited
            if rejected is not None and stored.access_token != rejected:
                return stored
            fresh = await self._call_oauth(stored, now)
            await app_state.put(session, TOKENS_KEY, fresh.to_json())
        log.info("Zalo OA access token refreshed; valid until %s", fresh.expires_at)
        return fresh

    async def _call_oauth(self, stored: TokenPair, now: datetime) -> TokenPair:
        """Spend the refresh token on a new pair (POST /v4/oa/access_token)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        form = {
            "refresh_token": stored.refresh_token,
            "app_id": self._app_id,
            "grant_type": "refresh_token",
        }
        try:
            async with self._http.post(
                self._url,
                data=form,
                headers={"secret_key": self._app_secret_key},
                timeout=aiohttp.ClientTimeout(total=_OAUTH_TIMEOUT),
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise RuntimeError(f"Zalo OAuth unreachable ({type(error).__name__})") from None
        if not isinstance(body, dict) or not body.get("access_token"):
            detail = (
                body.get("error_description") or body.get("error") if isinstance(body, dict) else ""
            )
            raise RuntimeError(f"Zalo OAuth refused the refresh: {detail}")
        if not body.get("refresh_token"):
            raise RuntimeError("Zalo OAuth answered without a refresh token")
        try:
            lifetime = int(body.get("expires_in") or 0)
        except (TypeError, ValueError):
            lifetime = 0
        return TokenPair(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_at=now + timedelta(seconds=lifetime or 3600),
            seed=stored.seed,
        )

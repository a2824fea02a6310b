"""Logging set-up that never writes a bot token or another secret."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Bot API URLs carry the token in the path: /bot123456:ABC.../method.
_TOKEN_IN_URL = re.compile(r"(/bot)[0-9]+:[A-Za-z0-9_-]+")
# Secrets shorter than this are not looked for: masking "abc" everywhere would garble logs.
_SHORTEST_SECRET = 6


def redact(text: str) -> str:
    """Mask bot tokens in a string."""
    return _TOKEN_IN_URL.sub(r"\1<token>", text)


class RedactingFormatter(logging.Formatter):
    """Mask tokens and the configured secrets in the whole formatted record.

    The whole output, not the message alone: a traceback, an exception passed as an argument
    or a library's own text (python-telegram-bot's "The token `…` was rejected") carry them too.
    """

    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        known = sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, known))) if known else None

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        return self._secrets.sub("<secret>", text) if self._secrets else text


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    """Log to standard error at `level`, with tokens and `secrets` masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, token included; keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)

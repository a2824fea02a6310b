"""Logging set-up that never writes a bot token."""

from __future__ import annotations

import logging
import re

# Bot API URLs carry the token in the path: /bot123456:ABC.../method.
_TOKEN_IN_URL = re.compile(r"(/bot)[0-9]+:[A-Za-z0-9_-]+")


class RedactTokens(logging.Filter):
    """Mask bot tokens in every record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1<token>", record.msg)
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1<token>", a) if isinstance(a, str) else a for a in args
            )
        return True


def redact(text: str) -> str:
    """Mask bot tokens in a string."""
    return _TOKEN_IN_URL.sub(r"\1<token>", text)


def configure(level: str) -> None:
    """Log to standard error at `level`, with tokens masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, token included; keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)

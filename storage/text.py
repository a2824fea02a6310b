"""Text normalisation: NFC storage and accent-insensitive search keys."""

from __future__ import annotations

import re
import unicodedata

# Control characters other than newline and tab never belong in stored text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t]+")


def clean(text: str) -> str:
    """Return text NFC-normalised, without control characters, trimmed."""
    text = unicodedata.normalize("NFC", text)
    return _CONTROL.sub("", text).strip()


def clean_line(text: str) -> str:
    """Return a single-line value cleaned and with runs of blanks collapsed."""
    return _SPACES.sub(" ", clean(text).replace("\n", " ")).strip()


def fold(text: str) -> str:
    """Return a lower-case key without diacritics, so "sang kien" matches "sáng kiến"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped.casefold()).strip()


def storable_json(value: object) -> object:
    """Return a parsed JSON value whose strings and keys a database can store.

    PostgreSQL stores neither NUL nor lone UTF-16 surrogates (both can be written as JSON
    escapes): NUL is removed (`clean` drops it from any text anyway), a surrogate replaced.
    """
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode()
    return text

"""Message catalogues: every text a user reads, by key, in TOML files per language."""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_LANGUAGE = "vi"
LOCALES = Path(__file__).parent / "locales"


class MissingTextError(KeyError):
    """A key the catalogue does not have."""


class Catalogue:
    """Look up texts by dotted key and fill in their named fields."""

    def __init__(self, texts: Mapping[str, str], language: str) -> None:
        self._texts = dict(texts)
        self.language = language

    @classmethod
    def load(cls, language: str = DEFAULT_LANGUAGE) -> Catalogue:
        """Load every file of the catalogue shipped for `language` (one file per feature)."""
        folder = LOCALES / language
        texts: dict[str, str] = {}
        for entry in sorted(folder.glob("*.toml")):
            for key, value in _flatten(tomllib.loads(entry.read_text("utf-8"))).items():
                if key in texts:
                    raise ValueError(f"text {key!r} is defined twice ({entry.name})")
                texts[key] = value
        return cls(texts, language)

    def __call__(self, key: str, /, **fields: Any) -> str:
        try:
            template = self._texts[key]
        except KeyError:
            raise MissingTextError(key) from None
        return template.format(**fields)

    def has(self, key: str) -> bool:
        return key in self._texts

    def keys(self) -> list[str]:
        return sorted(self._texts)

    def fields(self, key: str) -> set[str]:
        """Return the names of the fields a text expects."""
        return {name for _, name, _, _ in string.Formatter().parse(self._texts[key]) if name}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = str(value)
    return flat

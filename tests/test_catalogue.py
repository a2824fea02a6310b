"""Every text the code asks for exists in the Vietnamese catalogue, with the fields it fills."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from handlers.i18n import Catalogue, MissingTextError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["bot", "handlers", "storage", "scheduler"]
# ctx.say("key", ...), ctx.t("key", ...), texts("key", ...), self._texts("key", ...)
CALLERS = {"say", "t", "texts", "_texts"}


def _literal_text_calls() -> list[tuple[str, set[str], str]]:
    """Find catalogue look-ups with a literal key: (key, keyword fields, where)."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text("utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.args[0]
                if (
                    name in CALLERS
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                ):
                    fields = {kw.arg for kw in node.keywords if kw.arg and kw.arg != "choices"}
                    if any(kw.arg is None for kw in node.keywords):
                        fields = {"**"}  # fields spread from a mapping: checked where they run
                    found.append((first.value, fields, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_every_literal_key_exists_with_matching_fields() -> None:
    texts = Catalogue.load()
    calls = _literal_text_calls()
    assert len(calls) > 50
    for key, fields, where in calls:
        assert texts.has(key), f"{where}: no text {key!r}"
        if fields == {"**"}:
            continue
        assert texts.fields(key) <= fields, f"{where}: {key!r} needs {texts.fields(key) - fields}"


def test_role_status_and_channel_names_are_all_translated() -> None:
    from storage.models import MemberStatus, Role

    texts = Catalogue.load()
    for role in Role:
        assert texts.has(f"role.{role.value}")
    for status in MemberStatus:
        assert texts.has(f"status.{status.value}")
    for channel in ("telegram", "console", "zalo"):
        assert texts.has(f"channel.{channel}")


def _docstrings(tree: ast.AST) -> set[int]:
    """Return the ids of the string nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_vietnamese_text_is_hard_coded_in_handlers() -> None:
    vietnamese = re.compile(
        r"[ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ]"
    )
    for path in (ROOT / "handlers").glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                assert not vietnamese.search(node.value.lower()), (
                    f"{path.name}: Vietnamese literal {node.value[:40]!r} belongs in the catalogue"
                )


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(MissingTextError):
        Catalogue.load()("no.such.key")

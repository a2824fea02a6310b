"""Amounts in đồng as union members type them."""

from __future__ import annotations

import pytest

from handlers.parsing import format_number, parse_vnd


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("50 triệu", 50_000_000),
        ("50 Triệu đồng", 50_000_000),
        ("50tr", 50_000_000),
        ("50 tr", 50_000_000),
        ("2,5tr", 2_500_000),
        ("2.5 tr", 2_500_000),
        ("50.000.000", 50_000_000),
        ("50,000,000", 50_000_000),
        ("50 000 000", 50_000_000),
        ("50.000.000đ", 50_000_000),
        ("50.000.000 VNĐ", 50_000_000),
        ("50.000.000 vnd", 50_000_000),
        ("₫50.000", 50_000),
        ("120000000", 120_000_000),
        ("1,5 tỷ", 1_500_000_000),
        ("1.5 tỷ", 1_500_000_000),
        ("1 tỷ", 1_000_000_000),
        ("1 ty", 1_000_000_000),
        ("1 tỷ 200 triệu", 1_200_000_000),
        ("3 triệu rưỡi", 3_500_000),
        ("500 nghìn", 500_000),
        ("500 ngàn", 500_000),
        ("500k", 500_000),
        ("1.500 tỷ", 1_500_000_000_000),
        ("1.234.567,5", 1_234_568),
    ],
)
def test_real_world_spellings(typed: str, amount: int) -> None:
    assert parse_vnd(typed) == amount


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "abc",
        "0",
        "0 đồng",
        "1,5",  # a bare decimal: 1.5 đồng or 1,500? Asked again instead of guessed.
        "2 triệu 5",  # 2,5 million or 2,005,000?
        "khoảng 50 triệu",
        "50 triệu hoặc hơn",
        "50.00.000",
        "-50 triệu",
        "9999999 tỷ",
    ],
)
def test_what_it_cannot_read_is_refused(typed: str) -> None:
    assert parse_vnd(typed) is None


def test_amounts_are_shown_the_vietnamese_way() -> None:
    assert format_number(50_000_000) == "50.000.000"
    assert format_number(1_500) == "1.500"

"""Settings: defaults, the .env file, and the documentation of every variable."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.logs import RedactingFormatter, redact
from bot.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_with_a_comment_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text("utf-8")
    for name in Settings.model_fields:
        variable = name.upper()
        match = re.search(rf"((?:#.*\n)+)(?:#?\s*)?{variable}=", example)
        assert match, f"{variable} is missing from .env.example or has no comment above it"


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///data/thidua.db"
    assert settings.timezone == "Asia/Ho_Chi_Minh"
    assert settings.telegram_api_base_url == "https://api.telegram.org"
    assert settings.telegram_bot_token is None
    assert settings.telegram_webhook_url is None


def test_values_come_from_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("TELEGRAM_BOT_TOKEN=42:abc\nLOG_LEVEL=debug\n", encoding="utf-8")
    settings = load_settings(_env_file=env_file)
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "42:abc"
    assert "42:abc" not in repr(settings)
    assert settings.log_level == "DEBUG"


def test_a_copy_of_env_example_starts_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text("utf-8"), "utf-8")
    settings = load_settings(_env_file=env_file)
    assert settings.telegram_bot_token is None
    assert settings.telegram_webhook_secret is None
    assert settings.telegram_webhook_url is None


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"^HTTP_PORT: "):
        load_settings(_env_file=None, http_port=70000)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"quiet_hours": "21h-7h"}, "QUIET_HOURS"),
        ({"quiet_hours": "21:00"}, "QUIET_HOURS"),
        ({"schedule_time": "8 giờ"}, "SCHEDULE_TIME"),
        ({"schedule_grace_hours": -1}, "SCHEDULE_GRACE_HOURS"),
    ],
)
def test_bad_schedule_settings_name_their_variable(
    overrides: dict[str, object], variable: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        load_settings(_env_file=None, **overrides)


def test_quiet_hours_span_midnight_and_can_be_turned_off() -> None:
    settings = load_settings(_env_file=None)
    quiet = settings.quiet
    assert quiet is not None
    hanoi = settings.zone
    evening = datetime(2023, 3, 1, 21, 0, tzinfo=hanoi)
    assert quiet.contains(evening)
    assert not quiet.contains(evening - timedelta(minutes=1))
    assert quiet.resumes_at(evening) == datetime(2023, 3, 2, 7, 0, tzinfo=hanoi)
    assert quiet.resumes_at(datetime(2023, 3, 2, 6, 59, tzinfo=hanoi)).astimezone(hanoi).hour == 7
    assert load_settings(_env_file=None, quiet_hours="").quiet is None


def test_tokens_and_secrets_never_reach_the_log() -> None:
    url = "https://api.telegram.org/bot123456:AAE-secret_value/sendMessage"
    assert redact(url) == "https://api.telegram.org/bot<token>/sendMessage"
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(RedactingFormatter("%(message)s", ["hook-secret-42", "123456:RAW"]))
    logger = logging.getLogger("thidua.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("calling %s", url)
        logger.warning("answer failed (%s)", RuntimeError(f"redirect loop at {url}"))
        logger.warning("setWebhook secret_token=hook-secret-42")
        logger.warning("The token `123456:RAW` was rejected by the server.")
        try:
            raise ConnectionError(f"cannot reach {url}")
        except ConnectionError:
            logger.exception("polling failed")
    finally:
        logger.removeHandler(handler)
    log = written.getvalue()
    assert "Traceback" in log  # the traceback is written, masked
    for secret in ("AAE-secret_value", "hook-secret-42", "123456:RAW"):
        assert secret not in log
    assert log.count("bot<token>") == 3

"""Application settings, read from the environment and `.env`."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from storage.clock import QuietHours

_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_ZALO_SECRET = re.compile(r"^[A-Za-z0-9_-]{8,256}$")
# A Bot API token as BotFather gives it: the bot's id, a colon, the secret part.
_BOT_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$")
TELEGRAM_CLOUD = "https://api.telegram.org"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    """Everything configurable, one environment variable each."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str = "sqlite+aiosqlite:///data/thidua.db"
    timezone: str = "Asia/Ho_Chi_Minh"
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    consent_version: str = Field(default="1", min_length=1, max_length=16)
    invite_default_uses: int = Field(default=50, ge=1, le=100_000)
    invite_default_days: int = Field(default=14, ge=1, le=365)
    telegram_concurrent_updates: int = Field(default=64, ge=1, le=1024)
    telegram_rate_limit: int = Field(default=30, ge=1, le=1000)
    telegram_read_timeout: float = Field(default=10.0, gt=0, le=120)
    delivery_concurrency: int = Field(default=64, ge=1, le=1000)
    delivery_lease_seconds: int = Field(default=60, ge=1, le=3600)
    # Messages one person may send: a burst, then this many a second; faster ones wait.
    flood_rate: float = Field(default=1.0, gt=0, le=1000)
    flood_burst: int = Field(default=8, ge=1, le=1000)
    quiet_hours: str = "21:00-07:00"
    schedule_time: str = "08:00"
    schedule_grace_hours: int = Field(default=6, ge=0, le=72)
    # Days a member who left the union is kept before their personal data is erased; 0 keeps.
    left_member_retention_days: int = Field(default=365, ge=0, le=36_500)
    zalo_bot_token: SecretStr | None = None
    zalo_bot_api_base_url: str = "https://bot-api.zaloplatforms.com"
    zalo_webhook_url: str | None = None
    zalo_webhook_secret: SecretStr | None = None
    zalo_oa_app_id: str | None = None
    zalo_oa_secret_key: SecretStr | None = None
    zalo_oa_app_secret_key: SecretStr | None = None
    zalo_oa_access_token: SecretStr | None = None
    zalo_oa_refresh_token: SecretStr | None = None
    zalo_oa_api_base_url: str = "https://openapi.zalo.me"
    zalo_oa_oauth_base_url: str = "https://oauth.zaloapp.com"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str) -> str:
        try:
            QuietHours.parse(value, ZoneInfo("UTC"))
        except ValueError:
            raise ValueError("must be HH:MM-HH:MM, such as 21:00-07:00, or empty") from None
        return value.strip()

    @field_validator("schedule_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        try:
            time.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a time of day, HH:MM") from None
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        try:
            url = make_url(value)
            _ = url.port  # a port that is no number fails here, not at the first connection
        except (ArgumentError, ValueError):
            raise ValueError("is not a valid database URL") from None
        if url.drivername.startswith("sqlite") and url.host:
            raise ValueError("a SQLite file is sqlite+aiosqlite:///path/to/file.db (three slashes)")
        return value

    @field_validator("telegram_api_base_url", "telegram_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _checked_http_url(value)

    @field_validator("zalo_bot_api_base_url", "zalo_oa_api_base_url", "zalo_oa_oauth_base_url")
    @classmethod
    def _zalo_base_url(cls, value: str) -> str:
        return _checked_http_url(value)

    @field_validator("zalo_webhook_url")
    @classmethod
    def _zalo_webhook_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Zalo calls only HTTPS webhooks)")
        return value

    @field_validator("zalo_webhook_secret")
    @classmethod
    def _zalo_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Zalo asks for 8 to 256 characters; the header carries it back as it is.
        if value is None or not value.get_secret_value():
            return None
        if not _ZALO_SECRET.match(value.get_secret_value()):
            raise ValueError("must be 8-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator(
        "telegram_bot_token",
        "zalo_bot_token",
        "zalo_oa_secret_key",
        "zalo_oa_app_secret_key",
        "zalo_oa_access_token",
        "zalo_oa_refresh_token",
    )
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("zalo_oa_app_id")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an empty line copied from .env.example means "not set"
        if value is not None and not _SECRET_TOKEN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("telegram_bot_token", mode="after")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not _BOT_TOKEN.match(token):
            # The value itself is never repeated: it is a secret even when mistyped.
            raise ValueError("is not a bot token as BotFather gives it (digits:letters)")
        return SecretStr(token)

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_WEBHOOK_URL is set")
        if self.telegram_webhook_url and self.telegram_bot_token is None:
            # Else the bot would start without Telegram, and say nothing of it.
            raise ValueError("TELEGRAM_BOT_TOKEN is required when TELEGRAM_WEBHOOK_URL is set")
        if (
            self.telegram_webhook_url
            and not self.telegram_webhook_url.startswith("https://")
            and self.telegram_api_base_url == TELEGRAM_CLOUD
        ):
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL must be an https:// URL: Telegram calls only HTTPS "
                "webhooks (http:// works only with a local Bot API server)"
            )
        return self

    @model_validator(mode="after")
    def _zalo_complete(self) -> Settings:
        if self.zalo_webhook_url and self.zalo_bot_token is None:
            raise ValueError("ZALO_BOT_TOKEN is required when ZALO_WEBHOOK_URL is set")
        if self.zalo_webhook_url and self.zalo_webhook_secret is None:
            raise ValueError("ZALO_WEBHOOK_SECRET is required when ZALO_WEBHOOK_URL is set")
        oa = {
            "ZALO_OA_APP_ID": self.zalo_oa_app_id,
            "ZALO_OA_SECRET_KEY": self.zalo_oa_secret_key,
            "ZALO_OA_REFRESH_TOKEN": self.zalo_oa_refresh_token,
        }
        given = [name for name, value in oa.items() if value is not None]
        if given or self.zalo_oa_access_token is not None:
            missing = [name for name, value in oa.items() if value is None]
            if missing:
                raise ValueError(f"{missing[0]} is required for the Zalo Official Account")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quiet(self) -> QuietHours | None:
        return QuietHours.parse(self.quiet_hours, self.zone)

    @property
    def run_time(self) -> time:
        return time.fromisoformat(self.schedule_time)

    @property
    def left_member_retention(self) -> timedelta | None:
        """How long a member who left is kept before erasure; None keeps them forever."""
        days = self.left_member_retention_days
        return timedelta(days=days) if days else None


def _checked_http_url(value: str) -> str:
    """Return an http(s) URL without its trailing slash, or raise saying what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise ValueError("must be an http:// or https:// URL with a host name, without spaces")
    return value.rstrip("/")


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation failures into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError:
        raise SettingsError(".env: the file must be saved as UTF-8") from None
    except ValidationError as error:
        first = error.errors()[0]
        location = "_".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        if location:
            raise SettingsError(f"{location}: {message}") from None
        raise SettingsError(message) from None

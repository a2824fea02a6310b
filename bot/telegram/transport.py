"""python-telegram-bot's HTTP transport on aiohttp instead of httpx.

PTB lets an application bring its own `BaseRequest`. Measured on this project's machines,
httpx's pool costs about 3 ms of CPU per Bot API call with the pool sizes a busy bot needs;
aiohttp's client about 0.2 ms, and aiohttp already runs our web server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import cast

import aiohttp
from telegram import TelegramObject
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.logs import redact

_USER_AGENT = "thidua (python-telegram-bot, aiohttp)"
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
_JSON_HEADERS = {"Content-Type": "application/json"}


def _seconds(value: object, default: float | None) -> float | None:
    """Resolve PTB's DEFAULT_NONE sentinel to our default timeout."""
    if value is None or isinstance(value, int | float):
        return value
    return default


class JsonParameters:
    """The parameters of a Bot API call without files, as one JSON body.

    For `AiohttpRequest.post_json`, the bot's hot path (a text reply): a Bot method would build
    a parameter object per argument, percent-encode them into a form and, from the answer, build
    the objects of the message sent, which the bot never reads; together more CPU than the HTTP
    request itself. The Bot API takes JSON bodies for every method without files.
    """

    __slots__ = ("body",)

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.body = json.dumps(
            {name: _plain(value) for name, value in fields.items() if value is not None},
            ensure_ascii=False,
        ).encode()


def _plain(value: object) -> object:
    """A parameter's value as JSON takes it: Telegram objects as their dictionaries."""
    return value.to_dict() if isinstance(value, TelegramObject) else value


class AiohttpRequest(BaseRequest):
    """Make Bot API calls with one shared aiohttp session."""

    def __init__(
        self,
        *,
        connections: int = 64,
        read_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        media_write_timeout: float = 60.0,
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._media_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30),
                headers={"User-Agent": _USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def post_json(self, url: str, fields: Mapping[str, object]) -> object:
        """`post` a call without files from its plain parameters (see JsonParameters).

        Raises the same errors as `post` and the Bot methods (RetryAfter, Forbidden, ...).
        """
        # `post` hands its request data on to `do_request` untouched, which reads these.
        return await self.post(url, cast(RequestData, JsonParameters(fields)))

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | JsonParameters | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request and return its status and body."""
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        body: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        if isinstance(request_data, JsonParameters):
            body, headers, request_data = request_data.body, _JSON_HEADERS, None
        files = request_data.multipart_data if request_data else None
        if request_data is not None:
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mime) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                body = form
            else:
                # The form aiohttp would make of the parameters, without building a FormData
                # (and its multipart writer) for every call.
                body = request_data.url_encoded_parameters().encode()
                headers = _FORM_HEADERS
        read = _seconds(read_timeout, self._read_timeout)
        if files:
            read = max(read or 0.0, self._media_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=_seconds(connect_timeout, self._connect_timeout),
            sock_read=read,
        )
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            # Its text may hold the request's URL, and so the token: masked, and not chained.
            raise NetworkError(f"aiohttp.{type(error).__name__}: {redact(str(error))}") from None

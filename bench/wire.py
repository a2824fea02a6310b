"""Lean HTTP/1.1 for the load generator: its webhook client and the fake Bot API's server side.

The load generator stands in for Telegram, whose servers do this work on other machines. It
shares a core with PostgreSQL, and what it spends there is taken from the bot's database. So
both ends speak HTTP with keep-alive connections, httptools' parser and no per-request objects
beyond a future, instead of aiohttp's client and server.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    500: b"Internal Server Error",
}
_PATH = re.compile(r"^(?:/[^/]+)?/bot([^/]+)/([^/?]+)")

# Answers a Bot API call: (token, method, body, whether the body is a urlencoded form) to
# (HTTP status, JSON body).
Answer = Callable[[str, str, bytes, bool], Awaitable[tuple[int, bytes]]]


class WebhookClient:
    """POST bodies to one URL over a pool of keep-alive connections; return the statuses."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self._host = host
        self._port = port
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._idle: list[_ClientConnection] = []
        self._open: set[_ClientConnection] = set()

    async def post(self, body: bytes) -> int:
        """Send one request and return its response's status code."""
        connection = await self._take()
        try:
            status = await connection.exchange(self._head + b"%d\r\n\r\n" % len(body) + body)
        except BaseException:
            # Failed, timed out or cancelled: the answer may still come, on no one's request.
            self._drop(connection)
            raise
        if connection.reusable:
            self._idle.append(connection)
        else:
            self._drop(connection)
        return status

    @property
    def open_connections(self) -> int:
        """Count the connections open, idle or carrying a request."""
        return len(self._open)

    async def _take(self) -> _ClientConnection:
        """Take an idle connection, or open one."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:  # else closed by the server, its loss not yet reported
                return connection
            self._drop(connection)
        return await self._connect()

    def _drop(self, connection: _ClientConnection) -> None:
        self._forget(connection)
        connection.close()

    def _forget(self, connection: _ClientConnection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self) -> _ClientConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _ClientConnection(self._forget), self._host, self._port
        )
        self._open.add(connection)
        return connection

    def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            self._drop(connection)


class _ClientConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, lost: Callable[[_ClientConnection], None]) -> None:
        self._lost = lost
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"bad response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._transport = None
        self._fail(ConnectionError("connection closed"))
        self._lost(self)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())

    async def exchange(self, request: bytes) -> int:
        if self._transport is None:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class ApiServer:
    """Serve `/bot<token>/<method>` (JSON or form parameters) with `answer`, on a local port."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", 0, backlog=1024)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _accept(self) -> _ServerConnection:
        connection = _ServerConnection(self._answer, self._connections.discard)
        self._connections.add(connection)
        return connection

    async def stop(self) -> None:
        """Stop serving: close every connection, cancelling the answers still being made."""
        if self._server is not None:
            self._server.close()
            answering = [task for c in self._connections for task in c.close()]
            await asyncio.gather(*answering, return_exceptions=True)
            await self._server.wait_closed()


class _ServerConnection(asyncio.Protocol):
    """One client connection; answers are made as requests come, written in their order."""

    def __init__(self, answer: Answer, closed: Callable[[_ServerConnection], None]) -> None:
        self._answer = answer
        self._closed = closed
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._form = False
        self._multipart = False
        self._turn: asyncio.Future[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._closed(self)

    def close(self) -> list[asyncio.Task[None]]:
        """Close the connection; return the answers it cancelled."""
        if self._transport is not None:
            self._transport.close()
        cancelled = list(self._answering)
        for task in cancelled:
            task.cancel()
        return cancelled

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(400, b'{"ok":false,"error_code":400,"description":"Bad Request"}', False)
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._form = False
        self._multipart = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._form = value.startswith(b"application/x-www-form-urlencoded")
            self._multipart = value.startswith(b"multipart/")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        previous = self._turn
        url, body = self._url.decode(), b"".join(self._body)
        task = asyncio.get_running_loop().create_task(
            self._respond(url, body, self._form, self._multipart, keep_alive, previous)
        )
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        self._turn = task

    async def _respond(
        self,
        url: str,
        body: bytes,
        form: bool,
        multipart: bool,
        keep_alive: bool,
        previous: asyncio.Future[None] | None,
    ) -> None:
        match = _PATH.match(url)
        if multipart:
            # Files: the benchmark sends none; the fake's aiohttp route reads them.
            status, answer = 400, b'{"ok":false,"error_code":400,"description":"No files here"}'
        elif match is None:
            status, answer = 404, b'{"ok":false,"error_code":404,"description":"Not Found"}'
        else:
            try:
                status, answer = await self._answer(match[1], match[2], body, form)
            except Exception as error:  # the client must get an answer, whatever went wrong
                status, answer = 500, json.dumps({"ok": False, "description": repr(error)}).encode()
        if previous is not None:
            await previous  # answers leave in the order the requests came
        self._write(status, answer, keep_alive)

    def _write(self, status: int, body: bytes, keep_alive: bool) -> None:
        if self._transport is None:
            return
        reason = _REASONS.get(status, b"Error")
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            status,
            reason,
            len(body),
        )
        end = b"\r\n" if keep_alive else b"Connection: close\r\n\r\n"
        self._transport.write(head + end + body)
        if not keep_alive:
            self._transport.close()

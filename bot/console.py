"""The console channel: chat with the bot in a terminal, or drive it from a script."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import Attachment, ChannelTraits, Incoming, Reply

CHANNEL = "console"
TRAITS = ChannelTraits(name=CHANNEL, buttons=False, text_limit=100_000)


@dataclass(frozen=True, slots=True)
class Persona:
    """Someone the demo user can speak as."""

    key: str
    external_id: str
    label: str


def render(reply: Reply, texts: Catalogue) -> str:
    """Show a reply as text, with its choices numbered (there are no buttons here)."""
    lines = [reply.text]
    lines += [f"  {number}. {choice.label}" for number, choice in enumerate(reply.choices, 1)]
    lines += [f"  {_attachment(a, texts)}" for a in reply.attachments]
    return "\n".join(lines)


def _attachment(attachment: Attachment, texts: Catalogue) -> str:
    """Name a file: one the bot made (a chart) cannot be shown here, so it is described."""
    name = attachment.name or attachment.kind
    if attachment.content is None:
        return f"📎 {name}"
    key = "console.image" if attachment.kind == "photo" else "console.file"
    return texts(key, name=name)


class ConsoleChannel:
    """Deliver pushed messages by printing them, marked with who they were for."""

    traits = TRAITS

    def __init__(self, out: TextIO, personas: Mapping[str, Persona], texts: Catalogue) -> None:
        self._out = out
        self._by_chat = {p.external_id: p for p in personas.values()}
        self._texts = texts

    async def push(self, chat_id: str, reply: Reply, *, skip_parts: int = 0) -> None:
        # A terminal write does not fail halfway: there are no parts to resume.
        persona = self._by_chat.get(chat_id)
        who = persona.label if persona else chat_id
        self._out.write(self._texts("console.pushed", who=who) + "\n")
        self._out.write(_indent(render(reply, self._texts)) + "\n\n")
        self._out.flush()


MetaCommand = Callable[[str], Awaitable[str | None]]


class ConsoleChat:
    """Read the user's lines, hand them to the dispatcher, print the answers."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        texts: Catalogue,
        personas: Mapping[str, Persona],
        *,
        start_as: str,
        after_message: Callable[[], Awaitable[object]],
        meta: Mapping[str, MetaCommand] | None = None,
        stdin: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._texts = texts
        self._personas = personas
        self._persona = personas[start_as]
        self._after_message = after_message
        self._meta = dict(meta or {})
        self._stdin = stdin or sys.stdin
        self._out = out or sys.stdout
        # Update keys stay unique across runs sharing one database.
        self._run = secrets.token_hex(4)
        self._counter = itertools.count(1)

    @property
    def interactive(self) -> bool:
        return self._stdin.isatty()

    async def run(self) -> None:
        """Chat until end of input or `:quit`."""
        self._print(self._texts("console.banner", persona=self._persona.label))
        while True:
            line = await self._read_line()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            if not self.interactive:
                self._print(f"{self._persona.label}> {line}")
            if line.startswith(":"):
                if not await self._meta_command(line):
                    break
                continue
            await self.say(line)

    async def say(self, text: str) -> None:
        """Send one line as the current persona and print the answers."""
        incoming = Incoming(
            channel=CHANNEL,
            user_id=self._persona.external_id,
            chat_id=self._persona.external_id,
            update_key=f"{self._run}-{next(self._counter)}",
            text=text,
            display_name=self._persona.label,
        )
        outcome = await self._dispatcher.handle(incoming)
        for reply in outcome.replies:
            self._print(_indent(render(reply, self._texts)) + "\n")
        # Pushed messages (to this persona or others) appear before the next prompt.
        await self._after_message()

    async def _meta_command(self, line: str) -> bool:
        word, _, argument = line[1:].partition(" ")
        word = word.lower()
        if word in ("quit", "q", "exit"):
            return False
        if word == "as":
            persona = self._personas.get(argument.strip().lower())
            if persona is None:
                names = ", ".join(self._personas)
                self._print(self._texts("console.unknown_persona", names=names))
            else:
                self._persona = persona
                self._print(self._texts("console.now_as", persona=persona.label))
            return True
        if word == "help":
            self._print(self._texts("console.help", names=", ".join(self._personas)))
            return True
        handler = self._meta.get(word)
        if handler is None:
            self._print(self._texts("console.unknown_meta", command=":" + word))
            return True
        answer = await handler(argument.strip())
        if answer:
            self._print(answer)
        return True

    async def _read_line(self) -> str | None:
        """Read the next line, None at end of input.

        In a daemon thread of its own, not the loop's executor: Ctrl-C stops the demo at once,
        where a worker thread blocked in `input()` would hold the shutdown until Enter.
        """
        loop = asyncio.get_running_loop()
        read: asyncio.Future[str | None] = loop.create_future()
        interactive = self.interactive

        def settle(line: str | None, error: BaseException | None) -> None:
            if read.done():  # the demo stopped meanwhile
                return
            if error is not None:
                read.set_exception(error)
            else:
                read.set_result(line)

        def reader() -> None:
            line: str | None = None
            error: BaseException | None = None
            try:
                if interactive:
                    line = input(f"{self._persona.label}> ")
                else:
                    line = self._stdin.readline() or None
            except EOFError:
                pass
            except Exception as failure:  # handed to the awaiting task
                error = failure
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits anymore
                loop.call_soon_threadsafe(settle, line, error)

        threading.Thread(target=reader, name="console-input", daemon=True).start()
        return await read

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _indent(text: str) -> str:
    return "\n".join(
        "  🤖 " + line if i == 0 else "     " + line for i, line in enumerate(text.split("\n"))
    )

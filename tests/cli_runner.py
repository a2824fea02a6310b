"""Run the `thidua` command in a child process, as an operator would."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


def child_env() -> dict[str, str]:
    """This process's environment without the settings a test gives its child itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_"))}


async def thidua(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run the CLI; return its exit status, standard output and standard error."""
    inherited = child_env()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**inherited, **env},
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()

"""How a long-running bot process runs: its event loop and its garbage collector."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

# Allocations between young-generation collections (Python's default is 700).
YOUNG_THRESHOLD = 10_000


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run the process's main coroutine on uvloop where it is installed, else on asyncio's loop.

    uvloop (libuv, by the authors of asyncpg) runs the same asyncio code with less CPU per
    socket event: on the webhook benchmark the bot answered ≈ 9 % more updates per CPU-second
    (docs/BENCHMARKS.md). It is a dependency except on Windows, which it does not support.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def tune_gc() -> None:
    """Call once the process has started: spare the collector what lives as long as it does.

    The modules, mappers, the catalogue and the clients made at start-up would otherwise be
    traversed again by every full collection; frozen, they are left out. Collecting the young
    generation less often then makes collections rare and short. Measured on the webhook path:
    60–70 µs of collection per update before, about 1 µs after (docs/BENCHMARKS.md). Garbage in
    reference cycles is still collected, only in larger batches.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)

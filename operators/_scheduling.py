"""Choosing a scheduler and reading its clock, for the time-aware operators.

reactivex's own time operators default to a thread scheduler, whose callbacks fire on a foreign
thread; ours never do. The order is RxPY's (the operator's argument, then the scheduler given
at subscription) and then, instead of a thread, the running event loop's ``AsyncIOScheduler``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from reactivex import abc
from reactivex.scheduler import VirtualTimeScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

__all__ = ["clock", "resolve_scheduler"]


def resolve_scheduler(
    explicit: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None, who: str
) -> abc.SchedulerBase:
    """The scheduler a time operator should use for one subscription.

    Raises:
        RuntimeError: When none was given and no event loop is running in this thread (a
            timer on a thread scheduler would fire on a foreign thread; we refuse instead).
    """
    if explicit is not None:
        return explicit
    if subscribe_scheduler is not None:
        return subscribe_scheduler
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{who} needs a scheduler: subscribe inside a running event loop, or pass scheduler= "
            "(an AsyncIOScheduler, or a TestScheduler in tests)"
        ) from None
    return AsyncIOScheduler(loop)


def clock(scheduler: abc.SchedulerBase | None) -> Callable[[], float]:
    """A function returning the current time in seconds, for measuring intervals.

    A virtual-time scheduler's ``now`` (so tests are exact); otherwise the monotonic clock,
    which is also the asyncio loop's clock, and unlike ``AsyncIOScheduler.now`` (wall clock)
    never jumps.
    """
    if not isinstance(scheduler, VirtualTimeScheduler):
        return time.monotonic

    def now() -> float:
        return scheduler.now.timestamp()

    return now

"""rxllm's loggers: silent unless the application asks.

A library must print nothing unasked. Unconfigured structlog writes every level to stdout, so
rxllm never hands its events to structlog's defaults. Each event goes:

- to structlog, when the application (or ``structlog.testing.capture_logs()``) has configured
  it: the application's processors decide the format and the destination;
- otherwise to the standard library's ``logging`` under the ``rxllm`` logger hierarchy, which
  has a ``NullHandler``: nothing appears until the application configures ``logging``. The
  record's message is ``"event key=value …"`` and the fields are on ``record.rxllm`` as a dict.

Event names follow one scheme, ``rxllm.<area>.<what>`` (``rxllm.stream``,
``rxllm.proxy.request``, ``rxllm.callback_failed``, …); README's "Logging" section lists them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from rxllm._secrets import scrub

__all__ = ["Logger", "get_logger"]

logging.getLogger("rxllm").addHandler(logging.NullHandler())


def _structlog() -> Any:
    """structlog, if the application configured it (it cannot have without importing it).

    Looking in ``sys.modules`` instead of importing keeps ``import rxllm`` from importing
    structlog (and, through it, ``rich`` where that is installed).
    """
    module = sys.modules.get("structlog")
    if module is not None and module.is_configured():
        return module
    return None


def _format(event: str, fields: dict[str, Any]) -> str:
    if not fields:
        return event
    return event + " " + " ".join(f"{key}={value!r}" for key, value in fields.items())


class Logger:
    """A named rxllm logger: ``log.info("rxllm.event", key=value, …)``.

    The destination is decided per call (structlog when configured, else ``logging``), so an
    application may configure logging after importing rxllm.
    """

    __slots__ = ("_bound", "_std", "name")

    def __init__(self, name: str, bound: dict[str, Any] | None = None) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._bound = bound or {}

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds ``fields`` to every event."""
        return Logger(self.name, {**self._bound, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` would go anywhere (cheap: check before building fields)."""
        structlog = _structlog()
        if structlog is not None:
            logger = structlog.get_logger(self.name)
            check = getattr(logger, "is_enabled_for", None)
            try:
                return bool(check(level)) if check is not None else True
            except Exception:
                return True
        return self._std.isEnabledFor(level)

    def _emit(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._bound:
            fields = {**self._bound, **fields}
        # every log line goes through the scrubber: strings are masked, other values are
        # left as they are (rxllm's errors mask themselves)
        fields = {k: scrub(v) if v.__class__ is str else v for k, v in fields.items()}
        structlog = _structlog()
        if structlog is not None:
            logger = structlog.get_logger(self.name)
            if exc_info:
                logger.exception(event, **fields)
            else:
                getattr(logger, logging.getLevelName(level).lower())(event, **fields)
            return
        if self._std.isEnabledFor(level):
            line = scrub(_format(event, fields))
            self._std.log(level, "%s", line, exc_info=exc_info, extra={"rxllm": {"event": event, **fields}})

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at warning level."""
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level."""
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level with the exception being handled."""
        self._emit(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str = "rxllm") -> Logger:
    """The logger for ``name`` (``"rxllm"`` or ``"rxllm.<area>"``)."""
    return Logger(name)

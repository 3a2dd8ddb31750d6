"""Shortened waits in moto's Step Functions engine, so a poll loop of hours runs in seconds.

moto's interpreter sleeps in two places: ``WaitFunction._wait_interval`` (every ``Wait`` state: ``Seconds``,
``SecondsPath``, ``Timestamp``...) and ``RetrierDecl._eval_body`` (``time.sleep`` between ``Retry`` attempts).
Both are patched to sleep ``seconds × scale``; the execution history still carries the real values (the
state's input holds ``poll.waitSeconds``), only the wall time shrinks.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any


class TimeScaling:
    """Install with :meth:`install`, undo with :meth:`uninstall`; ``scale`` = real seconds per ASL second."""

    def __init__(self, scale: float) -> None:
        if not scale > 0:
            raise ValueError("wait_scale must be > 0")
        self.scale = float(scale)
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        scale = self.scale

        def _wait_interval(_self: Any, env: Any, wait_seconds: int) -> None:
            # Same contract as moto's: return early when the execution stops (the event pulses then).
            deadline = time.monotonic() + max(0, wait_seconds) * scale
            while env.is_running():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                env.program_state_event.wait(remaining)

        scaled_time = SimpleNamespace(sleep=lambda seconds: time.sleep(max(0.0, seconds) * scale))
        self._patch(WaitFunction, "_wait_interval", _wait_interval)
        self._patch(retrier_decl, "time", scaled_time)

    def uninstall(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

"""EventBridge rule → Lambda targets, which moto does not deliver (it does SQS, log groups, archives, buses).

Worse, moto's ``Rule.send_to_targets`` raises ``NotImplementedError`` for a Lambda target, so any PutEvents that
matches such a rule fails (in a state machine: ``States.Runtime`` in the putEvents task). The method is wrapped:
moto serves the targets it knows, and each matching Lambda target
gets the event as EventBridge would shape it (``Input`` constant, ``InputPath``, ``InputTransformer``, or the
whole event) and the function is invoked *asynchronously*, on one worker thread, like Lambda's event invocation:
a function error is retried twice (Lambda's default for async invocations; the delays, 1 and 2 minutes, are
scaled like the state machine's waits), then the event goes to the function's dead-letter queue if it has one.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Lambda's default for asynchronous invocations: two retries, after about one and two minutes.
ASYNC_RETRY_DELAYS = (60.0, 120.0)


@dataclass(frozen=True, slots=True)
class Delivery:
    rule: str
    function_arn: str
    payload: Any


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    rule: str
    function_arn: str
    payload: Any
    error: str


class LambdaTargetDelivery:
    """The patch plus the worker that invokes the targets. ``invoke(arn, payload)`` returns an error or None;
    ``dead_letter(arn, payload)`` stores an event that failed every attempt."""

    def __init__(
        self,
        invoke: Callable[[str, Any], str | None],
        dead_letter: Callable[[str, Any], None],
        *,
        wait_scale: float,
    ) -> None:
        self._invoke = invoke
        self._dead_letter = dead_letter
        self._wait_scale = wait_scale
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._original: Any = None
        self.delivered: list[Delivery] = []
        self.failed: list[FailedDelivery] = []

    def install(self) -> None:
        from moto.events.models import Rule

        delivery = self
        original = Rule.send_to_targets
        self._original = original

        def send_to_targets(rule: Any, original_event: Any, transform_input: bool = True) -> None:
            lambda_targets = [t for t in rule.targets if _is_lambda(t)]
            if not lambda_targets:
                original(rule, original_event, transform_input)
                return
            # moto raises NotImplementedError for a Lambda target (failing the whole PutEvents), so it only
            # sees the other targets.
            others = copy.copy(rule)
            others.targets = [t for t in rule.targets if not _is_lambda(t)]
            original(others, original_event, transform_input)
            if rule.state != "ENABLED" or not rule.event_pattern.matches_event(original_event):
                return
            for target in lambda_targets:
                delivery.submit(Delivery(rule.name, str(target["Arn"]), _target_input(target, original_event)))

        Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]
        self._thread = threading.Thread(target=self._work, name="eventbridge-to-lambda", daemon=True)
        self._thread.start()

    def uninstall(self, timeout: float = 10.0) -> None:
        from moto.events.models import Rule

        if self._original is not None:
            Rule.send_to_targets = self._original  # type: ignore[method-assign]
            self._original = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the EventBridge → Lambda worker is still busy after %.0fs", timeout)
            self._thread = None

    def submit(self, delivery: Delivery) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(delivery)

    @property
    def busy(self) -> bool:
        with self._idle:
            return self._pending > 0

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        error: str | None = None
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS)):
            if delay:
                time.sleep(delay * self._wait_scale)
            try:
                error = self._invoke(delivery.function_arn, delivery.payload)
            except Exception as exc:  # noqa: BLE001 - a delivery failure must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                self.delivered.append(delivery)
                return
            logger.warning(
                "rule %s → %s failed (attempt %d): %s", delivery.rule, delivery.function_arn, attempt + 1, error
            )
        self.failed.append(FailedDelivery(delivery.rule, delivery.function_arn, delivery.payload, error or ""))
        self._dead_letter(delivery.function_arn, delivery.payload)


def _is_lambda(target: dict[str, Any]) -> bool:
    return str(target.get("Arn", "")).split(":")[2:3] == ["lambda"]


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """What EventBridge sends a target: the constant ``Input``, the ``InputPath`` part, a transformed
    template, or the whole event."""
    if target.get("Input") is not None:
        return json.loads(target["Input"])
    if target.get("InputPath"):
        node: Any = event
        for part in str(target["InputPath"]).lstrip("$").strip(".").split("."):
            if part:
                node = node.get(part) if isinstance(node, dict) else None
        return node
    transformer = target.get("InputTransformer")
    if transformer:
        from moto.events.utils import EventTemplateParser

        rendered = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,  # type: ignore[arg-type]
        )
        if isinstance(rendered, str):
            try:
                return json.loads(rendered)
            except ValueError:
                return rendered
        return rendered
    return event

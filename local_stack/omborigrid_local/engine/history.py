"""Reading Step Functions execution histories (``GetExecutionHistory`` events) in tests and the demo."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Longest run of states recognised as one loop iteration by :func:`describe_path`.
_MAX_CYCLE = 4


def entered_states(history: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the states in the order they were entered."""
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


def count_transitions(history: Sequence[dict[str, Any]]) -> int:
    """State transitions as Step Functions bills them: one per state entered.

    Counted from ``*StateEntered`` events (Pass, Wait, Task, Choice, Succeed, Fail...). A Task retry is billed
    as one more transition on AWS but enters no new state; add :func:`count_retries` for that.
    """
    return sum(1 for e in history if e["type"].endswith("StateEntered"))


def count_retries(history: Sequence[dict[str, Any]]) -> int:
    """Task attempts after the first within one state entry (a Retry fired)."""
    retries = 0
    scheduled_in_state = 0
    for event in history:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            scheduled_in_state = 0
        elif kind == "TaskScheduled":
            scheduled_in_state += 1
            if scheduled_in_state > 1:
                retries += 1
    return retries


def state_inputs(history: Sequence[dict[str, Any]], state: str) -> list[Any]:
    """The (parsed) input of each entry into ``state``."""
    result: list[Any] = []
    for event in history:
        details = event.get("stateEnteredEventDetails")
        if event["type"].endswith("StateEntered") and details and details.get("name") == state:
            text = details.get("input")
            result.append(json.loads(text) if isinstance(text, str) else text)
    return result


def task_failures(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``taskFailedEventDetails`` of every failed task attempt (``error``, ``cause``...), in order."""
    return [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]


def describe_path(states: Sequence[str], separator: str = " → ") -> str:
    """The path as one line, a repeated loop written once with its count.

    ``[A, B, C, B, C, B, C, D]`` → ``"A → [B → C] ×3 → D"``.
    """
    parts: list[str] = []
    i = 0
    while i < len(states):
        best_length, best_repeats = 1, 1
        for length in range(1, _MAX_CYCLE + 1):
            block = list(states[i : i + length])
            if len(block) < length:
                break
            repeats = 1
            while list(states[i + repeats * length : i + (repeats + 1) * length]) == block:
                repeats += 1
            if repeats > 1 and repeats * length > best_repeats * best_length:
                best_length, best_repeats = length, repeats
        if best_repeats > 1:
            block_text = separator.join(states[i : i + best_length])
            parts.append(f"[{block_text}] ×{best_repeats}" if best_length > 1 else f"{block_text} ×{best_repeats}")
            i += best_length * best_repeats
        else:
            parts.append(states[i])
            i += 1
    return separator.join(parts)

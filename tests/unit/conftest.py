"""Unit tests are pure: any attempt to open a network connection or resolve a name fails the test."""

from __future__ import annotations

import socket
from typing import Any

import pytest


class NetworkBlocked(AssertionError):
    """Raised when a unit test tries to use the network."""


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise NetworkBlocked(f"unit tests must not use the network (attempted with {args[1:]!r})")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)

"""Cut an HTTP exchange at a wall-clock deadline, whatever phase it is in.

A socket timeout bounds each read, not the exchange: a server that sends one byte every few seconds — in
the status line, the headers or the body — never trips it, and could hold a CLI run or a Lambda for as long
as it likes. So the API client marks the deadline of each call (:func:`cut_at`), and the connections of
:class:`DeadlineAdapter` arm a timer when they have sent a request under such a mark: at the deadline it
shuts the socket down, the blocked read fails at once, and the client reports the call as too slow.
(Connecting and sending a small request are bounded by the connect timeout, itself capped at the time left.)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _Cut:
    """The deadline of one call on one thread, and the timer armed for the socket it is using."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._timer: threading.Timer | None = None

    def arm(self, sock: object) -> None:
        self.disarm()
        if not isinstance(sock, socket.socket):
            return
        self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), _shut_down, (sock,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_current: ContextVar[_Cut | None] = ContextVar("omborigrid_http_cut", default=None)


def _shut_down(sock: socket.socket) -> None:
    # The TCP level, even under TLS: a blocked read of the TLS layer then sees the end of the stream. The
    # ``SSLSocket`` method would tear down TLS state another thread is reading through.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def cut_at(deadline: float) -> Iterator[None]:
    """Inside the block, a request sent on this thread through a :class:`DeadlineAdapter` is cut at
    ``deadline`` (a ``time.monotonic()`` value) if it has not ended by then."""
    cut = _Cut(deadline)
    token = _current.set(cut)
    try:
        yield
    finally:
        _current.reset(token)
        cut.disarm()


def _arm(connection: HTTPConnection) -> None:
    cut = _current.get()
    if cut is not None:
        cut.arm(connection.sock)


class _CuttableHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _arm(self)  # once sent: a plain-HTTP connection opens its socket only now


class _CuttableHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _arm(self)  # once sent: a plain-HTTP connection opens its socket only now


class _CuttableHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CuttableHTTPConnection


class _CuttableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CuttableHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _CuttableHTTPPool, "https": _CuttableHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections honour :func:`cut_at` (directly and through an HTTP proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager

"""The socket rules under every destination call: a stalled request is aborted, a slow but steady
one never is, and an upload's byte count is what the network took, not what sits in a buffer.

requests gives one timeout for connecting and one for each read. urllib3 sends a request's body
with whatever timeout the socket last had (the connect timeout on a new connection, the previous
answer's read timeout on a kept-alive one, None when that was an upload sent without one), so
a destination that stops reading could hold a step forever. Here every socket gets
``stall_seconds`` as its timeout just before a request is written: each ``sendall`` of one block
of the body, and each read of the answer, must make progress within that time. The send buffer
is capped so that "the socket accepted the byte" means the byte is on its way, not parked in
megabytes of kernel buffer (which would also fool the progress figure).
"""

from __future__ import annotations

import socket
from functools import cache
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

DEFAULT_STALL_SECONDS = 120.0
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # an answer to a small request; longer waits are stalls
SEND_BUFFER_BYTES = 256 * 1024


class _StallRule:
    """Mixed into urllib3's connection classes: the socket's timeout is the stall window from
    the moment it is connected and again before every request written on it."""

    stall_seconds: float = DEFAULT_STALL_SECONDS
    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.sock is not None:
            self.sock.settimeout(self.stall_seconds)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.stall_seconds)
        super().request(*args, **kwargs)  # type: ignore[misc]


@cache
def _pool_classes(stall_seconds: float) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes whose connections follow the stall rule (urllib3 builds connections from
    a class attribute, and its pool keys take no extra settings, so the value lives in a class)."""
    rule = {"stall_seconds": stall_seconds}
    http = type("StallHTTPConnection", (_StallRule, HTTPConnection), rule)
    https = type("StallHTTPSConnection", (_StallRule, HTTPSConnection), rule)
    return {"http": type("StallHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("StallHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}


class Transport(HTTPAdapter):
    """requests' adapter with the stall rule and a capped send buffer; its ``timeouts`` are the
    ones ``Destination.call`` passes (no request waits longer than the stall window)."""

    def __init__(self, stall_seconds: float = DEFAULT_STALL_SECONDS, **kwargs: Any) -> None:
        self.stall_seconds = float(stall_seconds)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options,
                                    (socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.stall_seconds)

    def timeouts(self, long: bool) -> tuple[float, float]:
        """(connect, read). ``long``: an upload or a streamed body, whose answer may rightly take
        until the stall window; any other answer is due within ``READ_TIMEOUT``."""
        stall = self.stall_seconds
        return min(CONNECT_TIMEOUT, stall), stall if long else min(READ_TIMEOUT, stall)


DEFAULT_TRANSPORT = Transport()

"""CancelRequests between the workers of one `serve --workers N` pool.

A CancelRequest arrives on a connection of its own, which the kernel hands to whichever worker
accepts it first, while the session it names (by the backend key's pid) lives in one worker. The
worker that receives a request for a session it does not hold passes the key on, as one
datagram, to every other worker's socket in the pool's folder; the owner cancels, the others
find no such session and ignore it, as PostgreSQL ignores a key it does not know.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path
from typing import Callable

_KEY = struct.Struct("!iI")


class Peers:
    """This worker's datagram socket in `folder`, and the way to its siblings'."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{os.getpid()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def forward(self, pid: int, secret: int) -> None:
        payload = _KEY.pack(pid, secret)
        for other in self.folder.glob("*.sock"):
            if other != self.path:
                try:
                    self.sock.sendto(payload, str(other))
                except OSError:
                    pass  # a worker that has just ended; the supervisor removes its socket

    def listen(self, loop: asyncio.AbstractEventLoop, on_cancel: Callable[[int, int], None]) -> None:
        loop.add_reader(self.sock.fileno(), self._read, on_cancel)

    def _read(self, on_cancel: Callable[[int, int], None]) -> None:
        while True:
            try:
                data = self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) == _KEY.size:
                on_cancel(*_KEY.unpack(data))

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)

"""`sparsesql serve --workers N`: a supervisor and N worker processes, each a whole server.

One Python process serves every client under one interpreter lock, so adding cores added no
throughput. Here the supervisor binds the listening sockets (the wire port, and the HTTP port
when asked) and forks the workers, which inherit them and accept from the same queue: a worker
busy with a search accepts less, an idle one more. Each worker is a `Server` of its own (event
loop, sessions, encoders, tiers): the tiers' snapshots are memory-mapped files, so a collection
sits in the page cache once however many workers read it, and each worker follows the change
log in its searches' snapshots, so a write through one worker is seen by the next search
through any other. Forking after the imports (and `gc.freeze`, so the collector does not touch
the shared objects) keeps the modules' memory shared too.

A worker that dies is replaced; only its own clients lose their connection. SIGTERM or SIGINT
to the supervisor is passed on: each worker stops accepting, lets running statements finish
(server.DRAIN_SECONDS), closes its clients and exits. Metrics of every worker are read through
any worker's /metrics (prometheus_client's multiprocess mode, in the pool's folder), and a
CancelRequest reaches the worker that holds the session (server/peers.py).
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("sparsesql.server")
RESTARTS = 5  # a pool whose workers die this many times within RESTART_WINDOW stops
RESTART_WINDOW = 30.0


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_pool(workers: int, options: dict, announce: Callable[..., None]) -> int:
    """Serve with `workers` processes until SIGTERM / SIGINT; `options` are `Server`'s keyword
    arguments, `announce(server, port, http_port)` tells the user where it listens. Returns the
    exit status."""
    folder = Path(tempfile.mkdtemp(prefix="sparsesql-serve-"))
    (folder / "metrics").mkdir()
    (folder / "peers").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")  # before prometheus_client is imported
    try:
        from sparsesql.server.serve import Server

        # Checks the settings and gives the embedded superuser its password once, before any worker.
        checked = Server(**options)
        listen = socket.create_server((checked.host, checked.port), backlog=1024)
        http_listen = None
        if checked.http_port is not None:
            http_listen = socket.create_server((checked.http_host, checked.http_port), backlog=1024)
        checked.close()
        port = listen.getsockname()[1]
        http_port = http_listen.getsockname()[1] if http_listen is not None else None
        announce(checked, port, http_port)
        return _supervise(workers, lambda: _worker(Server, options, listen, http_listen, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _worker(server_class: type, options: dict, listen: socket.socket, http_listen: socket.socket | None, folder: Path) -> None:
    """A forked worker's life; never returns."""
    import asyncio

    from sparsesql.server.peers import Peers

    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        server = server_class(**options, listen=listen, http_listen=http_listen, peers=Peers(folder / "peers"))
        asyncio.run(server.serve_forever())
    except BaseException:  # noqa: BLE001 - whatever ended it, the process ends here
        log.exception("worker %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(workers: int, work: Callable[[], None]) -> int:
    """Fork `workers` processes running `work`, replace any that dies, pass SIGTERM / SIGINT on
    and wait for them all. Returns 0, or 1 when workers kept dying."""
    from prometheus_client import multiprocess

    children: set[int] = set()
    stopping = False
    deaths: collections.deque[float] = collections.deque()

    def spawn() -> None:
        gc.freeze()  # objects made so far stay shared with the children: no collection writes to them
        pid = os.fork()
        if pid == 0:
            work()
        children.add(pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            spawn()
        failed = False
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            children.discard(pid)
            multiprocess.mark_process_dead(pid)
            (Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).parent / "peers" / f"{pid}.sock").unlink(missing_ok=True)
            if stopping:
                continue
            now = time.monotonic()
            deaths.append(now)
            while deaths and deaths[0] < now - RESTART_WINDOW:
                deaths.popleft()
            if len(deaths) >= RESTARTS:
                log.error("workers died %d times in %.0f s; stopping", len(deaths), RESTART_WINDOW)
                failed = True
                stop(signal.SIGTERM, None)
                continue
            log.warning("worker %d ended (%s); starting another", pid, _how(status))
            spawn()
        return 1 if failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"

"""`sparsesql serve --workers N`: a supervisor and N worker processes, each a whole server.

One Python process serves every client under one interpreter lock, so adding cores added no
throughput. Here the supervisor reserves the ports (the wire port, and the HTTP port when asked:
bound, never listening, so `--port 0` resolves once; see `_reserve`) and forks the workers,
each of which listens on the same ports with SO_REUSEPORT: the kernel spreads new connections
evenly over the workers. (A listening socket shared by every worker was tried first and
measured: one worker's accept loop took every connection a client pool opened at once, and with
4 pgbench clients one worker served all four while the other idled: 199 searches/s against 406
with SO_REUSEPORT.) Each worker is a `Server` of its own (event loop, sessions, encoders,
tiers): the tiers' snapshots are memory-mapped files, so a collection
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
import ctypes
import gc
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from sparsesql.errors import ConfigError
from sparsesql.tier.index import load_compiled

log = logging.getLogger("sparsesql.server")
RESTARTS = 5  # a pool whose workers die this many times within RESTART_WINDOW stops
RESTART_WINDOW = 30.0


def one_malloc_arena() -> None:
    """glibc gives each thread (each client session's) a malloc arena of its own, which keeps
    what it frees for that thread: measured with 16 sessions a worker, one arena for the process
    held 50-75 MB less for the server at no loss of throughput (benchmarks/load.py's HYBRID at 32
    clients: 368 against 348 searches/s). Set before the workers fork, so they inherit it."""
    try:
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides


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
        reserved = [_reserve(checked.host, checked.port)]
        if checked.http_port is not None:
            reserved.append(_reserve(checked.http_host, checked.http_port))
        checked.close()
        ports = [r.getsockname()[:2] for r in reserved]
        load_compiled()  # shared by the workers, not loaded by each
        ready_read, ready_write = os.pipe()
        # told once every worker listens: a client that connects after the message is never refused
        listening = lambda: announce(checked, ports[0][1], ports[1][1] if len(ports) > 1 else None)  # noqa: E731
        return _supervise(workers, lambda: _worker(Server, options, ports, folder, ready_write), ready_read, listening)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _reserve(host: str, port: int) -> socket.socket:
    """A port for the pool, never listening (it takes no connection of its own). Bound before
    SO_REUSEPORT is set, so a port another program holds (another `sparsesql serve` included)
    is refused instead of shared; set after, so the workers can listen on it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        reserved.bind((host, port))
    except OSError as exc:
        reserved.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return reserved


def _worker(server_class: type, options: dict, ports: list[tuple[str, int]], folder: Path, ready: int) -> None:
    """A forked worker's life (it writes a byte to `ready` once it listens); never returns."""
    import asyncio

    from sparsesql.server.peers import Peers

    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        listen, *http = (socket.create_server(address, backlog=1024, reuse_port=True, family=socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
                         for address in ports)
        for sock in (listen, *http):
            # accepted connections inherit it: asyncio sets TCP_NODELAY only on sockets it made
            # itself, and without it a reply sent in two writes waits 40 ms for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = server_class(**options, listen=listen, http_listen=http[0] if http else None, peers=Peers(folder / "peers"))
        asyncio.run(server.serve_forever(lambda _: os.write(ready, b".")))
    except BaseException:  # noqa: BLE001 - whatever ended it, the process ends here
        log.exception("worker %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(workers: int, work: Callable[[], None], ready: int, listening: Callable[[], None]) -> int:
    """Fork `workers` processes running `work`, call `listening` once each has written its byte
    to `ready`, replace any that dies, pass SIGTERM / SIGINT on and wait for them all. Returns 0,
    or 1 when a worker could not start or workers kept dying."""
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
        if not _started(ready, workers, children):
            log.error("a worker could not start; stopping")
            stop(signal.SIGTERM, None)
            for pid in list(children):
                os.waitpid(pid, 0)
            return 1
        listening()
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


def _started(ready: int, workers: int, children: set[int]) -> bool:
    """Wait for every worker's byte on `ready`; False as soon as one of them has ended."""
    started = 0
    while started < workers:
        readable, _, _ = select.select([ready], [], [], 0.2)
        if readable:
            started += len(os.read(ready, workers - started))
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.discard(pid)
            return False
    return True


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"

"""The daemon: build the engine, open the milter socket the way Postfix needs it, serve, reload, stop.

libmilter serves from a thread of its own; the main thread keeps the signals. libmilter blocks SIGHUP,
SIGTERM and SIGINT in its threads and would stop on any of them, while Linux hands a process signal to
the main thread when that thread accepts it, so here SIGHUP means reload (a new engine from the config file
and bounce model, swapped in for new connections only; a broken file is refused and logged, the old engine
keeps serving) and SIGTERM/SIGINT mean a graceful stop: new sessions are refused with a temporary error,
open ones get STOP_GRACE seconds to finish (the `Gate`), then libmilter stops.

pymilter's `runmilter` opens the socket and serves in one call; we hook its socket opening to set the
unix socket's mode (so that Postfix's group can connect) and TCP_NODELAY on an inet listener (accepted
sockets inherit it; without it, replies that modify the message sit ~40 ms in Nagle's algorithm).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import Milter
import milter as libmilter  # pymilter's C extension (top-level name `milter`)

from . import metrics
from .callbacks import UNDECODED_HELO
from .config import Config, load, unix_path
from .engine import Engine
from .log import event, setup
from .outbox import EventService
from .protocols import milter_class

STOP_GRACE = 30.0  # seconds in-flight sessions get after SIGTERM

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


class Gate:
    """Counts open sessions, and turns new ones away while the daemon drains them before a stop."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self.open = 0
        self.draining = False

    def enter(self) -> bool:
        with self._idle:
            if self.draining:
                return False
            self.open += 1
        metrics.SESSIONS_OPEN.inc()
        return True

    def leave(self) -> None:
        with self._idle:
            self.open -= 1
            self._idle.notify_all()
        metrics.SESSIONS_OPEN.dec()

    def drain(self, timeout: float) -> bool:
        """Refuse new sessions; wait until the open ones have closed. False if `timeout` ran out first."""
        with self._idle:
            self.draining = True
            return self._idle.wait_for(lambda: self.open == 0, timeout)


def recover_undecodable_helo(previous: ExceptHook) -> ExceptHook:
    """A sys.excepthook that keeps the bytes of a HELO pymilter could not decode, for the session that sent it.

    pymilter builds hello()'s argument as strict UTF-8 in C, so a HELO that is not UTF-8 (Postfix passes one
    when smtputf8_enable = no) never reaches hello(): the UnicodeDecodeError, raised with no Python frame, goes
    to sys.excepthook. It still carries the raw bytes, which go to callbacks.UNDECODED_HELO, where envfrom()
    takes them for the session's HELO.
    """

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> object:
        if isinstance(exc, UnicodeDecodeError) and tb is None and isinstance(exc.object, bytes):
            UNDECODED_HELO.raw = exc.object
            return None
        return previous(kind, exc, tb)

    return hook


def _listening_inet_sockets() -> list[socket.socket]:
    """Our listening TCP sockets (libmilter does not hand out its listener, so find it by fd)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            found.append(sock)
        else:
            sock.close()
    return found


def prepare_socket(config: Config) -> None:
    path = unix_path(config.socket)
    if path:
        os.chmod(path, config.socket_mode)
        return
    for sock in _listening_inet_sockets():
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Daemon:
    """Holds the engine that new connections get; reload swaps it, sessions keep the one they started with."""

    def __init__(self, config: Config, path: str | None) -> None:
        self.path = path
        self.engine = Engine.from_config(config)
        self.events = EventService.from_config(config)  # the threads that send stored events to their sinks
        self.failed: BaseException | None = None
        self._signals: list[int] = []
        self._wake = threading.Event()

    def reload(self) -> None:
        if self.path is None:
            event("reload-skipped", logging.WARNING, why="running on built-in defaults: there is no file to reload")
            return
        old = self.engine.config
        try:
            config = load(self.path)
            engine = Engine.from_config(config)
        except Exception as exc:  # noqa: BLE001 - nothing in the new files may stop the engine that is serving
            # A bad config or model file raises ValueError/OSError; anything else (an ONNX file that is not a
            # bounce model gave IndexError) would otherwise leave this loop and stop the daemon.
            error = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
            metrics.RELOADS.labels("refused").inc()
            event("reload-refused", logging.ERROR, config=self.path, error=error, still_serving=old.source)
            return
        if (config.socket, config.mta) != (old.socket, old.mta):
            event("reload-warning", logging.WARNING, why="a new socket or mta takes effect at the next restart")
        setup(config.log_level, config.log_format)
        self.engine = engine
        if config.events != old.events:
            self.events.stop()
            self.events = EventService.from_config(config).start()
        metrics.RELOADS.labels("done").inc()
        model = engine.classifier.model_id if engine.classifier else "off"
        event("reloaded", config=self.path, bounce_model=model)

    def _serve(self, config: Config) -> None:
        open_socket = libmilter.opensocket

        def opensocket(remove_stale: bool) -> object:
            result = open_socket(remove_stale)
            prepare_socket(config)
            model = self.engine.classifier.model_id if self.engine.classifier else "off"
            event("listening", socket=config.socket, authserv_id=config.authserv_id, config=config.source,
                  bounce_model=model)  # fmt: skip
            return result

        libmilter.opensocket = opensocket
        try:
            Milter.runmilter("mailwarden", config.socket, timeout=config.milter_timeout)
        except libmilter.error as exc:
            self.failed = exc
        finally:
            libmilter.opensocket = open_socket
            self._wake.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        self._wake.set()

    def run(self) -> int:
        config = self.engine.config
        path = unix_path(config.socket)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if config.metrics.address:
            metrics.serve(config.metrics.address)
            event("metrics", address=config.metrics.address)
        libmilter.set_exception_policy(Milter.CONTINUE)  # our callbacks trap their own errors: see callbacks.py
        sys.excepthook = recover_undecodable_helo(sys.excepthook)
        Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS)
        gate = Gate()
        kind = milter_class(config)
        Milter.factory = lambda: kind(self.engine, gate)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.events.start()
        server = threading.Thread(target=self._serve, args=(config,), name="libmilter", daemon=True)
        server.start()
        try:
            return self._serve_signals(server, gate)
        finally:
            self.events.stop()

    def _serve_signals(self, server: threading.Thread, gate: Gate) -> int:
        while server.is_alive():
            self._wake.wait()
            self._wake.clear()
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self.reload()
                else:
                    event("stopping", signal=signal.Signals(signum).name, open_sessions=gate.open, grace=STOP_GRACE)
                    drained = gate.drain(STOP_GRACE)
                    libmilter.stop()
                    server.join(STOP_GRACE)
                    event("stopped", open_sessions_cut=0 if drained else gate.open)
                    return 0
        if self.failed is not None:
            event("stopped", logging.ERROR, error=str(self.failed))
            return 1
        event("stopped")
        return 0


def run(config: Config, path: str | None = None) -> int:
    setup(config.log_level, config.log_format)
    return Daemon(config, path).run()

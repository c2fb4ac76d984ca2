"""The daemon: build the engine, open the milter socket the way Postfix needs it, serve, reload, stop.

libmilter serves from a thread of its own; the main thread keeps the signals. libmilter blocks SIGHUP,
SIGTERM and SIGINT in its threads and would stop on any of them, while Linux hands a process signal to
the main thread when that thread accepts it, so here SIGHUP means reload (a new engine from the config file
and bounce model, swapped in for new connections only; a broken file is refused and logged, the old engine
keeps serving) and SIGTERM/SIGINT mean a graceful stop: new sessions are refused with a temporary error,
open ones get STOP_GRACE seconds to finish, then libmilter stops.

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
from pathlib import Path

import Milter
import milter as libmilter  # pymilter's C extension (top-level name `milter`)

from . import metrics
from .callbacks import Gate, milter_class, recover_undecodable_helo
from .config import Config, load, unix_path
from .engine import Engine
from .log import event, setup

STOP_GRACE = 30.0  # seconds in-flight sessions get after SIGTERM


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
        libmilter.set_exception_policy(Milter.CONTINUE)  # our callbacks trap their own errors: see callbacks
        sys.excepthook = recover_undecodable_helo(sys.excepthook)
        Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS)
        gate = Gate()
        kind = milter_class(config)
        Milter.factory = lambda: kind(self.engine, gate)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        server = threading.Thread(target=self._serve, args=(config,), name="libmilter", daemon=True)
        server.start()
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

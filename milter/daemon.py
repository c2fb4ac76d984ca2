"""The daemon: build the engine once, open the milter socket the way Postfix needs it, serve.

pymilter's `runmilter` opens the socket and serves in one call; we hook its socket opening to set the
unix socket's mode (so that Postfix's group can connect) and TCP_NODELAY on an inet listener (accepted
sockets inherit it; without it, replies that modify the message sit ~40 ms in Nagle's algorithm).
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import Milter
import milter as libmilter  # pymilter's C extension (top-level name `milter`)

from .callbacks import MailwardenMilter
from .config import Config
from .engine import Engine
from .log import event, setup


def unix_path(spec: str) -> str | None:
    """The file system path of a unix:/local: socket spec, None for inet sockets."""
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


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


def _prepare_socket(config: Config) -> None:
    path = unix_path(config.socket)
    if path:
        os.chmod(path, config.socket_mode)
        return
    for sock in _listening_inet_sockets():
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def run(config: Config) -> int:
    setup(config.log_level, config.log_format)
    engine = Engine.from_config(config)
    path = unix_path(config.socket)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    open_socket = libmilter.opensocket

    def opensocket(remove_stale: bool) -> object:
        result = open_socket(remove_stale)
        _prepare_socket(config)
        event("listening", socket=config.socket, authserv_id=config.authserv_id, config=config.source)
        return result

    libmilter.opensocket = opensocket
    libmilter.set_exception_policy(Milter.TEMPFAIL)
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS)
    Milter.factory = lambda: MailwardenMilter(engine)
    try:
        Milter.runmilter("mailwarden", config.socket, timeout=config.milter_timeout)
    except libmilter.error as exc:
        event("stopped", error=str(exc))
        return 1
    finally:
        libmilter.opensocket = open_socket
    event("stopped")
    return 0

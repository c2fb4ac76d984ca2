"""Configuration F: a pymilter milter that answers every callback and does nothing else.

It is the ceiling for any milter built on pymilter: whatever mailwarden costs beyond it is mailwarden's own
work. Like mailwarden it answers every stage (pymilter's default callbacks are `@nocallback`, which would
let Postfix skip stages and hide the protocol's cost) and sets TCP_NODELAY on an inet listener, through
mailwarden's own socket preparation so that both get exactly the same socket.

    python -m bench.noop_milter unix:/path/milter.sock | inet:PORT@127.0.0.1
"""

from __future__ import annotations

import sys

import Milter
import milter as libmilter

from mailwarden.config import Config
from mailwarden.daemon import prepare_socket


class NoopMilter(Milter.Base):
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        return Milter.CONTINUE

    def hello(self, heloname: str) -> int:
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        return Milter.CONTINUE

    def data(self) -> int:
        return Milter.CONTINUE

    def header(self, name: str, value: str) -> int:
        return Milter.CONTINUE

    def eoh(self) -> int:
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.CONTINUE

    def abort(self) -> int:
        return Milter.CONTINUE

    def unknown(self, command: str) -> int:
        return Milter.CONTINUE

    def close(self) -> int:
        return Milter.CONTINUE


def main() -> None:
    spec = sys.argv[1]
    open_socket = libmilter.opensocket

    def opensocket(remove_stale: bool) -> object:
        result = open_socket(remove_stale)
        prepare_socket(Config(socket=spec, socket_mode=0o666, authserv_id="noop.bench.test"))
        return result

    libmilter.opensocket = opensocket
    Milter.factory = NoopMilter
    Milter.runmilter("noop", spec, timeout=600)


if __name__ == "__main__":
    main()

"""The signed-mail workload's Python cost per message, in process: no MTA, no milter protocol, no socket.

    .venv/bin/python -m bench.signed_inprocess [--messages 3000] [--rounds 5] [--profile FILE.pstats] [--stages]

One signed message (bench/run.py's: RSA 2048, relaxed/relaxed, 2 KB body, DMARC p=reject) goes through
mailwarden's callbacks exactly as pymilter's glue calls them for a unix socket (negotiate, connect, helo,
envfrom_bytes, envrcpt_bytes, header_bytes per field with the value as Postfix passes it, body, eom, close),
on a fake libmilter context that records the header edits, with bench/run.py's configuration for B (the
bounce classifier loaded: it looks at every From field; no event store: no bounce is sent). The DNS answers
come from the loopback DNS server and are cached after the first message (as in the Postfix benchmark, TTL
3600). The decision line is formatted by the production handler and written to /dev/null.

It prints the median over rounds of the CPU time (process time) per message; --stages adds what each
engine step costs alone; --profile writes a cProfile of one round. Run it before and after a change, on a
quiet machine or several times: these are the figures docs/benchmarks.md gives per change.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import time

import Milter

from bench.lab import mailwarden_config, zone_for
from bench.milter_direct import SignedMessage
from bench.run import RECIPIENT, SIGNED_CLIENT
from mailwarden.config import parse
from mailwarden.engine import Engine
from mailwarden.log import logger, setup
from mailwarden.protocols import UnixMilter
from tests.dnsserver import TestDNSServer, merge
from tests.signing import dmarc_zone, key_zone


class FakeContext:
    """libmilter's context as pymilter's Base uses it: macros, replies, header edits (kept to be checked)."""

    def __init__(self, queue_id: str) -> None:
        self.macros = {"i": queue_id, "j": "mx.bench.test"}
        self.priv: object = None
        self.added: list[tuple[str, str, int]] = []

    def getpriv(self) -> object:
        return self.priv

    def setpriv(self, priv: object) -> None:
        self.priv = priv

    def getsymval(self, name: str) -> str | None:
        return self.macros.get(name)

    def setreply(self, *args: object) -> None:
        raise AssertionError(f"reply set: {args}")

    def addheader(self, name: str, value: str, index: int = -1) -> None:
        self.added.append((name, value, index))

    def chgheader(self, name: str, index: int, value: str) -> None:
        self.added.append((name, value, index))

    def quarantine(self, reason: str) -> None:
        raise AssertionError("quarantined")


class Workload:
    def __init__(self) -> None:
        client = SIGNED_CLIENT
        zone = merge(zone_for([client]), key_zone(client.domain), dmarc_zone(client.domain, "v=DMARC1; p=reject"))
        self.dns = TestDNSServer(zone, ttl=3600).start()
        settings = parse(mailwarden_config("unix:/unused", self.dns.port))
        self.engine = Engine.from_config(settings)  # as bench/run.py's B: bounce classifier loaded, no store
        setup()
        for handler in logger.handlers:  # formatted as in production, then discarded
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        self.client = client
        signed = SignedMessage.make(client)
        self.fields = [(name, value.encode()) for name, value in signed.fields]
        self.body = signed.body.encode()
        Milter.factory = lambda: UnixMilter(self.engine, _Gate())
        self.last: FakeContext | None = None

    def one(self, number: int) -> None:
        client = self.client
        ctx = FakeContext(f"Q{number:010X}")
        opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
        Milter.negotiate_callback(ctx, opts)
        Milter.connect_callback(ctx, client.host, 4, (client.ip, 40000))
        m = ctx.getpriv()
        m.hello(client.host)
        m.envfrom_bytes(f"<{client.sender}>".encode())
        m.envrcpt_bytes(f"<{RECIPIENT}>".encode())
        for name, value in self.fields:
            m.header_bytes(name, value)
        m.body(self.body)
        m.eom()
        Milter.close_callback(ctx)
        self.last = ctx

    def run(self, count: int) -> float:
        start = time.process_time()
        for number in range(count):
            self.one(number)
        return (time.process_time() - start) / count


class _Gate:
    def enter(self) -> bool:
        return True

    def leave(self) -> None:
        pass


def _patch_ctx() -> None:
    """negotiate_callback calls m._setctx(ctx); the C context keeps the object by setpriv, done here."""
    original = Milter.Base._setctx

    def setctx(self: Milter.Base, ctx: object) -> None:
        original(self, ctx)
        if ctx is not None:
            ctx.setpriv(self)  # type: ignore[attr-defined]

    Milter.Base._setctx = setctx  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of one more round here")
    args = parser.parse_args()
    _patch_ctx()
    work = Workload()
    try:
        work.run(50)  # DNS cache, lru caches, first-call costs
        added = work.last.added if work.last else []
        summary = [v for n, v, _ in added if n == "Authentication-Results"]
        if not summary or "dkim=pass" not in summary[0] or "dmarc=pass" not in summary[0]:
            print("signed message did not pass:", added, file=sys.stderr)
            return 1
        per = [work.run(args.messages) for _ in range(args.rounds)]
        print(f"CPU per message: median {statistics.median(per) * 1e6:.1f} µs "
              f"(min {min(per) * 1e6:.1f}, max {max(per) * 1e6:.1f}; {args.rounds} rounds × {args.messages})")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            work.run(args.messages)
            profiler.disable()
            profiler.dump_stats(args.profile)
    finally:
        work.dns.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

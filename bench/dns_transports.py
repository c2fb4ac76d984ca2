"""What a lookup costs over DNS over TLS against plain DNS, through mailwarden's resolver, on loopback.

    .venv/bin/python -m bench.dns_transports [--lookups 3000] [--rounds 5] [--json FILE]

One Debian unbound (tests/unbound.py, forwarding to the tests' DNS server) serves plain DNS and DNS over TLS
on two ports, so that the two transports differ in nothing but the client's side of the wire: UDP
(dnspython's Do53Nameserver) against TLS (mailwarden's TlsNameserver, one kept connection). Each name is
asked once, so unbound's cache never answers, but it keeps the TTLs for mailwarden's cache. The tests' DNS
server itself, asked over UDP, is the third row: what the path through unbound adds.

- cached: the same name again and again after one lookup (the resolver's cache; the transport is never used);
- uncached: a name never asked before, one lookup at a time, over a warm connection for TLS;
- 20 threads: uncached lookups from 20 threads at once (TLS: all pipelined on one connection);
- first lookup on a new TLS connection: TCP + TLS handshake + the query.

Rounds alternate the transports (UDP, TLS, direct, then the next round), so that the machine's drift hits
all of them alike; per-lookup figures are the medians over rounds of each round's p50 / mean / p99.
Prints the machine and its load average before and after. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dns.nameserver import Do53Nameserver

from bench.lab import machine
from mailwarden.dns import Budget, Resolver
from mailwarden.dot import TlsNameserver, tls_context
from tests.dnsserver import TestDNSServer
from tests.tlscerts import TestCA
from tests.unbound import UnboundDoT

AUTH_NAME = "dns.bench.test"
THREADS = 20


def timed(lookup: Callable[[str], object], names: list[str]) -> list[float]:
    """Microseconds per lookup, one at a time."""
    out = []
    for name in names:
        start = time.perf_counter()
        lookup(name)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def threaded(lookup: Callable[[str], object], names: list[str]) -> float:
    """Lookups per second with THREADS threads sharing the names."""
    chunks = [names[i::THREADS] for i in range(THREADS)]
    threads = [threading.Thread(target=lambda c=chunk: [lookup(n) for n in c]) for chunk in chunks]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(names) / (time.perf_counter() - start)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": ordered[len(ordered) // 2], "mean": statistics.fmean(ordered),
            "p99": ordered[int(len(ordered) * 0.99)]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=3000, help="uncached lookups per transport per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    names = [f"u{i}.bench.test" for i in range((2 * args.lookups + 1) * args.rounds * 3)]  # 3 transports
    server = TestDNSServer({name: [("A", "192.0.2.1")] for name in names}, ttl=3600).start()
    directory = Path(tempfile.mkdtemp(prefix="mw-dns-bench-"))
    ca = TestCA(directory)
    unbound = UnboundDoT(server.port, ca.issue(AUTH_NAME), directory, cache_max_ttl=3600).start()
    context = tls_context(str(ca.pem))
    transports = {
        "UDP via unbound": lambda: Resolver([Do53Nameserver("127.0.0.1", unbound.plain_port)], timeout=2.0),
        "TLS via unbound": lambda: Resolver([TlsNameserver("127.0.0.1", unbound.port, AUTH_NAME, context)],
                                            timeout=2.0),  # fmt: skip
        "UDP to the test server": lambda: Resolver([server.nameserver()], timeout=2.0),
    }
    load_before = os.getloadavg()
    unused = iter(names)
    results: dict[str, dict[str, list]] = {kind: {"cached": [], "uncached": [], "threads": [], "first": []}
                                           for kind in transports}  # fmt: skip
    for _ in range(args.rounds):
        for kind, make in transports.items():
            resolver = make()
            first = next(unused)
            start = time.perf_counter()
            resolver.lookup(first, "A", Budget(5))  # TLS: opens the connection
            results[kind]["first"].append((time.perf_counter() - start) * 1e6)

            def lookup(name: str, resolver: Resolver = resolver) -> object:
                return resolver.lookup(name, "A", Budget(5))

            results[kind]["cached"].append(summary(timed(lookup, [first] * args.lookups)))
            results[kind]["uncached"].append(summary(timed(lookup, [next(unused) for _ in range(args.lookups)])))
            results[kind]["threads"].append(threaded(lookup, [next(unused) for _ in range(args.lookups)]))
    load_after = os.getloadavg()
    unbound.stop()
    server.stop()

    report = {"machine": machine(), "load_before": load_before, "load_after": load_after, "args": vars(args),
              "results": {}}  # fmt: skip
    print(f"machine: {report['machine']}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f}; {args.rounds} rounds x {args.lookups} lookups per transport\n")  # fmt: skip
    print("| transport | cached p50 / mean µs | uncached p50 / mean / p99 µs | 20 threads lookups/s | first lookup "
          "on a new connection µs |")  # fmt: skip
    print("|---|---|---|---|---|")
    for kind, measured in results.items():
        row = {phase: {k: statistics.median(r[k] for r in measured[phase]) for k in ("p50", "mean", "p99")}
               for phase in ("cached", "uncached")}  # fmt: skip
        row["threads"] = statistics.median(measured["threads"])
        row["first"] = statistics.median(measured["first"])
        report["results"][kind] = row
        cached, uncached = row["cached"], row["uncached"]
        print(f"| {kind} | {cached['p50']:.1f} / {cached['mean']:.1f} | {uncached['p50']:.0f} / "
              f"{uncached['mean']:.0f} / {uncached['p99']:.0f} | {row['threads']:.0f} | {row['first']:.0f} |")
    udp, tls = report["results"]["UDP via unbound"], report["results"]["TLS via unbound"]
    print(f"\nTLS - UDP, uncached p50: {tls['uncached']['p50'] - udp['uncached']['p50']:+.0f} µs, mean: "
          f"{tls['uncached']['mean'] - udp['uncached']['mean']:+.0f} µs; cached p50: "
          f"{tls['cached']['p50'] - udp['cached']['p50']:+.1f} µs")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

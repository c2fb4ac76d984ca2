"""mailwarden alone, driven over the milter protocol with no MTA: its own msg/s, per-callback cost, and RSS.

    sudo .venv/bin/python -m bench.milter_direct [--messages 2000] [--concurrency 1 20 200] [--socket unix|inet]
                                                 [--profile DIR]

The client plays Postfix 3.7's side of the protocol (same macros, one milter connection per SMTP session,
one message per session, every stage sent) over asyncio, with miltertest's codec for the wire format.
`mailwarden run` gets a unix socket (or, with --socket inet, a TCP one) and the loopback DNS server. Two DNS
modes:

- cached: 50 clients, each seen once before the measurement, so every lookup is a cache hit;
- uncached: every session is a client never seen before (its own PTR name, HELO domain, sender domain and
  SPF include), so every session costs 5 DNS queries: PTR, A, TXT of the HELO name, TXT of the sender
  domain and of its include.

Per callback it reports the round trip seen by the client (at 1 session that is the milter's own cost plus
one unix-socket hop); per message the milter's CPU; after the 200-session loads the peak RSS (VmHWM).
Any reply other than continue, any protocol error or timeout counts as an error; exits 1 if there is one.
With --profile, py-spy samples the daemon during the 20-session cached load and the hottest functions are
printed (the raw collapsed stacks are kept in DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from miltertest import codec
from miltertest import constants as smfi

from bench.lab import (
    AUTHSERV_ID,
    DNS_TTL,
    Client,
    Endpoint,
    MilterProcess,
    Spread,
    machine,
    mailwarden_config,
    process_cpu,
    synthetic_clients,
    work_dir,
    zone_for,
)
from bench.run import RECIPIENT, SIGNED_CLIENT, signed_message
from mailwarden.config import BounceConfig, parse
from mailwarden.engine import Engine
from mailwarden.log import logger, setup
from mailwarden.policy import ACCEPT
from mailwarden.session import Envelope, Session
from tests.dnsserver import TestDNSServer, merge
from tests.signing import dmarc_zone, key_zone

CACHED_CLIENTS = 50
TIMEOUT = 30.0  # seconds for one reply; libmilter or DNS trouble shows up as an error, not a hang
HEADERS = (
    ("From", "Alice <{sender}>"),
    ("To", "Bob <bob@example.org>"),
    ("Subject", "benchmark message {n}"),
    ("Date", "Fri, 27 Nov 2026 21:00:00 +0000"),
    ("Message-ID", "<{n}.bench@{host}>"),
    ("MIME-Version", "1.0"),
    ("Content-Type", "text/plain; charset=us-ascii"),
)
BODY = "This is a benchmark message.\r\n" * 32  # ~1 KB, like a short real message
NAMES = {"C": "connect", "H": "helo", "M": "mail", "R": "rcpt", "T": "data", "L": "header", "N": "eoh",
         "B": "body", "E": "eom"}  # fmt: skip
NO_REPLY = {"C": smfi.SMFIP_NR_CONN, "H": smfi.SMFIP_NR_HELO, "M": smfi.SMFIP_NR_MAIL, "R": smfi.SMFIP_NR_RCPT,
            "T": smfi.SMFIP_NR_DATA, "L": smfi.SMFIP_NR_HDR, "N": smfi.SMFIP_NR_EOH,
            "B": smfi.SMFIP_NR_BODY}  # fmt: skip
LEFT_OUT = {"C": smfi.SMFIP_NOCONNECT, "H": smfi.SMFIP_NOHELO, "M": smfi.SMFIP_NOMAIL, "R": smfi.SMFIP_NORCPT,
            "T": smfi.SMFIP_NODATA, "L": smfi.SMFIP_NOHDRS, "N": smfi.SMFIP_NOEOH,
            "B": smfi.SMFIP_NOBODY}  # fmt: skip
MODIFICATIONS = {smfi.SMFIR_ADDHEADER, smfi.SMFIR_INSHEADER, smfi.SMFIR_CHGHEADER}


# Replies other than continue that a clean message may get: accept at end of message, skip the rest of the body.
FINE = {(smfi.SMFIC_BODYEOB, smfi.SMFIR_ACCEPT), (smfi.SMFIC_BODY, smfi.SMFIR_SKIP)}


@dataclass(frozen=True)
class SignedMessage:
    """bench/run.py's signed message as Postfix passes it to a milter: its header fields with P_HDR_LEADSPC (the
    value verbatim after the colon, folded lines joined by LF, no final line end), Postfix's own Received on
    top, and the body."""

    fields: list[tuple[str, str]]
    body: str

    @classmethod
    def make(cls, client: Client) -> SignedMessage:
        head, _, body = signed_message(client).partition(b"\r\n\r\n")
        received = (f" from {client.host} ({client.host} [{client.ip}])\n\tby {AUTHSERV_ID} (Postfix) with ESMTP id "
                    f"4ABCDEF0123\n\tfor <{RECIPIENT}>; Mon,  1 Jan 2024 00:00:00 +0000 (UTC)")
        fields = [("Received", received)]
        for line in head.decode().split("\r\n"):
            if line[:1] in (" ", "\t"):
                fields[-1] = (fields[-1][0], fields[-1][1] + "\n" + line)
            else:
                name, _, value = line.partition(":")
                fields.append((name, value))
        return cls(fields, body.decode())


class ProtocolError(Exception):
    """The milter answered something Postfix would not have accepted for a clean message."""


@dataclass
class Tally:
    """What one load measured, across all its sessions."""

    rtt: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # per command code
    sessions: list[float] = field(default_factory=list)
    modifications: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    protocol: int = 0  # the milter's negotiated protocol flags: skipped stages and no-reply callbacks


class Conversation:
    """One milter connection, as Postfix opens one per SMTP session."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tally: Tally) -> None:
        self.reader = reader
        self.writer = writer
        self.tally = tally
        self.buffer = b""
        self.protocol = 0

    async def receive(self) -> tuple[str, dict]:
        while True:
            try:
                cmd, fields, self.buffer = codec.decode_msg(self.buffer)
            except codec.MilterIncomplete:
                data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
                if not data:
                    raise ProtocolError("milter closed the connection") from None
                self.buffer += data
                continue
            if cmd != smfi.SMFIR_PROGRESS:
                return cmd, fields

    async def negotiate(self) -> None:
        self.writer.write(codec.encode_optneg(smfi.SMFI_V6_ACTS, smfi.SMFI_V6_PROT))
        cmd, fields = await self.receive()
        if cmd != smfi.SMFIC_OPTNEG:
            raise ProtocolError(f"negotiation answered with {cmd!r}")
        self.protocol = self.tally.protocol = fields["protocol"]

    def macros(self, stage: str, **values: str) -> None:
        self.writer.write(codec.encode_msg(smfi.SMFIC_MACRO, cmdcode=stage,
                                           nameval=[x for item in values.items() for x in item]))  # fmt: skip

    async def call(self, cmd: str, **fields: object) -> None:
        """Send one command and wait for its reply, unless the milter negotiated the stage out (not sent, as
        Postfix does) or no reply for it."""
        if self.protocol & LEFT_OUT.get(cmd, 0):
            return
        start = time.perf_counter()
        self.writer.write(codec.encode_msg(cmd, **fields))
        if self.protocol & NO_REPLY.get(cmd, 0):
            return
        reply, _ = await self.receive()
        while cmd == smfi.SMFIC_BODYEOB and reply in MODIFICATIONS:
            self.tally.modifications[reply] += 1
            reply, _ = await self.receive()
        self.tally.rtt[cmd].append(time.perf_counter() - start)
        if reply != smfi.SMFIR_CONTINUE and (cmd, reply) not in FINE:
            raise ProtocolError(f"{NAMES.get(cmd, cmd)} answered {reply!r}")

    async def message(self, client: Client, number: int, signed: SignedMessage | None = None) -> None:
        await self.negotiate()
        self.macros("C", j="mx.bench.test", _=f"{client.host} [{client.ip}]", **{"{daemon_name}": "smtpd"})
        await self.call(smfi.SMFIC_CONNECT, hostname=client.host, family=smfi.SMFIA_INET, port=40000 + number % 20000,
                        address=client.ip)  # fmt: skip
        await self.call(smfi.SMFIC_HELO, helo=client.host)
        self.macros("M", **{"{mail_addr}": client.sender, "{mail_mailer}": "smtp"})
        await self.call(smfi.SMFIC_MAIL, args=[f"<{client.sender}>"])
        self.macros("R", **{"{rcpt_addr}": "bob@example.org", "{rcpt_mailer}": "smtp"})
        await self.call(smfi.SMFIC_RCPT, args=["<bob@example.org>"])
        self.macros("T", i=f"Q{number:010X}")
        await self.call(smfi.SMFIC_DATA)
        if signed is not None:
            leading = bool(self.protocol & smfi.SMFIP_HDR_LEADSPC)  # else Postfix cuts the space after the colon
            for name, value in signed.fields:
                await self.call(smfi.SMFIC_HEADER, name=name, value=value if leading else value.removeprefix(" "))
        else:
            for name, value in HEADERS:
                await self.call(smfi.SMFIC_HEADER, name=name, value=value.format(sender=client.sender, n=number,
                                                                                host=client.host))  # fmt: skip
        await self.call(smfi.SMFIC_EOH)
        await self.call(smfi.SMFIC_BODY, buf=signed.body if signed is not None else BODY)
        await self.call(smfi.SMFIC_BODYEOB)
        self.writer.write(codec.encode_msg(smfi.SMFIC_QUIT))
        await self.writer.drain()


async def open_milter(endpoint: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the milter as Postfix opens one (asyncio sets TCP_NODELAY on TCP, as libmilter's
    accepted sockets have it through mailwarden's listener)."""
    if endpoint.path is not None:
        return await asyncio.open_unix_connection(str(endpoint.path))
    return await asyncio.open_connection("127.0.0.1", endpoint.port)


async def one_session(endpoint: Endpoint, client: Client, number: int, tally: Tally,
                      signed: SignedMessage | None = None) -> None:
    start = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(open_milter(endpoint), TIMEOUT)
        await Conversation(reader, writer, tally).message(client, number, signed)
        tally.sessions.append(time.perf_counter() - start)
    except (OSError, TimeoutError, ProtocolError, codec.MilterProtoError) as exc:
        tally.errors.append(f"session {number} ({client.ip}): {type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()


async def load(endpoint: Endpoint, clients: list[Client], concurrency: int,
               signed: SignedMessage | None = None) -> tuple[Tally, float]:
    """Every client once, `concurrency` sessions in flight at any time; returns the tally and the wall time."""
    tally = Tally()
    queue = iter(enumerate(clients))

    async def worker() -> None:
        for number, client in queue:
            await one_session(endpoint, client, number, tally, signed)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally, time.perf_counter() - start


@dataclass
class Result:
    dns: str
    concurrency: int
    messages: int
    wall: float
    milter_cpu: float
    dns_queries: int
    rss_peak: int
    tally: Tally

    def line(self) -> str:
        rtt = self.tally.rtt
        per_callback = " | ".join(
            f"{_mean(rtt[code]) * 1e3:.3f}" if rtt.get(code) else "-" for code in ("C", "H", "M", "R", "L", "E")
        )
        sessions = sorted(self.tally.sessions) or [0.0]
        return (
            f"| {self.dns} | {self.concurrency} | {self.messages / self.wall:.0f} | "
            f"{self.milter_cpu / self.messages * 1e3:.2f} | {sessions[len(sessions) // 2] * 1e3:.2f} | "
            f"{sessions[int(len(sessions) * 0.99)] * 1e3:.2f} | {per_callback} | "
            f"{self.dns_queries / self.messages:.2f} | {self.rss_peak / 2**20:.0f} | {len(self.tally.errors)} |"
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


class DirectBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = work_dir()
        # Every client the run will use, in one zone: the cached set and one fresh client per uncached session.
        fresh = args.messages * len(args.concurrency) * args.rounds
        self.clients = synthetic_clients(CACHED_CLIENTS + fresh)
        self.cached, self.fresh = self.clients[:CACHED_CLIENTS], iter(self.clients[CACHED_CLIENTS:])
        zone = zone_for(self.clients, shared_include=False)
        self.signed: SignedMessage | None = None
        if args.workload == "signed":  # bench/run.py's signed workload: one client, DNS cached, as through Postfix
            client = SIGNED_CLIENT
            self.cached = [client]
            zone = merge(zone_for([client]), key_zone(client.domain), dmarc_zone(client.domain, "v=DMARC1; p=reject"))
            self.signed = SignedMessage.make(client)
        self.dns = TestDNSServer(zone, ttl=DNS_TTL).start()
        endpoint = self.endpoint = Endpoint.make(args.socket, self.base)
        if args.milter == "noop":
            argv = [sys.executable, "-m", "bench.noop_milter", endpoint.milter]
            self.milter = MilterProcess("noop", argv, endpoint, self.base).start()
        else:
            self.milter = MilterProcess.mailwarden(endpoint, self.base, self.dns.port).start()

    def close(self) -> None:
        self.milter.stop()
        self.dns.stop()
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def measure(self, mode: str, concurrency: int, profile: Path | None = None) -> Result:
        if mode == "cached":
            # Each cached client once more first: an uncached load before may have evicted them (LRU cache).
            asyncio.run(load(self.endpoint, self.cached, 1, self.signed))
            clients = [self.cached[i % len(self.cached)] for i in range(self.args.messages)]
        else:
            clients = [next(self.fresh) for _ in range(self.args.messages)]
        cpu, queries = process_cpu(self.milter.pid), len(self.dns.queries)
        spy = self.start_profile(profile) if profile else None
        tally, wall = asyncio.run(load(self.endpoint, clients, concurrency, self.signed))
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its output on SIGINT
            spy.wait(60)
        return Result(mode, concurrency, len(clients), wall, process_cpu(self.milter.pid) - cpu,
                      len(self.dns.queries) - queries, _peak_rss(self.milter.pid), tally)  # fmt: skip

    def start_profile(self, directory: Path) -> subprocess.Popen:
        directory.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = directory / "mailwarden.collapsed"
        proc = subprocess.Popen([spy, "record", "--pid", str(self.milter.pid), "--format", "raw", "--rate", "500",
                                 "--gil", "--output", str(out), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1.0)  # py-spy attaches before the load starts
        return proc


# Components of the profile, each sample counted once for the first one found on its stack, in this order.
COMPONENTS = (
    ("Prometheus metrics", ("prometheus_client/",)),
    ("SPF via pyspf", ("checks/spf.py",)),
    ("IPREV", ("checks/iprev.py",)),
    ("header rendering", ("(headers.py", "authres/")),
    ("decision log", ("(log.py", "logging/")),
    ("bounce classifier", ("classifier/",)),
    ("other mailwarden code", ("(callbacks.py", "(engine.py", "(session.py", "(config.py", "(dns.py", "checks/")),
    ("pymilter's Python glue", ("Milter/",)),
)


def hottest(collapsed: Path, top: int = 25) -> str:
    """Share of the GIL-holding samples per component, then per function (inclusive and self), busiest first."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    components: Counter = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip():  # a thread waiting in C (libmilter) with no Python frame: idle, not work
            continue
        frames = [_short(frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
        found = (name for name, marks in COMPONENTS if any(mark in stack for mark in marks))
        components[next(found, "other")] += samples
    parts = [f"{components[name] / total:6.1%}  {name}" for name, _ in components.most_common()]
    rows = [f"{inclusive[f] / total:6.1%} {own[f] / total:6.1%}  {f}" for f, _ in inclusive.most_common(top)]
    return (f"{total} samples holding the GIL\nshare   component\n" + "\n".join(parts)
            + "\n\ninclusive  self  function (file)\n" + "\n".join(rows))  # fmt: skip


def engine_costs(dns_port: int, clients: list[Client], repeat: int) -> str:
    """The engine's own stages in this process, DNS cached, no milter protocol: what each check costs.

    Subtracting these from the callbacks' round trips leaves pymilter's and the socket's share."""
    settings = parse(mailwarden_config("unix:/unused", dns_port))
    engine = Engine.from_config(replace(settings, bounce=BounceConfig(enabled=False)))
    setup()
    for handler in logger.handlers:  # the decision line is formatted as in production, then discarded
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    stages: dict[str, list[float]] = defaultdict(list)
    for round_ in range(repeat + 1):
        for client in clients:
            session = Session(ip=client.ip, hostname=client.host, helo=client.host)
            envelope = Envelope(sender=client.sender, queue_id="Q1")
            for name, step, arguments in (
                ("connect: IPREV", engine.connect, (session,)),
                ("mail: SPF HELO + MAIL FROM", engine.mail, (session, envelope)),
                ("rcpt: policy", engine.rcpt, (session, envelope, "bob@example.org")),
                ("eom: both headers", engine.result_headers, (session, envelope)),
                ("eom: decision log line", engine.log, (session, envelope, ACCEPT)),
            ):
                start = time.perf_counter()
                step(*arguments)
                if round_:  # round 0 fills the cache
                    stages[name].append(time.perf_counter() - start)
    rows = [f"| {name} | {statistics.median(t) * 1e6:.0f} | {_mean(t) * 1e6:.0f} |" for name, t in stages.items()]
    return "| engine stage (in process, DNS cached) | median µs | mean µs |\n|---|---|---|\n" + "\n".join(rows)


def _short(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)': lines of one function add up."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else function


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="sessions (one message each) per load")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20, 200])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--socket", choices=["unix", "inet"], default="unix", help="the milter's socket kind")
    parser.add_argument(
        "--milter",
        choices=("mailwarden", "noop"),
        default="mailwarden",
        help="noop: bench/noop_milter.py, pymilter's own cost for the same conversation",
    )
    parser.add_argument("--workload", choices=("plain", "signed"), default="plain",
                        help="signed: bench/run.py's DKIM-signed message from one client, cached DNS only")
    parser.add_argument("--profile", type=Path, help="py-spy the 20-session cached load, keep stacks here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (config, daemon log)")
    args = parser.parse_args()
    bench = DirectBench(args)
    results = []
    try:
        bench.measure("cached", 1)  # warm-up: code paths, libmilter threads, first DNS
        modes = ("cached",) if args.workload == "signed" else ("cached", "uncached")
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for mode in modes:
                    profile = args.profile if (args.profile and mode == "cached" and concurrency == 20) else None
                    result = bench.measure(mode, concurrency, profile)
                    results.append(result)
                    print(result.line(), file=sys.stderr, flush=True)
        alive = bench.milter.alive()
        plain = args.milter == "mailwarden" and args.workload == "plain"
        engine_table = engine_costs(bench.dns.port, bench.cached, 20) if plain else ""
    finally:
        bench.close()
    print(f"Machine: {machine()}  load average {os.getloadavg()[0]:.1f}")
    print("Command: python -m bench.milter_direct " + " ".join(sys.argv[1:]))
    print()
    print(
        "| DNS | sessions | msg/s | milter CPU ms/msg | session p50 ms | session p99 ms | connect ms | helo ms "
        "| mail ms | rcpt ms | header ms | eom ms | DNS queries/msg | peak RSS MB | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.line())
    for mode in ("cached", "uncached"):
        for concurrency in args.concurrency:
            rates = [r.messages / r.wall for r in results if r.dns == mode and r.concurrency == concurrency]
            if len(rates) > 1:
                print(f"{mode} {concurrency} sessions: msg/s {Spread.of(rates).fmt(0)}")
    flags = {r.tally.protocol for r in results}
    print(f"Negotiated protocol flags (stages skipped or left unanswered): {', '.join(hex(f) for f in flags)}")
    errors = [e for r in results for e in r.tally.errors]
    for error in errors[:10]:
        print("ERROR", error)
    if engine_table:
        print()
        print(engine_table)
    if args.profile:
        print()
        print(hottest(args.profile / "mailwarden.collapsed"))
    if not alive:
        print("ERROR mailwarden died during the run")
    return 1 if errors or not alive else 0


if __name__ == "__main__":
    sys.exit(main())

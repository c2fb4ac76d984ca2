"""The Postfix benchmark: what a milter costs inside a real MTA, against the MTA alone and against its peers.

    sudo .venv/bin/python -m bench.run [--rounds 3] [--messages 2000] [--latency-messages 300]

One private Postfix (tests/postfix.py) relays everything to an `smtp-sink`; the loopback DNS server
(tests/dnsserver.py) answers the client's PTR, A and SPF records; `smtp-source` sends one message per
connection. Configurations run interleaved, A F C B D on a unix socket then A F C B D on an inet socket,
round after round, so that machine noise spreads over all of them:

    A  Postfix alone                     F  no-op pymilter answering every callback (bench/noop_milter.py)
    C  pyspf-milter (spf-engine)         B  mailwarden: iprev + SPF HELO + SPF MAIL FROM + DKIM + DMARC
    D  mailwarden, with 20% of the messages (4 of the 20 sessions) DSNs from tests/data/dsn-corpus

`--workload signed` sends every message DKIM-signed (RSA 2048, relaxed/relaxed, a 2 KB body) by the sender's
domain, which publishes DMARC p=reject, and runs A F B against the signed-mail anchors of bench/anchors.py,
on unix sockets (the anchors stall on inet ones):

    K  OpenDKIM + OpenDMARC (two milters)  Y  dkimpy-milter

Every configuration gets a fresh milter process and a Postfix restart (Postfix keeps old smtpd processes on
the old milter after a reload). Each one is warmed up (DNS cache, Postfix processes, the ONNX model), then
measured with 20 parallel sessions and with 1 session. The clients connect from 127.0.0.1, so mailwarden
runs with `trusted_networks = []` and the zone answers for 127.0.0.1; that the checks really ran is
verified from mailwarden's decision log (iprev, HELO and MAIL FROM SPF all "pass" on every message; DKIM and
DMARC too for signed mail) and, for the other milters, from the DNS queries they made (none caches). Exits 1
if any message is lost or any configuration fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.anchors import ANCHOR_DNS, anchor
from bench.lab import (
    DNS_TTL,
    DSN_CORPUS,
    LOOPBACK_CLIENT,
    Client,
    Endpoint,
    MilterProcess,
    Spread,
    machine,
    process_cpu,
    tree_cpu,
    work_dir,
    zone_for,
)
from tests.dnsserver import TestDNSServer, free_port, merge
from tests.postfix import Postfix, wait_for
from tests.signing import dmarc_zone, key_zone, sign

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SESSIONS = 20
DSN_SESSIONS = 4  # of the 20 in configuration D
RECIPIENT = "bob@sink.bench.test"
ORDER = "AFCBD"
SIGNED_ORDER = "AFBKY"
NAMES = {
    "A": "Postfix alone",
    "F": "no-op pymilter",
    "C": "pyspf-milter",
    "B": "mailwarden",
    "D": "mailwarden + 20% DSNs",
    "K": "OpenDKIM + OpenDMARC",
    "Y": "dkimpy-milter",
}
PASS_LINE = re.compile(r"^info decision .*iprev=pass spf-helo=pass spf-mailfrom=pass .*action=accept", re.M)
SIGNED_PASS_LINE = re.compile(r"^info decision .*iprev=pass spf-helo=pass spf-mailfrom=pass dkim=pass .*dmarc=pass "
                              r".*action=accept", re.M)  # fmt: skip
# libunbound (OpenDKIM's resolver) answers names under .test itself (NXDOMAIN): signed mail comes from .example.
SIGNED_CLIENT = Client("127.0.0.1", "client.bench.example", "sender.bench.example")
SIGNED_BODY = "".join(f"Line {i:02d} of the quarterly report, as  sent by the  sender's MTA.\r\n" for i in range(30))


@dataclass(frozen=True)
class Job:
    """One smtp-source process."""

    sessions: int
    messages: int
    sender: str
    message_file: Path | None = None
    helo: str = LOOPBACK_CLIENT.host

    def argv(self, port: int) -> list[str]:
        argv = [SMTP_SOURCE, "-s", str(self.sessions), "-m", str(self.messages), "-M", self.helo,
                "-f", self.sender, "-t", RECIPIENT]  # fmt: skip
        if self.message_file is not None:
            argv += ["-F", str(self.message_file)]
        return [*argv, f"127.0.0.1:{port}"]


@dataclass
class Phase:
    """One measured load: wall time and what it cost whom."""

    sessions: int
    messages: int
    wall: float
    postfix_cpu: float
    milter_cpu: float
    dns_cpu: float  # this process, which serves DNS (and sleeps otherwise)
    dns_queries: int
    loadavg: float  # 1-minute load average at the end: this machine is shared, so say how busy it was

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def latency(self) -> float:
        """Mean seconds per connection: Little's law (sessions in flight / throughput)."""
        return self.sessions * self.wall / self.messages


@dataclass
class Run:
    round: int
    key: str
    socket: str  # "unix" | "inet"; A has none and is measured in both halves of a round
    load: Phase | None = None
    single: Phase | None = None
    milter_peak_rss: int = 0
    error: str = ""
    checks: dict[str, int] = field(default_factory=dict)


def dsn_files(count: int) -> list[Path]:
    """Real bounces from `count` different MTAs (the corpus's is_bounce labels), in a fixed order."""
    chosen: dict[str, Path] = {}
    for line in (DSN_CORPUS / "labels.jsonl").read_text().splitlines():
        label = json.loads(line)
        if label["is_bounce"] and label["module"] not in chosen:
            chosen[label["module"]] = DSN_CORPUS / label["file"]
    return sorted(chosen.values())[:: max(1, len(chosen) // count)][:count]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = work_dir()
        self.client = SIGNED_CLIENT if args.workload == "signed" else LOOPBACK_CLIENT
        zone = zone_for([self.client])
        self.signed: Path | None = None
        self.anchor_dns: TestDNSServer | None = None
        if args.workload == "signed":
            domain = self.client.domain
            zone = merge(zone, key_zone(domain), dmarc_zone(domain, "v=DMARC1; p=reject"))
            self.anchor_dns = TestDNSServer(zone, ttl=DNS_TTL, host=ANCHOR_DNS, port=53).start()
        self.dns = TestDNSServer(zone, ttl=DNS_TTL).start()
        self.sink_port = free_port()
        self.sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{self.sink_port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.postfix = Postfix(self.base, milter="", extra={
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "non_smtpd_milters": "",
        })  # fmt: skip
        self.postfix.start()
        self.maillog_offset = 0
        self.dsns = dsn_files(DSN_SESSIONS)
        if args.workload == "signed":
            self.signed = self.base / "signed.eml"
            self.signed.write_bytes(signed_message(self.client))

    def close(self) -> None:
        self.postfix.stop()
        self.sink.terminate()
        self.sink.wait(10)
        self.dns.stop()
        if self.anchor_dns is not None:
            self.anchor_dns.stop()
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def master_pid(self) -> int:
        return int((self.base / "queue" / "pid" / "master.pid").read_text().split()[0])

    def new_log_lines(self) -> str:
        path = self.base / "maillog"
        with path.open("rb") as log:
            log.seek(self.maillog_offset)
            data = log.read()
        self.maillog_offset += len(data)
        return data.decode(errors="replace")

    def jobs(self, key: str, sessions: int, messages: int) -> list[Job]:
        sender = self.client.sender
        if key != "D":
            return [Job(sessions, messages, sender, self.signed, self.client.host)]
        if sessions == 1:  # D's single-session latency is that of a classified DSN
            return [Job(1, messages, "", self.dsns[0])]
        per_dsn = max(1, messages * DSN_SESSIONS // SESSIONS // len(self.dsns))
        regular = messages - per_dsn * len(self.dsns)
        return [Job(sessions - len(self.dsns), regular, sender), *(Job(1, per_dsn, "", f) for f in self.dsns)]

    def phase(self, key: str, sessions: int, messages: int, milter: MilterProcess | None) -> Phase:
        jobs = self.jobs(key, sessions, messages)
        total = sum(j.messages for j in jobs)
        self.new_log_lines()
        before = self.counters(milter)
        start = time.perf_counter()
        procs = [subprocess.Popen(j.argv(self.postfix.smtp_port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for j in jobs]  # fmt: skip
        failures = []
        for job, proc in zip(jobs, procs, strict=True):
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0 or err.strip():
                failures.append(f"smtp-source {job} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
        wall = time.perf_counter() - start
        if failures:
            raise RuntimeError("\n".join(failures))
        self.wait_delivered(total)
        postfix_cpu, milter_cpu, dns_cpu, queries = (b - a for a, b in zip(before, self.counters(milter), strict=True))
        return Phase(sessions, total, wall, postfix_cpu, milter_cpu, dns_cpu, int(queries), os.getloadavg()[0])

    def counters(self, milter: MilterProcess | None) -> tuple[float, float, float, int]:
        """CPU seconds of Postfix, of the milter, of this process (the DNS server); DNS queries served."""
        queries = len(self.dns.queries) + (len(self.anchor_dns.queries) if self.anchor_dns else 0)
        return (tree_cpu(self.master_pid()), tree_cpu(milter.pid) if milter else 0.0, process_cpu(os.getpid()),
                queries)  # fmt: skip

    def wait_delivered(self, expected: int) -> None:
        """Every accepted message relayed to the sink: none deferred, bounced or left in the queue."""
        sent = 0

        def done() -> bool:
            nonlocal sent
            lines = self.new_log_lines()
            lost = re.findall(r".*status=(?:deferred|bounced).*", lines)
            if lost:
                raise RuntimeError("lost messages:\n" + "\n".join(lost[:5]))
            sent += lines.count("status=sent")
            return sent >= expected

        wait_for(done, 120, f"delivery of {expected} messages to the sink")
        if sent != expected:
            raise RuntimeError(f"{sent} deliveries for {expected} messages")

    def start_milter(self, key: str, endpoint: Endpoint, workdir: Path) -> MilterProcess:
        python = sys.executable
        if key == "F":
            argv = [python, "-m", "bench.noop_milter", endpoint.milter]
            return MilterProcess("noop", argv, endpoint, workdir).start()
        if key == "C":
            argv = [python, "-m", "bench.pyspf_milter", endpoint.milter, str(self.dns.port), str(workdir)]
            return MilterProcess("pyspf-milter", argv, endpoint, workdir).start()
        if key in "KY":
            argv, sockets = anchor(key, workdir)
            return MilterProcess(NAMES[key], argv, sockets, workdir).start()  # type: ignore[arg-type]
        return MilterProcess.mailwarden(endpoint, workdir, self.dns.port).start()

    def run_one(self, run: Run) -> None:
        workdir = self.base / f"r{run.round}-{run.key}-{run.socket}"
        milter = None
        try:
            workdir.mkdir(mode=0o755)
            if run.key != "A":
                milter = self.start_milter(run.key, Endpoint.make(run.socket, workdir), workdir)
            self.postfix.restart(milter=milter.endpoint.postfix if milter else "")
            q0 = len(self.dns.queries), len(self.anchor_dns.queries) if self.anchor_dns else 0
            warm = self.phase(run.key, SESSIONS, SESSIONS * 5, milter)
            run.load = self.phase(run.key, SESSIONS, self.args.messages, milter)
            run.single = self.phase(run.key, 1, self.args.latency_messages, milter)
            if milter is not None:
                run.milter_peak_rss = _peak_rss(milter.pid)
                if not milter.alive():
                    raise RuntimeError(f"{milter.name} died:\n{milter.log()[-2000:]}")
                messages = warm.messages + run.load.messages + run.single.messages
                run.checks = self.verify(run.key, milter, messages, q0)
        except Exception as exc:  # one failing configuration must not hide the others' figures
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if milter is not None:
                milter.stop()

    def verify(self, key: str, milter: MilterProcess, messages: int, queries_before: tuple[int, int]) -> dict[str, int]:
        """Proof that the checks ran on every message, not merely that mail went through."""
        if key in "BD":
            log = milter.log()
            passing = SIGNED_PASS_LINE if self.signed else PASS_LINE
            checks = {"decisions_all_pass": len(passing.findall(log)), "bounce_verdicts": log.count("info bounce ")}
            if checks["decisions_all_pass"] != messages:
                raise RuntimeError(f"{checks['decisions_all_pass']} passing decisions logged for {messages} messages")
            if key == "D" and checks["bounce_verdicts"] == 0:
                raise RuntimeError("no DSN was classified")
            return checks
        if key == "C":
            txt = sum(1 for name, qtype in self.dns.queries[queries_before[0]:]
                      if (name, qtype) == (self.client.domain, "TXT"))  # fmt: skip
            if txt < messages:
                raise RuntimeError(f"pyspf-milter looked up the sender's SPF {txt} times for {messages} messages")
            return {"sender_spf_lookups": txt}
        if key in "KY" and self.anchor_dns is not None:
            asked = self.anchor_dns.queries[queries_before[1]:]
            # OpenDKIM's libunbound caches the key: that it verified is proven by its rejecting what it cannot.
            name = f"_dmarc.{self.client.domain}" if key == "K" else f"sel._domainkey.{self.client.domain}"
            wanted = {"dmarc_lookups" if key == "K" else "key_lookups": name}
            counts = {what: asked.count((name, "TXT")) for what, name in wanted.items()}
            if min(counts.values()) < messages:
                raise RuntimeError(f"{NAMES[key]} made {counts} lookups for {messages} messages")
            return counts
        return {}


def _peak_rss(pid: int) -> int:
    """VmHWM of a milter, summed over its processes (an anchor runs its milters under one shell)."""
    try:
        pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        pids = [pid]
    total = 0
    for each in pids:
        status = Path(f"/proc/{each}/status")
        lines = status.read_text().splitlines() if status.exists() else []
        total += sum(int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:"))
    return total


def signed_message(client: Client) -> bytes:
    """The signed-mail workload's message: 2 KB, signed by the sender's domain with the tests' 2048-bit key."""
    sender = client.sender
    raw = (f"From: Alice <{sender}>\r\nTo: Bob <{RECIPIENT}>\r\nSubject: Quarterly report\r\n"
           f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <report@{client.domain}>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{SIGNED_BODY}").encode()  # fmt: skip
    return sign(raw, client.domain)


def _run_from_json(item: dict) -> Run:
    phases = {name: Phase(**item[name]) if item[name] else None for name in ("load", "single")}
    return Run(**{**item, **phases})


def schedule(rounds: int, order: str = ORDER) -> list[Run]:
    return [Run(r, key, sock) for r in range(1, rounds + 1) for sock in ("unix", "inet") for key in order]


RATIOS = (("F", "A"), ("B", "A"), ("B", "F"), ("B", "C"), ("D", "B"), ("B", "K"), ("B", "Y"), ("K", "A"), ("Y", "A"))


def ratio_rows(runs: list[Run]) -> list[tuple[str, str, Spread]]:
    """F/A, B/A, B/F, B/C, D/B (and for signed mail B/K, B/Y, K/A, Y/A) throughput and latency added over A,
    per socket kind, each within one half-round."""
    by = {(r.round, r.socket, r.key): r for r in runs if r.load is not None}
    rows = []
    for socket_kind in ("unix", "inet"):
        for top, bottom in RATIOS:
            values = [by[(n, socket_kind, top)].load.rate / by[(n, socket_kind, bottom)].load.rate
                      for n in {r.round for r in runs}
                      if (n, socket_kind, top) in by and (n, socket_kind, bottom) in by]  # fmt: skip
            if values:
                rows.append((f"{top}/{bottom}", socket_kind, Spread.of(values)))
        rounds = sorted(n for n in {r.round for r in runs} if (n, socket_kind, "A") in by)
        for key in ("F", "B", "K", "Y"):
            base = {n: by[(n, socket_kind, "A")].single.latency for n in rounds}
            added = [by[(n, socket_kind, key)].single.latency - base[n] for n in rounds if (n, socket_kind, key) in by]
            if added:
                rows.append((f"{key} − A, 1-session latency (ms)", socket_kind, Spread.of(v * 1000 for v in added)))
    return rows


def report(runs: list[Run], args: argparse.Namespace) -> str:
    ok = [r for r in runs if r.load is not None and not r.error]
    out = [f"Machine: {json.dumps(machine())}",
           f"Command: python -m bench.run --rounds {args.rounds} --messages {args.messages} "
           f"--latency-messages {args.latency_messages} --only {args.only} --sockets {args.sockets} "
           f"--workload {args.workload}", "",
           "| config | socket | msg/s (20 sessions) | latency 20 sessions ms | latency 1 session ms "
           "| Postfix CPU ms/msg | milter CPU ms/msg | DNS server CPU ms/msg | DNS queries/msg | milter peak RSS MB |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in dict.fromkeys(ORDER + SIGNED_ORDER):
        for socket_kind in ("unix", "inet") if key != "A" else ("-",):
            group = [r for r in ok if r.key == key and (key == "A" or r.socket == socket_kind)]
            if not group:
                continue
            loads = [r.load for r in group]
            singles = [r.single for r in group]
            out.append("| " + " | ".join([
                f"{key} {NAMES[key]}", socket_kind,
                Spread.of(p.rate for p in loads).fmt(0),
                Spread.of(p.latency for p in loads).fmt(1, 1000),
                Spread.of(p.latency for p in singles).fmt(2, 1000),
                Spread.of(p.postfix_cpu / p.messages for p in loads).fmt(2, 1000),
                Spread.of(p.milter_cpu / p.messages for p in loads).fmt(2, 1000),
                Spread.of(p.dns_cpu / p.messages for p in loads).fmt(2, 1000),
                Spread.of(p.dns_queries / p.messages for p in loads).fmt(2),
                Spread.of(r.milter_peak_rss for r in group).fmt(0, 2**-20) if key != "A" else "-",
            ]) + " |")  # fmt: skip
    out += ["", "| ratio | socket | median (min–max) |", "|---|---|---|"]
    out += [f"| {name} | {sock} | {spread.fmt(3 if '/' in name else 2)} |" for name, sock, spread in ratio_rows(runs)]
    if ok:
        loads = Spread.of(p.loadavg for r in ok for p in (r.load, r.single))
        out += ["", f"1-minute load average at the end of each load (this machine is shared): {loads.fmt(1)}"]
    failed = [r for r in runs if r.error]
    if failed:
        out += ["", "FAILED:"] + [f"  round {r.round} {r.key} {r.socket}: {r.error}" for r in failed]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="messages per 20-session load")
    parser.add_argument("--latency-messages", type=int, default=300, help="messages per 1-session load")
    parser.add_argument("--workload", default="plain", choices=["plain", "signed"],
                        help="signed: every message DKIM-signed, DMARC p=reject; A F B K Y on unix sockets")
    parser.add_argument("--only", help="configurations to run, e.g. AB (default AFCBD; signed: AFBKY)")
    parser.add_argument("--sockets", default="unix,inet", choices=["unix,inet", "unix", "inet"],
                        help="milter socket kinds to run (default both; signed: unix)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every run's raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--report", type=Path, help="print the report of a --json file again, run nothing")
    args = parser.parse_args()
    order = SIGNED_ORDER if args.workload == "signed" else ORDER
    args.only = args.only or order
    if args.workload == "signed":
        args.sockets = "unix"
    if args.report:
        runs = [_run_from_json(item) for item in json.loads(args.report.read_text())]
        print(report(runs, args))
        return 1 if any(r.error for r in runs) else 0
    bench = Bench(args)
    runs = [r for r in schedule(args.rounds, order) if r.key in args.only and r.socket in args.sockets.split(",")]
    try:
        for run in runs:
            bench.run_one(run)
            status = run.error or f"{run.load.rate:.0f} msg/s, 1 session {run.single.latency * 1000:.2f} ms"
            print(f"round {run.round} {run.key} {run.socket}: {status}", file=sys.stderr, flush=True)
    finally:
        bench.close()
    print(report(runs, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    if args.keep:
        print(f"work directory kept: {bench.base}", file=sys.stderr)
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())

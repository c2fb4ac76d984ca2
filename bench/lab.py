"""What both benchmarks share: the DNS data of the benchmark's clients, milter processes, CPU accounting, stats.

The test bed in tests/ (private Postfix, loopback DNS server) is reused as it is; this module only adds what a
benchmark needs on top of it: many synthetic clients whose SPF/PTR/A records all resolve, milters started as
separate processes (so that their CPU can be measured apart from Postfix's), and medians with their range.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.dnsserver import Zone, free_port, merge, reverse_name
from tests.postfix import Daemon, wait_for

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DSN_CORPUS = ROOT / "tests" / "data" / "dsn-corpus"
AUTHSERV_ID = "mx.bench.test"
PROVIDER = "_spf.provider.bench.test"  # the include most sender domains share, as with a big mail provider
DNS_TTL = 3600  # long enough that "warm" stays warm for a whole benchmark

MAILWARDEN_CONFIG = """\
socket = "{socket}"
socket_mode = "0666"
authserv_id = "{authserv_id}"
# The benchmark's clients come from loopback, which the default trusted_networks would exempt from every check.
trusted_networks = []

[dns]
nameservers = ["127.0.0.1:{dns_port}"]
timeout = 2.0
budget = 10.0

# The store of production (events, suppression, review), in the run's work directory; "" = none.
[events]
store = "{store}"
"""


@dataclass(frozen=True)
class Client:
    """One SMTP client identity whose DNS is complete: PTR -> host -> A, SPF for HELO and sender domain."""

    ip: str
    host: str
    domain: str

    @property
    def sender(self) -> str:
        return f"alice@{self.domain}"

    def zone(self, shared_include: bool = True) -> Zone:
        """IPREV passes, HELO SPF passes via `a`, MAIL FROM SPF passes through an include.

        With `shared_include` the include is the provider's (cached once for every client); without it each
        domain has its own, so that a new client misses the cache on every lookup."""
        include = PROVIDER if shared_include else f"_spf.{self.domain}"
        zone: Zone = {
            reverse_name(self.ip): [("PTR", self.host)],
            self.host: [("A", self.ip), ("TXT", "v=spf1 a -all")],
            self.domain: [("TXT", f"v=spf1 include:{include} -all")],
        }
        if not shared_include:
            zone[include] = [("TXT", "v=spf1 ip4:198.18.0.0/15 ip4:127.0.0.0/8 -all")]
        return zone


LOOPBACK_CLIENT = Client("127.0.0.1", "client.bench.test", "sender.bench.test")
PROVIDER_ZONE: Zone = {PROVIDER: [("TXT", "v=spf1 ip4:198.18.0.0/15 ip4:127.0.0.0/8 -all")]}


def synthetic_clients(count: int) -> list[Client]:
    """Distinct clients in 198.18.0.0/15 (RFC 2544 benchmarking range; they only exist as DNS data)."""
    base = int(ipaddress.ip_address("198.18.0.1"))
    return [Client(str(ipaddress.ip_address(base + i)), f"mx{i}.c{i}.bench.test", f"d{i}.bench.test")
            for i in range(count)]  # fmt: skip


def zone_for(clients: Iterable[Client], shared_include: bool = True) -> Zone:
    return merge(PROVIDER_ZONE, *(c.zone(shared_include) for c in clients))


def work_dir() -> Path:
    """A private directory the postfix user can traverse, outside /tmp/mailwarden-e2e-* (test runs in other
    sessions of this shared machine clean those up, which once removed a running benchmark's Postfix)."""
    base = Path(tempfile.mkdtemp(prefix="mailwarden-bench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    return base


def mailwarden_config(socket_spec: str, dns_port: int, store: str = "") -> str:
    return MAILWARDEN_CONFIG.format(socket=socket_spec, authserv_id=AUTHSERV_ID, dns_port=dns_port, store=store)


@dataclass(frozen=True)
class Endpoint:
    """A milter socket as the milter names it and as Postfix names it."""

    kind: str  # "unix" | "inet"
    milter: str  # libmilter's spec: unix:/path or inet:port@host
    postfix: str  # smtpd_milters: unix:/path or inet:host:port
    path: Path | None = None
    port: int = 0

    @classmethod
    def make(cls, kind: str, directory: Path) -> Endpoint:
        if kind == "unix":
            path = directory / "milter.sock"
            return cls(kind, f"unix:{path}", f"unix:{path}", path=path)
        port = free_port()
        return cls(kind, f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}", port=port)

    def ready(self) -> bool:
        if self.path is not None:
            return self.path.exists()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


class MilterProcess:
    """A milter run as its own process (its CPU and RSS are read from its pid)."""

    def __init__(self, name: str, argv: list[str], endpoint: Endpoint, workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.endpoint = endpoint
        self.logfile = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._daemon: Daemon | None = None

    @classmethod
    def mailwarden(cls, endpoint: Endpoint, workdir: Path, dns_port: int) -> MilterProcess:
        """`mailwarden run --config FILE`, started as tests/postfix.py's Daemon starts it."""
        milter = cls("mailwarden", [], endpoint, workdir)
        milter._daemon = Daemon(mailwarden_config(endpoint.milter, dns_port, str(workdir / "events.sqlite")), workdir)
        milter.logfile = milter._daemon.stderr
        return milter

    def start(self) -> MilterProcess:
        if self._daemon is not None:
            self._daemon.start()
            self.proc = self._daemon.proc
        else:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.logfile.open("ab"),
                                         cwd=ROOT)  # fmt: skip
            wait_for(lambda: self.endpoint.ready() or self.proc.poll() is not None, 30, f"{self.name} to listen")
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        if self.endpoint.path is not None:
            os.chmod(self.endpoint.path, 0o666)  # the postfix user must be able to connect
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(40)  # mailwarden drains open sessions on SIGTERM
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (all its threads)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children, and the children it has already reaped.

    Postfix's master forks short-lived smtpd/cleanup/smtp processes and reaps them, so their time ends up in
    its children_user/children_system; the ones still running are counted from their own times."""
    try:
        master = psutil.Process(pid)
        times = master.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        children = master.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        try:
            child_times = child.cpu_times()
        except psutil.Error:
            continue
        total += child_times.user + child_times.system
    return total


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        data = list(values)
        return cls(statistics.median(data), min(data), max(data))

    def fmt(self, digits: int = 1, scale: float = 1.0) -> str:
        return f"{self.median * scale:.{digits}f} ({self.low * scale:.{digits}f}–{self.high * scale:.{digits}f})"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    postfix = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    import Milter  # the pymilter version is the one that matters for the milter protocol cost

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "postfix": postfix,
        "pymilter": getattr(Milter, "__version__", "?"),
    }

"""Fixtures for the reliability and security tests: a hostile DNS zone, a Postfix + mailwarden stack of our own
(raised process limits for the load test, extra per-domain policies), and helpers to read our headers back.

Long runs are opt-in: MAILWARDEN_NIGHTLY=1 turns the short CI versions of the fuzzing and soak tests into the
full ones (see docs/reliability.md).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import authres
import pytest

from ..conftest import AUTHSERV_ID, ZONE, daemon_config
from ..dnsserver import reverse_name
from ..postfix import POSTFIX, Daemon, Postfix, wait_for
from .hostiledns import HostileDNSServer

NIGHTLY = os.environ.get("MAILWARDEN_NIGHTLY", "") not in ("", "0")


def scale(ci: int, nightly: int) -> int:
    """How many inputs/messages a test runs: `ci` by default, `nightly` with MAILWARDEN_NIGHTLY=1.
    MAILWARDEN_SCALE=N overrides both (for measuring)."""
    if os.environ.get("MAILWARDEN_SCALE"):
        return int(os.environ["MAILWARDEN_SCALE"])
    return nightly if NIGHTLY else ci


# -- the hostile zone: DNS faults and reverse-DNS names with odd bytes, on top of the e2e zone --------------

FAULT_IP = "192.0.2.60"  # ten PTR names, each one timing out
SPOOF_IP = "192.0.2.61"  # PTR answered by a spoofed (mismatched id) packet first
HOSTILE_PTR = {  # client address -> the PTR target as raw label bytes (each also has an A record back)
    "192.0.2.101": b"evil;spf=pass.smtp.mailfrom=paypal.test",
    "192.0.2.102": b'a"b(c)d\\e f.test',
    "192.0.2.103": b"x\r\nX-Injected: 1.test",
    "192.0.2.104": b"nul\x00del\x7fbell\x07.test",
    "192.0.2.105": b"b\xc3\xbccher.\xe4\xb8\xad.test",  # 8-bit (the test server's dnslib cannot parse \xff)
    "192.0.2.106": b".".join([b"a" * 63] * 3 + [b"b" * 61]),  # 255 octets on the wire, the maximum
}
FILLER = "x" * 200


def _zone_key(raw: bytes) -> str:
    """How the test DNS server names a raw name in its zone (it decodes query names as UTF-8 with replace)."""
    return raw.decode("utf-8", "replace").lower()


HOSTILE_ZONE = {
    **ZONE,
    # DNS faults, each as the whole SPF record of a sender domain (or reached from it)
    "timeout.test": [("TIMEOUT", None)],
    "servfail.test": [("SERVFAIL", None)],
    "refused.test": [("REFUSED", None)],
    "garbage.test": [("GARBAGE", None)],
    "wrongid.test": [("WRONGID", None)],  # only answers with a mismatched query id
    "spoofed.test": [("SPOOF", None), ("TXT", "v=spf1 -all")],  # spoofed packets say "+all" first
    "cname-loop.test": [("CNAME", "loop2.test")],
    "loop2.test": [("CNAME", "cname-loop.test")],
    "truncated.test": [("TXT", "v=spf1 ip4:192.0.2.10 -all")] + [("TXT", f"filler {i} {FILLER}") for i in range(4)],
    "huge.test": [
        (
            "TXT",
            [f"v=spf1 ip4:192.0.2.10 {'ip4:198.51.100.1 ' * 10}", *[f"ip4:203.0.113.{i} " for i in range(200)], "-all"],
        )
    ]
    + [("TXT", [FILLER] * 5) for _ in range(50)],  # ~60 KB of TXT: only TCP can carry it  # fmt: skip
    "toomany.test": [("TXT", "v=spf1 " + " ".join(f"include:l{i}.test" for i in range(11)) + " -all")],
    **{f"l{i}.test": [("TXT", "v=spf1 -all")] for i in range(11)},
    "ten.test": [("TXT", "v=spf1 " + " ".join(f"include:l{i}.test" for i in range(10)) + " ip4:192.0.2.10 -all")],
    "void.test": [("TXT", "v=spf1 a:v1.test a:v2.test a:v3.test ip4:192.0.2.10 -all")],
    "twovoid.test": [("TXT", "v=spf1 a:v1.test a:v2.test ip4:192.0.2.10 -all")],
    "double.test": [("TXT", "v=spf1 ip4:192.0.2.10 -all"), ("TXT", "v=spf1 -all")],
    "inc-timeout.test": [("TXT", "v=spf1 include:timeout.test -all")],
    # SPF text from a hostile zone ends up in problem= and in reply texts
    "hostile-spf.test": [("TXT", "v=spf1 ip4:192.0.2.10 bogus\r\nX-Injected: yes\x00\x7f -all")],
    "hostile-mech.test": [("TXT", 'v=spf1 include:a;b=c"d(e).evil.test -all')],
    'a;b=c"d(e).evil.test': [("TXT", "v=spf1 ip4:192.0.2.10 -all")],
    "hostile-exp.test": [("TXT", "v=spf1 -all exp=exp.hostile-exp.test")],
    "exp.hostile-exp.test": [("TXT", "Go away\r\nX-Injected: exp %{s}")],
    reverse_name(FAULT_IP): [("PTR", f"t{i}.timeout.test") for i in range(10)],
    **{f"t{i}.timeout.test": [("TIMEOUT", None)] for i in range(10)},
    reverse_name(SPOOF_IP): [("SPOOF", None), ("PTR", "real.spoof.test")],  # spoofed: spoofed.evil.test
    "real.spoof.test": [("A", SPOOF_IP)],
}
for _ip, _name in HOSTILE_PTR.items():
    HOSTILE_ZONE[reverse_name(_ip)] = [("PTR", _name)]
    HOSTILE_ZONE[_zone_key(_name)] = [("A", _ip)]

# Per-recipient-domain policies on top of the e2e ones (strict.test): example.com swaps defer and reject for the
# SPF error results, so that the tests can tell that the configured action (not a built-in one) was applied.
EXTRA_POLICY = """
[domains."example.com".policy]
spf_temperror = "reject"
spf_permerror = "defer"
iprev_temperror = "defer"
"""


class ServiceDaemon(Daemon):
    """tests.postfix.Daemon that can be started again (it waits for a new "listening" line, not any), run as
    another user, through a wrapper module instead of `mailwarden.cli` (e.g. one that plants a fault), or
    under a command that execs it (`ip netns exec NAME`: the pid stays the daemon's)."""

    module = "mailwarden.cli"
    popen_kwargs: dict = {}
    exec_prefix: tuple[str, ...] = ()

    def start(self, socket_path: Path | None = None) -> ServiceDaemon:
        listening = self.log().count(" listening ")
        self.proc = subprocess.Popen(
            [*self.exec_prefix, sys.executable, "-m", self.module, "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=self.stderr.open("ab"), **self.popen_kwargs,
        )  # fmt: skip
        wait_for(lambda: self.log().count(" listening ") > listening or self.proc.poll() is not None, 30,
                 "mailwarden to listen")  # fmt: skip
        if self.proc.poll() is not None:
            raise RuntimeError(f"mailwarden exited {self.proc.returncode}:\n{self.log()}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass
class Stack:
    base: Path
    dns: object
    daemon: ServiceDaemon
    postfix: Postfix

    @property
    def port(self) -> int:
        return self.postfix.smtp_port

    def stop(self) -> None:
        self.postfix.stop()
        self.daemon.stop()
        if not os.environ.get("MAILWARDEN_KEEP_E2E"):
            shutil.rmtree(self.base, ignore_errors=True)


# Postfix limits for 200+ simultaneous sessions from one client address (defaults: 100 processes, 50 per client).
LOAD_LIMITS = {
    "default_process_limit": "400",
    "smtpd_client_connection_count_limit": "0",
    "smtpd_client_connection_rate_limit": "0",
    "smtpd_client_message_rate_limit": "0",
    "smtpd_client_event_limit_exceptions": "",
    "in_flow_delay": "0",
}


def base_dir() -> Path:
    """Like tests.postfix.make_base_dir, but outside /tmp/mailwarden-e2e-*: test runs of other sessions on a
    shared machine clean those up, which removed a running soak's Postfix and Maildir here."""
    base = Path(tempfile.mkdtemp(prefix="mailwarden-reliability-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    return base


def start_stack(dns, extra_config: str = EXTRA_POLICY, extra_postfix: dict | None = None,
                daemon_cls: type[ServiceDaemon] = ServiceDaemon, budget: float | None = None) -> Stack:  # fmt: skip
    """A private Postfix + mailwarden; `dns` is anything with a loopback `port` (a test server, a Blackhole)."""
    if not Path(POSTFIX).exists():
        pytest.fail("Postfix is not installed: .ci/run installs it (apt-get install postfix)")
    base = base_dir()
    config = daemon_config(base, dns) + extra_config
    if budget is not None:
        assert "budget = 3.0" in config
        config = config.replace("budget = 3.0", f"budget = {budget}")
    daemon = daemon_cls(config, base)
    daemon.start()
    for attempt in range(3):
        postfix = Postfix(base, milter=f"unix:{base}/milter.sock", extra={**LOAD_LIMITS, **(extra_postfix or {})})
        try:
            postfix.start()
            break
        except subprocess.CalledProcessError as exc:  # seen once in CI-like runs: keep the reason, try again
            sys.stderr.write(f"postfix start failed (attempt {attempt + 1}): {exc.stderr!r} {exc.stdout!r}\n")
            postfix.stop()
            if attempt == 2:
                daemon.stop()
                raise
    return Stack(base, dns, daemon, postfix)


@pytest.fixture(scope="package")
def hostile_dns() -> Iterator[HostileDNSServer]:
    server = HostileDNSServer(HOSTILE_ZONE).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def stack(hostile_dns: HostileDNSServer) -> Iterator[Stack]:
    """Postfix (raised limits) + mailwarden from its CLI, resolving through the hostile zone."""
    stack = start_stack(hostile_dns)
    yield stack
    stack.stop()


# -- reading our headers back ------------------------------------------------------------------------------

DELIVERY_HEADERS = {"return-path", "x-original-to", "delivered-to"}


def header_names(message) -> list[str]:
    return [name.lower() for name, _ in message.items() if name.lower() not in DELIVERY_HEADERS]


def parse_ar(value: str) -> authres.AuthenticationResultsHeader:
    return authres.AuthenticationResultsHeader.parse_value(re.sub(r"\r?\n[ \t]", " ", value))


def our_ar(message) -> list[authres.AuthenticationResultsHeader]:
    values = message.get_all("Authentication-Results") or []
    return [h for h in (parse_ar(v) for v in values) if h.authserv_id.lower() == AUTHSERV_ID]


def results_by_key(ar: authres.AuthenticationResultsHeader) -> dict[str, tuple[str, str]]:
    """{"iprev": (result, policy.iprev), "smtp.helo": (result, value), "smtp.mailfrom": (result, value)}."""
    out = {}
    for result in ar.results:
        for prop in result.properties:
            key = "iprev" if result.method == "iprev" else f"{prop.type}.{prop.name}"
            out[key] = (result.result, unquote(prop.value))
    return out


def unquote(value: str) -> str:
    """A header value as written (authres keeps the quotes and quoted-pairs of quoted-strings)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


_PAIR = re.compile(r'\s*([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|[^;\s]*);')


def received_spf_pairs(value: str) -> tuple[str, dict[str, str]]:
    """(result word, {key: value}) of a Received-SPF value, or AssertionError if it does not parse strictly:
    `result (comment) key=value; key=value; ...` with nothing left over."""
    flat = re.sub(r"\r?\n[ \t]", " ", value)
    match = re.match(r"^([a-z]+) \(((?:[^()\\]|\\.)*)\)", flat)
    assert match, f"Received-SPF does not start with 'result (comment)': {value!r}"
    rest, pairs = flat[match.end() :], {}
    while rest.strip():
        pair = _PAIR.match(rest)
        assert pair, f"Received-SPF key-value list does not parse at {rest!r}"
        key, raw = pair.groups()
        assert key not in pairs, f"key {key} appears twice in {value!r}"
        pairs[key] = unquote(raw)
        rest = rest[pair.end() :]
    return match.group(1), pairs


def well_formed_field(name: str, value: str) -> None:
    """The value is one header field: printable ASCII, folded only with CRLF/LF + TAB, lines under 998, and the
    email parser reads back exactly one field of that name."""
    assert all(0x20 <= ord(c) < 0x7F or c in "\r\n\t" for c in value), repr(value)
    assert not re.search(r"\r?\n(?![ \t])", value), f"a line break that does not fold: {value!r}"
    assert all(len(line) < 998 for line in value.splitlines())
    raw = f"{name}: {value}".replace("\r\n", "\n").replace("\n", "\r\n") + "\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = email.message_from_string(raw, policy=email.policy.compat32)
    assert len(parsed.get_all(name) or []) == 1
    assert [k.lower() for k in parsed] == [name.lower(), "subject"]

"""The signed-mail anchors, as Debian packages them: OpenDKIM + OpenDMARC (the C pair, two milters in a row)
and dkimpy-milter. Each runs as shipped, with its stock settings except:

- loopback is checked: each one's list of internal/ignored hosts (which exempts 127.0.0.1, where the load
  generator connects from) names 192.0.2.254 instead;
- verify only (`Mode v`), our authserv-id, a socket in the run's work directory, runs as root, no syslog;
- OpenDMARC evaluates SPF itself (SPFSelfValidate) and trusts OpenDKIM's A-R (TrustedAuthservIDs);
- proof that they verified: OpenDKIM rejects a message whose signature is missing, bad or unverifiable
  (On-NoSignature and the other On-* reject) and OpenDMARC one that fails DMARC (RejectFailures): a lost
  message fails the benchmark. Every message passes, so this costs nothing but the check of the result;
- DNS: they read only /etc/resolv.conf (port 53), so each runs in a mount namespace of its own where
  /etc/resolv.conf names the benchmark's DNS server on 127.0.0.153:53 (bench/run.py serves the zone there
  too). OpenDKIM resolves through libunbound, which caches (as it would in production), told the same
  server with `Nameservers` (an unbound configuration file, ResolverConfiguration, is re-read per
  connection and broke under 20 sessions: "unknown keyword" and 451s). libunbound answers names under the
  special-use .test itself, so signed mail comes from sender.bench.example. Nothing of the machine's own
  resolver configuration changes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from bench.lab import AUTHSERV_ID

ANCHOR_DNS = "127.0.0.153"  # served on port 53 for the anchors' resolv.conf
NOT_US = "192.0.2.254"  # the internal host every anchor is told about instead of 127.0.0.1

OPENDKIM = """\
Mode v
Socket local:{dir}/opendkim.sock
PidFile {dir}/opendkim.pid
UMask 000
UserID root
Syslog no
AuthservID {authserv_id}
InternalHosts {dir}/internal.hosts
Nameservers {dns}
On-NoSignature reject
On-BadSignature reject
On-KeyNotFound reject
On-SignatureError reject
On-DNSError reject
"""
OPENDMARC = """\
Socket local:{dir}/opendmarc.sock
PidFile {dir}/opendmarc.pid
UMask 000
UserID root
Syslog false
AuthservID {authserv_id}
TrustedAuthservIDs {authserv_id}
IgnoreHosts {dir}/internal.hosts
SPFSelfValidate true
SPFIgnoreResults true
RejectFailures true
FailureReports false
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
"""
DKIMPY_MILTER = """\
Mode v
Socket local:{dir}/dkimpy-milter.sock
PidFile {dir}/dkimpy-milter.pid
UMask 000
UserID root
Syslog no
AuthservID {authserv_id}
InternalHosts {dir}/internal.hosts
"""


@dataclass(frozen=True)
class AnchorSockets:
    """The sockets of one anchor configuration, as bench.lab's Endpoint offers them to MilterProcess."""

    paths: tuple[Path, ...]
    kind: str = "unix"
    path: None = None  # each anchor sets its own socket mode (UMask 000)

    @property
    def postfix(self) -> str:
        return ", ".join(f"unix:{path}" for path in self.paths)

    def ready(self) -> bool:
        return all(path.exists() for path in self.paths)


def anchor(key: str, workdir: Path) -> tuple[list[str], AnchorSockets]:
    """(argv, sockets) of anchor K (OpenDKIM + OpenDMARC) or Y (dkimpy-milter), its files written in workdir."""
    values = {"dir": workdir, "authserv_id": AUTHSERV_ID, "dns": ANCHOR_DNS}
    (workdir / "internal.hosts").write_text(f"{NOT_US}\n")
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {ANCHOR_DNS}\noptions timeout:2 attempts:1\n")
    if key == "K":
        (workdir / "opendkim.conf").write_text(OPENDKIM.format(**values))
        (workdir / "opendmarc.conf").write_text(OPENDMARC.format(**values))
        commands = [f"opendkim -f -x {workdir}/opendkim.conf", f"opendmarc -f -c {workdir}/opendmarc.conf"]
        sockets = (workdir / "opendkim.sock", workdir / "opendmarc.sock")
    else:
        (workdir / "dkimpy-milter.conf").write_text(DKIMPY_MILTER.format(**values))
        commands = [f"/usr/bin/dkimpy-milter {workdir}/dkimpy-milter.conf"]
        sockets = (workdir / "dkimpy-milter.sock",)
    # The shell waits for its milters and passes SIGTERM on to them (MilterProcess.stop terminates it).
    started = "".join(f"{command} & pids=\"$pids $!\"; " for command in commands)
    script = (f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf || exit 1; {started}"
              f"trap 'kill $pids; wait' TERM; wait")  # fmt: skip
    return ["unshare", "-m", "sh", "-c", script], AnchorSockets(sockets)

"""Debian's unbound as a real DNS-over-TLS server on loopback, in front of the test DNS server.

Set to change the test server's answers as little as a recursive server can: it forwards every query
(`forward-zone "."`), validates nothing (iterator only), keeps nothing (`cache-max-ttl: 0`), keeps record
order (`rrset-roundrobin: no`), serves none of its built-in local zones for the test names, and keeps asking
a forwarder that timed out (`infra-keep-probing`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .dnsserver import free_port
from .tlscerts import ServerCert

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
LOCAL_ZONES = ("test.", "invalid.", "localhost.", "2.0.192.in-addr.arpa.", "100.51.198.in-addr.arpa.",
               "113.0.203.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa.", "127.in-addr.arpa.")  # fmt: skip

CONFIG = """\
server:
  interface: 127.0.0.1@{port}
  interface: 127.0.0.1@{plain_port}
  tls-port: {port}
  tls-service-key: "{key}"
  tls-service-pem: "{cert}"
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: ""
  use-syslog: no
  logfile: "{directory}/unbound.log"
  verbosity: 1
  num-threads: 1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  cache-max-ttl: {cache_max_ttl}
  cache-max-negative-ttl: 0
  rrset-roundrobin: no
  minimal-responses: no
  qname-minimisation: no
  prefetch: no
  infra-keep-probing: yes
  infra-host-ttl: 1
  unblock-lan-zones: yes
  insecure-lan-zones: yes
{local_zones}
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{dns_port}
"""


class UnboundDoT:
    __test__ = False

    def __init__(self, dns_port: int, cert: ServerCert, directory: Path, cache_max_ttl: int = 0) -> None:
        """`cache_max_ttl` > 0 lets unbound keep answers and pass their TTLs on (0: every TTL says 0)."""
        self.port = free_port()  # DNS over TLS
        self.plain_port = free_port()  # plain DNS (UDP and TCP), for comparisons
        self.directory = directory
        self.config = directory / "unbound.conf"
        local_zones = "\n".join(f'  local-zone: "{zone}" nodefault' for zone in LOCAL_ZONES)
        self.config.write_text(CONFIG.format(port=self.port, plain_port=self.plain_port, key=cert.key,
                                             cert=cert.cert, directory=directory, dns_port=dns_port,
                                             local_zones=local_zones, cache_max_ttl=cache_max_ttl))  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> UnboundDoT:
        if not Path(UNBOUND).exists():
            raise RuntimeError("unbound is not installed: .ci/run installs it (apt-get install unbound)")
        self.process = subprocess.Popen([UNBOUND, "-d", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.directory / "unbound.log").read_text(errors="replace") if self.directory.exists() else ""
        raise RuntimeError(f"unbound did not start on port {self.port}: {log[-2000:]}")

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye on its connections)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        """As `DoTRelay.close`: nothing of it is left (the process is all there is)."""
        self.stop()

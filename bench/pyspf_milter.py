"""Configuration C: pyspf-milter (spf-engine) as shipped, with two benchmark-only settings.

Its configuration file is written here: loopback clients are checked (its default skip_addresses and
InternalHosts exempt 127.0.0.0/8, which is where the load generator connects from), it runs as root, and it
keeps its stock debugLevel, actions and header. pyspf asks dnspython's default resolver, i.e. the system's
/etc/resolv.conf; the only change made here is to point that resolver at the benchmark's DNS server.

    python -m bench.pyspf_milter SOCKET DNS_PORT WORKDIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import dns.resolver

from bench.lab import AUTHSERV_ID

CONFIG = """\
debugLevel = 1
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 192.0.2.254/32
InternalHosts = 192.0.2.254
Authserv_Id = {authserv_id}
Socket = {socket}
PidFile = {workdir}/pyspf-milter.pid
UserID = root
"""


def main() -> None:
    socket_spec, dns_port, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    config = workdir / "pyspf-milter.conf"
    config.write_text(CONFIG.format(socket=socket_spec, workdir=workdir, authserv_id=AUTHSERV_ID))
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_port
    dns.resolver.default_resolver = resolver

    from spf_engine.milter_spf import main as pyspf_milter  # after the resolver is in place

    sys.argv = ["pyspf-milter", str(config)]
    pyspf_milter()


if __name__ == "__main__":
    main()

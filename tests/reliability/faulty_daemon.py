"""`mailwarden` with planted bugs, for the crash tests: `python -m tests.reliability.faulty_daemon run ...`.

- IPREV raises for the client 192.0.2.66;
- SPF (MAIL FROM) raises for senders in boom.test;
- writing the Authentication-Results field raises for senders crash@... (an exception outside any check,
  in the end-of-message callback);
- reading an Authentication-Results header field that says "planted-bug" raises (an exception in the header
  callback, a stage that takes no reply on a unix socket).
Everything else is the real daemon, started from its real command line.
"""

from __future__ import annotations

import sys

from mailwarden import cli, engine, headers
from mailwarden.checks import spf
from mailwarden.checks.iprev import IprevCheck

BOOM_IP = "192.0.2.66"


def _iprev(self, subject, dns, _run=IprevCheck.run):
    if subject.ip == BOOM_IP:
        raise RuntimeError("planted bug in iprev")
    return _run(self, subject, dns)


def _spf(identity, subject, dns, *args, _evaluate=spf.evaluate, **kwargs):
    if identity == "mailfrom" and (subject.sender or "").endswith("@boom.test"):
        raise KeyError("planted bug in spf")
    return _evaluate(identity, subject, dns, *args, **kwargs)


def _ar(authserv_id, results, skipped="", _render=headers.authentication_results):
    if any(getattr(r, "sender", "").startswith("crash@") for r in results):
        raise ZeroDivisionError("planted bug while writing Authentication-Results")
    return _render(authserv_id, results, skipped)


def _authserv_id_of(value, _parse=engine.authserv_id_of):
    if "planted-bug" in value:
        raise AttributeError("planted bug in the header callback")
    return _parse(value)


IprevCheck.run = _iprev
spf.evaluate = _spf
headers.authentication_results = _ar
engine.authserv_id_of = _authserv_id_of

if __name__ == "__main__":
    sys.exit(cli.main())

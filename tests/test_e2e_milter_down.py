"""No mail is lost when mailwarden is not there: Postfix answers 451 (milter_default_action = tempfail) and
delivers again once the daemon is back."""

from __future__ import annotations

import shutil

from .conftest import AUTHSERV_ID, GOOD_IP, daemon_config
from .postfix import Daemon, Postfix, make_base_dir
from .smtp import send


def test_milter_down_means_tempfail_and_back_up_means_delivery(dns_server):
    base = make_base_dir()
    daemon = Daemon(daemon_config(base, dns_server), base)
    postfix = Postfix(base, milter=f"unix:{base}/milter.sock").start()
    try:
        down = send(postfix.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
        assert down.mail_reply[0] == 451
        assert b"4.7.1" in down.mail_reply[1]
        daemon.start()
        up = send(postfix.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
        assert up.data_reply[0] == 250
        assert postfix.delivered(up.marker)["Authentication-Results"].startswith(AUTHSERV_ID)
    finally:
        postfix.stop()
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)

"""A private Postfix instance on loopback for end-to-end tests, and the mailwarden daemon plugged into it.

Postfix runs from its own config directory (`postfix -c`), listens on a loopback port, delivers the test
domains into one Maildir through virtual(8), lets the tests impersonate any client with XCLIENT, and sends
mail for `full.test` to the error(8) transport so that Postfix itself writes a real bounce (which reaches
the milter through non_smtpd_milters, as in production with internal_mail_filter_classes = bounce).
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from .dnsserver import free_port

POSTFIX = "/usr/sbin/postfix"
LOCAL_DOMAINS = ("example.org", "example.com", "strict.test", "lenient.test")
MASTER_CF = """\
{smtp_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Postfix:
    """One private Postfix instance; `milter` is the smtpd_milters value (set before start)."""

    def __init__(self, base: Path, milter: str, extra: dict[str, str] | None = None) -> None:
        self.base = base
        self.etc = base / "etc"
        self.maildir = base / "mail" / "inbox"
        self.smtp_port = free_port()
        self.milter = milter
        self.extra = extra or {}

    def write_config(self) -> None:
        nobody = pwd.getpwnam("nobody")
        for sub in ("etc", "queue", "data", "mail"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix", "postfix")
        os.chmod(self.base / "data", 0o700)
        shutil.chown(self.base / "mail", nobody.pw_uid, nobody.pw_gid)
        (self.etc / "transport").write_text("full.test error:5.2.2 Mailbox full: user is over quota\n")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.base / "queue"),
            "data_directory": str(self.base / "data"),
            "mail_owner": "postfix",
            "myhostname": "mx.mailwarden.test",
            "mydomain": "mailwarden.test",
            "myorigin": "mailwarden.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "all",  # IPv4 listener only, but XCLIENT may then claim IPv6 clients
            "mynetworks": "127.0.0.0/8",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "virtual_mailbox_domains": ", ".join(LOCAL_DOMAINS),
            "virtual_mailbox_base": str(self.base / "mail"),
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "virtual_minimum_uid": "1",
            "transport_maps": f"texthash:{self.etc / 'transport'}",
            "relay_domains": "full.test",
            "alias_maps": "",
            "alias_database": "",
            "smtputf8_enable": "no",
            "maillog_file": str(self.base / "maillog"),
            "maillog_file_prefixes": str(self.base),
            "smtpd_milters": self.milter,
            "non_smtpd_milters": self.milter,
            "internal_mail_filter_classes": "bounce",
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "smtp_dns_support_level": "disabled",
            "disable_dns_lookups": "yes",
            "smtpd_peername_lookup": "no",
            "delay_warning_time": "0",
            "bounce_queue_lifetime": "0",
            "maximal_queue_lifetime": "1h",
            **self.extra,
        }
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.etc / "master.cf").write_text(MASTER_CF.format(smtp_port=f"127.0.0.1:{self.smtp_port}"))

    def postfix(self, *args: str) -> None:
        subprocess.run([POSTFIX, "-c", str(self.etc), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> Postfix:
        self.write_config()
        self.postfix("start")
        wait_for(self._accepting, 20, "Postfix smtpd")
        return self

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                return True
        except OSError:
            return False

    def restart(self, milter: str | None = None) -> None:
        if milter is not None:
            self.milter = milter
            self.write_config()
        self.postfix("stop")
        self.postfix("start")
        wait_for(self._accepting, 20, "Postfix smtpd")

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, timeout=60)

    def sendmail(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Local submission (pickup, then the non_smtpd_milters path), as a local program would send."""
        subprocess.run(["/usr/sbin/sendmail", "-C", str(self.etc), "-f", sender, "--", *recipients], input=message,
                       check=True, capture_output=True, timeout=60)  # fmt: skip

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self, marker: str, timeout: float = 20) -> EmailMessage:
        """The delivered message whose raw text contains `marker` (waits for it)."""

        def find() -> EmailMessage | None:
            new = self.maildir / "new"
            for path in sorted(new.iterdir()) if new.exists() else []:
                raw = path.read_bytes()
                if marker.encode() in raw:
                    return email.message_from_bytes(raw, policy=email.policy.compat32)  # type: ignore[return-value]
            return None

        return wait_for(find, timeout, f"delivery of {marker}\n{self.log()[-3000:]}")


class Daemon:
    """`mailwarden run --config FILE` as a subprocess, as an administrator would start it."""

    def __init__(self, config_text: str, base: Path) -> None:
        self.base = base
        self.config = base / "mailwarden.toml"
        self.config.write_text(config_text)
        self.stderr = base / "mailwarden.log"
        self.proc: subprocess.Popen | None = None

    def start(self, socket_path: Path | None = None) -> Daemon:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailwarden.cli", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr.open("ab"),
        )
        wait_for(lambda: "listening" in self.log() or self.proc.poll() is not None, 20, "mailwarden to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"mailwarden exited {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def make_base_dir() -> Path:
    """A directory the postfix user can traverse (pytest's tmp dirs are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="mailwarden-e2e-"))
    os.chmod(base, 0o755)
    return base

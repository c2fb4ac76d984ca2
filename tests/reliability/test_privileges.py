"""Privileges: the milter socket gets `socket_mode` and that mode is what decides who may connect (Postfix
through the group, nobody else); the daemon serves Postfix as an unprivileged user; the metrics endpoint is
off unless configured, and bound to exactly the configured (loopback) address."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import mailwarden
import mailwarden.classifier

from ..conftest import AUTHSERV_ID, GOOD_IP
from ..dnsserver import free_port
from ..postfix import Postfix
from .conftest import LOAD_LIMITS, ServiceDaemon, base_dir
from .rawsmtp import transaction

BASE_CONFIG = """\
socket = "unix:{sock}"
socket_mode = "{mode}"
authserv_id = "mx.mailwarden.test"
[dns]
nameservers = ["127.0.0.1:{dns}"]
timeout = 0.5
budget = 3.0
[bounce]
enabled = false
"""


@pytest.fixture
def base():
    path = base_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_daemon(base: Path, dns_port: int, mode: str, extra: str = "", sock: Path | None = None,
                 exec_prefix: tuple[str, ...] = (), **popen):  # fmt: skip
    sock = sock or base / "milter.sock"
    daemon = ServiceDaemon(BASE_CONFIG.format(sock=sock, mode=mode, dns=dns_port) + extra, base)
    daemon.popen_kwargs = popen
    daemon.exec_prefix = exec_prefix
    return daemon.start(), sock


def connect_as(user: str, path: Path) -> int:
    """errno of connecting to a unix socket as `user` (0 = connected), in a forked child that drops to it."""
    entry = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
        except OSError as exc:
            code = exc.errno or 255
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("mode", ["0600", "0660", "0666"])
def test_socket_gets_the_configured_mode(base, hostile_dns, mode):
    daemon, sock = start_daemon(base, hostile_dns.port, mode)
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == int(mode, 8)
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
    finally:
        daemon.stop()


def test_socket_mode_lets_postfix_in_through_its_group_and_nobody_else(base, hostile_dns):
    """The README's set-up (socket_mode 0660, postfix in the daemon's group): here the socket's group is set to
    postfix's, as it would be with the daemon running under a group that postfix belongs to."""
    daemon, sock = start_daemon(base, hostile_dns.port, "0660")
    postfix = Postfix(base, milter=f"unix:{sock}", extra=LOAD_LIMITS).start()
    try:
        assert connect_as("daemon", sock) == 13  # EACCES: another unprivileged user
        before = transaction(postfix.smtp_port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
        assert before.replies["mail"].code == 451  # root:root 0660: Postfix cannot reach the milter -> tempfail
        shutil.chown(sock, group="postfix")
        assert connect_as("postfix", sock) == 0
        assert connect_as("daemon", sock) == 13
        after = transaction(postfix.smtp_port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
        assert after.outcome() == 250
        assert postfix.delivered(after.marker)["Authentication-Results"].startswith(AUTHSERV_ID)
    finally:
        postfix.stop()
        daemon.stop()


@contextlib.contextmanager
def traversable_for_others(paths: list[str]) -> Iterator[None]:
    """Add o+x to the directories above `paths` that lack it, for the duration of the block only.

    The interpreter and the code may live under a 0700 home (pyenv in /root, a clone in ~): user nobody must
    be able to reach them to run the daemon. Traverse only: nothing becomes listable or readable that was not.
    """
    changed: dict[Path, int] = {}
    for path in paths:
        for directory in Path(path).resolve().parents:
            mode = directory.stat().st_mode
            if directory not in changed and not mode & stat.S_IXOTH:
                changed[directory] = stat.S_IMODE(mode)
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for directory, mode in changed.items():
            directory.chmod(mode)


def _code_paths() -> list[str]:
    """The interpreter, the standard library and every import path the daemon may load from."""
    packages = [*mailwarden.__path__, *mailwarden.classifier.__path__]
    return [os.path.realpath(sys.executable), *(p for p in sys.path if p and os.path.exists(p)), *packages]


def test_daemon_serves_postfix_as_an_unprivileged_user(base, hostile_dns):
    run = base / "run"
    run.mkdir()
    shutil.chown(run, "nobody", "postfix")
    with traversable_for_others(_code_paths()):
        daemon, sock = start_daemon(base, hostile_dns.port, "0660", sock=run / "milter.sock", user="nobody",
                                    group="postfix", extra_groups=[], cwd="/")  # fmt: skip
        postfix = Postfix(base, milter=f"unix:{sock}", extra=LOAD_LIMITS).start()
        try:
            status = Path(f"/proc/{daemon.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("nobody").pw_uid)}
            assert next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1] == "0" * 16
            assert (os.stat(sock).st_uid, stat.S_IMODE(os.stat(sock).st_mode)) == (pwd.getpwnam("nobody").pw_uid, 0o660)
            assert connect_as("daemon", sock) == 13
            sent = transaction(postfix.smtp_port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
            assert sent.outcome() == 250
            assert postfix.delivered(sent.marker)["Authentication-Results"].startswith(AUTHSERV_ID)
        finally:
            postfix.stop()
            daemon.stop()


def listening_tcp(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets the process listens on, from /proc/<pid>/net/tcp{,6} and its fds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                addr, port = local.split(":")
                if table == "tcp":
                    address = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1])
                else:
                    words = bytes.fromhex(addr)
                    address = socket.inet_ntop(
                        socket.AF_INET6, b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4))
                    )
                out.append((address, int(port, 16)))
    return out


def test_metrics_are_off_unless_configured(base, hostile_dns):
    daemon, _ = start_daemon(base, hostile_dns.port, "0660")
    try:
        assert listening_tcp(daemon.pid) == []  # unix milter socket, no metrics: no TCP listener at all
    finally:
        daemon.stop()


OTHER_ADDRESS = "198.51.100.77"  # the namespace's non-loopback address
PROBE = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
except OSError as exc:
    sys.exit(exc.errno or 255)
"""


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.fail(f"ip {' '.join(args)}: {done.stderr.strip()} (.ci/run installs iproute2; the test needs root)")


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own with loopback and one non-loopback address (on a veth pair), so that the
    test has such an address whatever the host's interfaces are, and leaves the host's network alone."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed: .ci/run installs it")
    name = f"mailwarden-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "mw0", "type", "veth", "peer", "name", "mw1")
        ip("-n", name, "addr", "add", f"{OTHER_ADDRESS}/24", "dev", "mw0")
        ip("-n", name, "link", "set", "mw0", "up")
        ip("-n", name, "link", "set", "mw1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def connect_errno(netns: str, address: str, port: int) -> int:
    """errno of a TCP connection to address:port from inside the namespace (0 = connected)."""
    probe = ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, address, str(port)]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode


def test_metrics_bind_only_the_configured_loopback_address(base, hostile_dns, netns):
    """The daemon runs in its own network namespace (it needs no DNS here), where 127.0.0.1 and another
    address are both local: only the configured one answers."""
    port = free_port()
    daemon, _ = start_daemon(base, hostile_dns.port, "0660", extra=f'[metrics]\naddress = "127.0.0.1:{port}"\n',
                             exec_prefix=("ip", "netns", "exec", netns))  # fmt: skip
    try:
        assert listening_tcp(daemon.pid) == [("127.0.0.1", port)]
        assert connect_errno(netns, "127.0.0.1", port) == 0
        assert connect_errno(netns, OTHER_ADDRESS, port) == errno.ECONNREFUSED
    finally:
        daemon.stop()

"""The event store failing under the real daemon and Postfix: a full disk and a damaged file cost bounce events,
never mail, and the failure is loud (an error line when it starts and when it ends, the store_up gauge, the lost
events counted, `config check` exit 2)."""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mailwarden.store import Store

from .conftest import daemon_config
from .postfix import Daemon, Postfix, wait_for
from .test_e2e_bounces import CORPUS
from .test_e2e_events import base_dir, labels
from .test_e2e_events import deliver as deliver_to


def metrics(daemon: Daemon) -> dict[str, float]:
    address = re.search(r'address = "([^"]+)"', daemon.config.read_text())[1]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def fill(directory: Path) -> Path:
    """A file that takes every free byte of the file system `directory` is on."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@contextlib.contextmanager
def stack(dns_server, store: Path, base: Path):
    daemon = Daemon(daemon_config(base, dns_server) + f'\n[events]\nstore = "{store}"\n', base).start()
    postfix = Postfix(base, milter=f"unix:{base}/milter.sock").start()
    try:
        yield daemon, postfix
    finally:
        postfix.stop()
        daemon.stop()


def bounce() -> bytes:
    return (CORPUS / "lhost-postfix-13.eml").read_bytes()


def test_a_full_disk_under_the_store_costs_the_events_not_the_mail_and_is_loud(dns_server):
    base = base_dir()
    state = base / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(state)], check=True)
    try:
        with stack(dns_server, state / "events.sqlite", base) as (daemon, postfix):
            assert len(labels(deliver_to(postfix, bounce()))) == 2  # stored while there is room
            filler = fill(state)
            for _ in range(2):
                assert len(labels(deliver_to(postfix, bounce()))) == 2  # labelled and delivered all the same
            log = daemon.log()
            assert log.count("store-write-failed") == 1 and "full" in log  # once, not once per bounce
            now = metrics(daemon)
            assert now["mailwarden_store_up"] == 0 and now['mailwarden_events_failed_total{stage="store"}'] == 4
            filler.unlink()
            deliver_to(postfix, bounce())
            wait_for(lambda: "store-write-recovered" in daemon.log(), 10, "the recovery logged")
            assert metrics(daemon)["mailwarden_store_up"] == 1
            kept = Store(state / "events.sqlite", create=False)
            assert len(kept.events()) == 4  # 2 before, 2 after
            kept.close()
    finally:
        subprocess.run(["umount", "--lazy", str(state)], check=True)  # lazy: a failure above stays the error shown
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("damage", ["not-sqlite", "page"])
def test_a_damaged_store_is_named_at_start_and_by_config_check_and_mail_flows(dns_server, damage):
    base = base_dir()
    store = base / "events.sqlite"
    if damage == "not-sqlite":
        store.write_bytes(b"this is not a database " * 400)
    else:
        written = Store(store)
        written.record([], [])
        written.close()
        raw = bytearray(store.read_bytes())
        raw[4096:8192] = b"\xff" * 4096
        store.write_bytes(bytes(raw))
    try:
        with stack(dns_server, store, base) as (daemon, postfix):
            assert len(labels(deliver_to(postfix, bounce()))) == 2
            log = daemon.log()
            assert re.search(r"^error store-(unavailable|problem) .*events\.sqlite", log, re.M), log
            assert metrics(daemon)["mailwarden_store_up"] == 0
        check = subprocess.run([sys.executable, "-m", "mailwarden.cli", "config", "check", "--config",
                                str(base / "mailwarden.toml")], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert check.returncode == 2 and "[events] store cannot be used" in check.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)

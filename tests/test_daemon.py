"""What a SIGHUP reload does with the settings that only a restart can apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden import daemon
from mailwarden.config import load
from mailwarden.protocols import PostfixTcpMilter, SendmailTcpMilter, milter_class

CONFIG = 'socket = "inet:8894@127.0.0.1"\nauthserv_id = "mx.test"\n{extra}\n[bounce]\nenabled = false\n'


def reloaded(path: Path, extra: str, monkeypatch: pytest.MonkeyPatch) -> tuple[daemon.Daemon, list[tuple[str, dict]]]:
    """A daemon started on CONFIG, then reloaded with `extra` added; the events it logged."""
    path.write_text(CONFIG.format(extra=""))
    events: list[tuple[str, dict]] = []
    monkeypatch.setattr(daemon, "event", lambda name, *args, **fields: events.append((name, fields)))
    served = daemon.Daemon(load(path), str(path))
    path.write_text(CONFIG.format(extra=extra))
    served.reload()
    return served, events


def test_a_reload_that_changes_the_mta_warns_that_it_applies_at_the_next_restart(tmp_path, monkeypatch):
    """The milter protocol is chosen once, when the daemon starts serving; sessions keep it until a restart."""
    served, events = reloaded(tmp_path / "mailwarden.toml", 'mta = "sendmail"', monkeypatch)
    assert milter_class(served.engine.config) is SendmailTcpMilter  # what the next start will speak
    assert ("reload-warning", {"why": "a new socket or mta takes effect at the next restart"}) in events
    assert "reloaded" in [name for name, _ in events]


def test_a_reload_that_keeps_socket_and_mta_gives_no_warning(tmp_path, monkeypatch):
    served, events = reloaded(tmp_path / "mailwarden.toml", 'log_level = "debug"', monkeypatch)
    assert milter_class(served.engine.config) is PostfixTcpMilter
    assert [name for name, _ in events] == ["reloaded"]

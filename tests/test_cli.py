"""The command line as outside checks use it: check --json, config check, run with a broken config."""

from __future__ import annotations

import json
import subprocess
import sys

import authres

from .conftest import GOOD_IP, LIAR_IP
from .test_config import EXAMPLE


def mailwarden(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailwarden.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_check_json_reports_every_result_and_both_headers(dns_server):
    proc = mailwarden("check", "--ip", GOOD_IP, "--helo", "mail.good.test", "--sender", "a@good.test",
                      "--dns", dns_server.address, "--timeout", "0.5", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["iprev"] == {"result": "pass", "names": ["mail.good.test"]}
    assert report["spf"]["helo"]["result"] == "pass"
    assert report["spf"]["mailfrom"] | {"explanation": ""} == {
        "result": "pass", "mechanism": "ip4:192.0.2.10", "problem": "", "identity": "a@good.test", "explanation": ""
    }  # fmt: skip
    assert report["headers"]["Received-SPF"].startswith("pass (")
    ar = authres.AuthenticationResultsHeader.parse_value(report["headers"]["Authentication-Results"])
    assert [r.result for r in ar.results] == ["pass", "pass", "pass"]


def test_check_null_sender_is_postmaster_at_helo(dns_server):
    proc = mailwarden("check", "--ip", LIAR_IP, "--helo", "liar.test", "--dns", dns_server.address, "--json")
    report = json.loads(proc.stdout)
    assert report["spf"]["mailfrom"]["identity"] == "postmaster@liar.test"
    assert report["spf"]["mailfrom"]["result"] == "fail"
    assert report["iprev"]["result"] == "fail"


def test_check_refuses_a_malformed_ip_cleanly(dns_server):
    proc = mailwarden("check", "--ip", "999.1.1.1", "--dns", dns_server.address, "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["iprev"]["result"] == "permerror"
    proc = mailwarden("check", "--ip", "192.0.2.1", "--dns", "not-a-server", "--json")
    assert proc.returncode == 2 and "not-a-server" in proc.stderr and "Traceback" not in proc.stderr


def test_config_check_accepts_the_example_and_refuses_a_broken_file(tmp_path):
    assert mailwarden("config", "check", "--config", str(EXAMPLE)).returncode == 0
    broken = tmp_path / "broken.toml"
    broken.write_text('[policy]\nspf_fail = "bounce"\n')
    proc = mailwarden("config", "check", "--config", str(broken))
    assert proc.returncode == 2
    assert "line 2: policy.spf_fail: 'bounce' is not one of accept, reject, defer" in proc.stderr


def test_run_with_a_broken_config_never_starts(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text(f'socket = "unix:{tmp_path}/m.sock"\n[dns]\nbudget = -1\n')
    proc = mailwarden("run", "--config", str(broken), timeout=30)
    assert proc.returncode == 2
    assert "line 3: dns.budget" in proc.stderr
    assert not (tmp_path / "m.sock").exists()


def test_version_and_help():
    assert mailwarden("--version").stdout.startswith("mailwarden ")
    helps = mailwarden("--help").stdout
    assert all(cmd in helps for cmd in ("run", "check", "config"))

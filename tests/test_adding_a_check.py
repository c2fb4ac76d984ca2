"""Adding a check is one module plus one line in checks/__init__.py. A check of the test's own, registered
there (the registry patched) and changed nowhere else, is accepted by the configuration, decides at RCPT
with its own reply code, is written into Authentication-Results and the decision log, and is reported by
`mailwarden check --json`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import authres
import Milter
import pytest
from authres.core import AuthenticationResultProperty

from mailwarden import checks, cli
from mailwarden.checks.base import Check, CheckResult, DnsContext, Subject
from mailwarden.config import ConfigError, parse
from mailwarden.daemon import Gate
from mailwarden.engine import Engine
from mailwarden.headers import comment, pvalue
from mailwarden.protocols import milter_class
from mailwarden.sanitise import LIMIT_NAME, clean

from .conftest import AUTHSERV_ID, GOOD_IP
from .test_callbacks import Recorded, negotiated

# -- the one file ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryResult(CheckResult):
    domain: str = ""

    def resinfo(self) -> str:
        domain = AuthenticationResultProperty("smtp", "mailfrom", pvalue(clean(self.domain, LIMIT_NAME)))
        return str(authres.AuthenticationResult(method="canary", result=self.result,
                                                result_comment=comment(self.reason), properties=[domain]))  # fmt: skip


class CanaryCheck(Check[CanaryResult]):
    """Fails every sender in canary.test."""

    name = "canary"
    stage = "mail"
    policy = "canary"
    replies = {"fail": ("7.1", "canary check failed")}
    report_key = ("canary",)

    def run(self, subject: Subject, dns: DnsContext) -> CanaryResult:
        domain = (subject.sender or "").rpartition("@")[2]
        if domain == "canary.test":
            return CanaryResult("canary", "fail", f"{domain} is a canary domain", domain)
        return CanaryResult("canary", "pass", f"{domain} is not a canary domain", domain)

    def failed(self, subject: Subject, reason: str) -> CanaryResult:
        return CanaryResult("canary", "temperror", reason)

    def report(self, result: CanaryResult) -> dict:
        return {"result": result.result, "domain": result.domain}


# -- the one line -----------------------------------------------------------------------------------------------


@pytest.fixture
def canary_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS, CanaryCheck()))


CONFIG = f"""\
authserv_id = "{AUTHSERV_ID}"
trusted_networks = []
[dns]
nameservers = ["127.0.0.1:{{port}}"]
[bounce]
enabled = false
[domains."strict.test".policy]
canary_fail = "reject"
"""


def test_the_configuration_accepts_the_policy_keys_of_a_registered_check_only(dns_server, monkeypatch):
    text = CONFIG.format(port=dns_server.port)
    with pytest.raises(ConfigError, match=r"line 8: domains.strict.test.policy.canary_fail: unknown key"):
        parse(text)
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS, CanaryCheck()))
    config = parse(text)
    assert (config.policy_for("strict.test")["canary_fail"], config.policy_for("example.org")["canary_fail"]) == (
        "reject", "accept")  # fmt: skip


def test_a_registered_check_rejects_with_its_own_code_and_is_written_into_the_header_and_the_log(
    canary_registered, dns_server, monkeypatch
):
    config = parse(CONFIG.format(port=dns_server.port))
    milter = milter_class(config)(Engine.from_config(config), Gate())
    milter._ctx = Recorded()
    negotiated(milter)
    decisions: list[dict] = []
    monkeypatch.setattr("mailwarden.engine.event", lambda name, *args, **fields: decisions.append(fields))
    milter.connect("mail.good.test", 4, (GOOD_IP, 25))
    milter.hello("mail.good.test")
    milter.envfrom("<alice@canary.test>")
    assert milter.envrcpt("<carol@strict.test>") == Milter.REJECT
    reply = ("550", "5.7.1", "canary check failed (canary_fail): canary.test is a canary domain")
    assert milter._ctx.replies == [reply]
    assert milter.envrcpt("<dave@example.org>") == Milter.CONTINUE
    assert milter.eom() == Milter.CONTINUE
    (ar,) = [value for name, value, _ in milter._ctx.added if name == "Authentication-Results"]
    parsed = authres.AuthenticationResultsHeader.parse_value(ar.replace("\n", " "))
    assert [r.method for r in parsed.results] == ["iprev", "spf", "spf", "dkim", "arc", "dmarc", "canary"]
    assert ar.endswith(";\n\tcanary=fail (canary.test is a canary domain) smtp.mailfrom=canary.test")
    assert [(d["action"], d.get("recipient"), d["canary"]) for d in decisions] == [
        ("reject", "carol@strict.test", "fail"), ("accept", None, "fail")]  # fmt: skip


def test_mailwarden_check_reports_a_registered_check(canary_registered, dns_server, capsys):
    status = cli.main(["check", "--ip", GOOD_IP, "--helo", "mail.good.test", "--sender", "alice@canary.test",
                       "--dns", dns_server.address, "--json"])  # fmt: skip
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["canary"] == {"result": "fail", "domain": "canary.test"}
    assert report["iprev"]["result"] == "pass"
    assert report["headers"]["Authentication-Results"].endswith(
        ";\n\tcanary=fail (canary.test is a canary domain) smtp.mailfrom=canary.test")

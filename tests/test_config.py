"""The configuration file: the documented example, defaults, and broken files refused with key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.config import ConfigError, load, parse, policy_keys

EXAMPLE = Path(__file__).parent.parent / "conf" / "mailwarden.toml"


def test_documented_example_is_valid_and_sets_every_policy_key():
    config = load(EXAMPLE)
    text = EXAMPLE.read_text()
    assert all(f"\n{key} = " in text for key in policy_keys())
    assert config.policy_for("example.org")["spf_fail"] == "reject"
    assert config.policy_for("Example.ORG.")["spf_temperror"] == "defer"
    assert config.policy_for("elsewhere.net")["spf_fail"] == "accept"


def test_empty_file_gives_the_built_in_defaults():
    config = parse("")
    assert config.socket == "inet:8894@127.0.0.1"
    assert config.mta == "postfix"
    assert config.is_trusted("127.0.0.1") and config.is_trusted("::1") and not config.is_trusted("192.0.2.1")
    assert {config.policy[key] for key in policy_keys()} == {"accept"}
    assert config.policy["dmarc_enforce"] is False
    assert config.bounce.review_below == 0.3
    assert config.events.store == "/var/lib/mailwarden/events.sqlite"


def test_domain_overrides_inherit_the_global_policy():
    config = parse('[policy]\niprev_fail = "defer"\n[domains."a.test".policy]\nspf_fail = "reject"\n')
    assert config.policy_for("a.test")["iprev_fail"] == "defer"
    assert config.policy_for("a.test")["spf_fail"] == "reject"


BROKEN = """\
socket = "tcp:25"
colour = "blue"
trusted_networks = ["10.0.0.0/8", "not-a-net"]
skip_sender_domains = ["ok.test", "bad domain"]
mta = "exim"

[dns]
nameservers = ["ns.example.net"]
timeout = "2"

[policy]
spf_fail = "drop"

[domains."example.org".policy]
spf_fial = "reject"
"""


def test_broken_file_is_refused_with_every_problem_named_by_key_and_line():
    with pytest.raises(ConfigError) as info:
        parse(BROKEN, "broken.toml")
    problems = info.value.problems
    expected = [
        ("line 1: socket:", "tcp:25"),
        ("line 2: colour:", "unknown key"),
        ("line 3: trusted_networks:", "not-a-net"),
        ("line 4: skip_sender_domains:", "bad domain"),
        ("line 5: mta:", "'exim' is not one of postfix, sendmail"),
        ("line 8: dns.nameservers:", "ns.example.net"),
        ("line 9: dns.timeout:", "must be a number"),
        ("line 12: policy.spf_fail:", "'drop' is not one of accept, reject, defer"),
        ("line 15: domains.example.org.policy.spf_fial:", "unknown key"),
    ]
    for prefix, detail in expected:
        assert any(p.startswith(prefix) and detail in p for p in problems), (prefix, problems)
    assert len(problems) == len(expected)


def test_toml_syntax_error_names_the_line():
    with pytest.raises(ConfigError, match=r"line 2"):
        parse('socket = "unix:/x"\nauthserv_id = \n')


def test_review_threshold_and_store_are_read_and_checked():
    config = parse('[bounce]\nreview_below = 0.35\n[events]\nstore = ""\n')
    assert (config.bounce.review_below, config.events.store) == (0.35, "")
    with pytest.raises(ConfigError) as info:
        parse('[bounce]\nreview_below = 1.5\n[events]\nstore = "events.sqlite"\nretention = 3\n')
    problems = sorted(info.value.problems)
    assert len(problems) == 3, problems
    assert problems[0].startswith("line 2: bounce.review_below: 1.5 is out of range [0, 1]")
    assert problems[1].startswith("line 4: events.store: 'events.sqlite' is not an absolute path")
    assert problems[2].startswith("line 5: events.retention: unknown key")


def test_an_unparsable_broker_url_is_a_config_problem_that_never_shows_its_password():
    with pytest.raises(ConfigError) as info:
        parse('[events]\nstore = "/var/lib/mailwarden/events.sqlite"\namqp_url = "amqp://u:s3cret@[::1"\n')
    (problem,) = info.value.problems
    assert "events.amqp_url" in problem and "s3cret" not in problem

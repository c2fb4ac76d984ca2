"""What `[dns] nameservers` and `[dns] tls_ca_file` accept, and the nameservers built from them."""

from __future__ import annotations

import pytest
from dns.nameserver import Do53Nameserver

from mailwarden.config import ConfigError, parse
from mailwarden.dot import TlsNameserver
from mailwarden.upstreams import PRESETS, Upstream, nameservers, parse_nameserver, parse_nameservers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("192.0.2.1", Upstream("192.0.2.1", 53)), ("127.0.0.1:5353", Upstream("127.0.0.1", 5353)),
     ("[2001:db8::1]:53", Upstream("2001:db8::1", 53)), ("2001:db8::1", Upstream("2001:db8::1", 53)),
     ("tls://192.0.2.1#dns.example", Upstream("192.0.2.1", 853, "dns.example")),
     ("tls://127.0.0.1:8853#dns.test.", Upstream("127.0.0.1", 8853, "dns.test")),
     ("TLS://[2001:db8::1]:8853#dns.example", Upstream("2001:db8::1", 8853, "dns.example")),
     ("tls://[2001:db8::1]#2001:db8::1", Upstream("2001:db8::1", 853, "2001:db8::1"))],
)  # fmt: skip
def test_nameserver_specs_take_a_port_and_tls_an_auth_name(spec, expected):
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["ns.example.net", "127.0.0.1:0", "127.0.0.1:99999", "[::1]:x", "[::1]53", "",
                                  "tls://192.0.2.1", "tls://192.0.2.1#", "tls://192.0.2.1:853#bad name",
                                  "tls://dns.example#dns.example", "https://192.0.2.1/dns-query"])  # fmt: skip
def test_bad_nameserver_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_presets_stand_for_their_dot_upstreams_in_order():
    upstreams = parse_nameservers(["127.0.0.1", "quad9-tls", "cloudflare-tls", "google-tls"])
    assert upstreams[0] == Upstream("127.0.0.1", 53)
    assert [(u.address, u.auth_name) for u in upstreams[1:]] == [
        ("9.9.9.9", "dns.quad9.net"), ("149.112.112.112", "dns.quad9.net"),
        ("1.1.1.1", "cloudflare-dns.com"), ("1.0.0.1", "cloudflare-dns.com"),
        ("8.8.8.8", "dns.google"), ("8.8.4.4", "dns.google"),
    ]  # fmt: skip
    assert all(u.port == 853 for preset in PRESETS.values() for u in preset)


def test_config_reads_tls_upstreams_and_a_private_ca(test_ca):
    config = parse(f'[dns]\nnameservers = ["tls://127.0.0.1:8853#dns.test", "google-tls", "127.0.0.1"]\n'
                   f'tls_ca_file = "{test_ca.pem}"\n')  # fmt: skip
    assert config.dns.nameservers[0] == Upstream("127.0.0.1", 8853, "dns.test")
    assert len(config.dns.nameservers) == 4 and config.dns.tls_ca_file == str(test_ca.pem)
    built = nameservers(config.dns.nameservers, config.dns.tls_ca_file)
    assert [type(n) for n in built] == [TlsNameserver, TlsNameserver, TlsNameserver, Do53Nameserver]
    assert (built[0].hostname, built[0].port, built[3].port) == ("dns.test", 8853, 53)


@pytest.mark.parametrize(
    ("value", "problem"),
    [('nameservers = ["tls://127.0.0.1:8853"]', "line 2: dns.nameservers: nameserver 'tls://127.0.0.1:8853': "
                                               "tls:// needs #AUTH-NAME"),
     ('nameservers = ["quad9"]', "nor a preset: google-tls, cloudflare-tls, quad9-tls"),
     ('tls_ca_file = "ca.pem"', "line 2: dns.tls_ca_file: 'ca.pem' is not an absolute path"),
     ('tls_ca_file = "/nonexistent/ca.pem"', "line 2: dns.tls_ca_file: '/nonexistent/ca.pem' is not a readable PEM"),
     ('tls_ca_file = "/etc/hostname"', "is not a readable PEM file of CA certificates")],
)  # fmt: skip
def test_bad_dns_settings_are_refused_with_key_and_line(value, problem):
    with pytest.raises(ConfigError) as caught:
        parse(f"[dns]\n{value}\n")
    assert any(problem in p for p in caught.value.problems), caught.value.problems

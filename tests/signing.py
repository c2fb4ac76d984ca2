"""Signed test mail: dkimpy's test keys and their DNS records, messages signed with dkimpy, DMARC records.

The keys are dkimpy's own test data (tests/data/dkimpy): RSA 1024 and 2048 bits and an Ed25519 pair. Key
records longer than one TXT string are published in 255-octet pieces, as real zones publish them.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import dkim

from .dnsserver import Zone

DATA = Path(__file__).parent / "data" / "dkimpy"
RSA_2048 = (DATA / "2048_testkey.key").read_bytes()
RSA_2048_RECORD = (DATA / "2048_testkey_wo_markers.pub.txt").read_text().strip()
RSA_1024 = (DATA / "1024_testkey.key").read_bytes()
RSA_1024_RECORD = (DATA / "1024_testkey_wo_markers.pub.txt").read_text().strip()
ED25519 = (DATA / "ed25519test.key").read_bytes().strip()
ED25519_RECORD = "v=DKIM1; " + (DATA / "ed25519test.dns").read_text().strip()
# RFC 8463 Appendix A: football.example.com signs with Ed25519 (brisbane) and RSA (test).
RFC8463_MESSAGE = (DATA / "rfc6376.signed.msg").read_bytes()
RFC8463_ZONE: Zone = {
    "brisbane._domainkey.football.example.com": [
        ("TXT", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    ],
    "test._domainkey.football.example.com": [("TXT", (DATA / "test.txt").read_text().strip())],
}


def pieces(record: str) -> list[str]:
    """One TXT record as the strings of at most 255 octets it is published in."""
    return [record[i : i + 255] for i in range(0, len(record), 255)] or [""]


def key_zone(domain: str, selector: str = "sel", record: str = RSA_2048_RECORD) -> Zone:
    return {f"{selector}._domainkey.{domain}": [("TXT", pieces(record))]}


def dmarc_zone(domain: str, record: str) -> Zone:
    return {f"_dmarc.{domain}": [("TXT", pieces(record))]}


def message(sender: str, subject: str = "Hello", body: str = "Hello.\r\n", headers: str = "") -> bytes:
    text = (f"From: Alice <{sender}>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"{headers}\r\n{body}")  # fmt: skip
    return text.encode()


def sign(
    raw: bytes,
    domain: str,
    selector: str = "sel",
    key: bytes = RSA_2048,
    algorithm: bytes = b"rsa-sha256",
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
    **options: object,
) -> bytes:
    """The message with a DKIM-Signature of dkimpy's on top."""
    signature = dkim.sign(raw, selector.encode(), domain.encode(), key, signature_algorithm=algorithm,
                          canonicalize=canonicalize, **options)  # type: ignore[arg-type]  # fmt: skip
    return signature + raw


def sign_with_tags(raw: bytes, domain: str, tags: dict[bytes, bytes], selector: str = "sel", key: bytes = RSA_2048,
                   **options: object) -> bytes:
    """sign(), with tags of `tags` set (t=) or added before h= (x=): dkimpy's signer has no parameter for them.
    The signature covers them as any tag."""
    original = dkim.DKIM.gen_header

    def gen_header(self: dkim.DKIM, fields: list, *args: object, **kwargs: object) -> bytes:
        fields = [(name, tags.get(name, value)) for name, value in fields]
        present = {name for name, _ in fields}
        at = next(index for index, (name, _) in enumerate(fields) if name == b"h")
        fields[at:at] = [(name, value) for name, value in tags.items() if name not in present]
        return original(self, fields, *args, **kwargs)

    with mock.patch.object(dkim.DKIM, "gen_header", gen_header):
        return sign(raw, domain, selector, key, **options)  # type: ignore[arg-type]

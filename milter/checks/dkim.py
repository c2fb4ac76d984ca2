"""DKIM (RFC 6376, RFC 8301, RFC 8463): every DKIM-Signature of the message verified, each reported in
Authentication-Results as `dkim=pass header.d=... header.s=... header.b=<first 8 characters of b=>`. Tag
only: no policy keys (DMARC acts on DKIM's results).

dkimpy does the parts of verification that are about signatures and keys (tag parsing and validation, key
record parsing; its Ed25519 key object). What it does not do, or does otherwise, is done here:
- the header hash: dkimpy's selection and canonicalisation, octet for octet (tests/test_dkim_canonical.py),
  with fewer regular expressions;
- the body hash is not computed by dkimpy over a copy of the whole body but streamed (checks/bodyhash.py);
  each signature's bh= is compared with the digest for its c=, a= and l=;
- b= is verified over dkimpy's header hash by `cryptography` (OpenSSL) for RSA, PyNaCl for Ed25519: dkimpy's
  own RSA is pure Python (~180 µs per 2048-bit signature, 5 times OpenSSL's);
- the key is fetched through mailwarden's resolver (cache, per-message DNS budget, shared lookups), and its
  problems get RFC 8601's words: no key record is permerror, a DNS error temperror (dkimpy says fail);
- rsa-sha1 fails (RFC 8301 §3.1; dkimpy accepts it), RSA keys outside 1024-4096 bits are refused before any
  arithmetic (the upper bound keeps a hostile 16,384-bit key from costing CPU), a signature must cover From
  (RFC 6376 §5.4), and a signature, its h= list and the number of signatures verified are bounded.
- what the key record restricts (RFC 6376 §3.6.1), which dkimpy ignores: a signature whose hash the key's h=
  does not list fails ("inappropriate hash algorithm", §6.1.2), and so does one whose i= domain is a
  subdomain of d= under a key with t=s (OpenDKIM: fail, "signature-key hash mismatch" and "unauthorized
  subdomain");
- a signature past its x= is `policy` ("signature expired at ..."), checked before any key lookup, with no
  leeway, at each message. RFC 6376 §6.1.1 lets a verifier ignore it with PERMFAIL (signature expired);
  among RFC 8601 §2.7.1's words for dkim, `policy` is the one for a signature "signed, but some aspect of
  the signature ... was not acceptable to the ADMD": here, its age. Not `fail`, which says an acceptable
  signature failed verification (an expired one is not tested, and may be intact); not `neutral`, which is
  for signatures that could not be processed (this one parses); not `permerror`, an unrecoverable error in
  the message. OpenDKIM 2.11 says permerror, Mail::DKIM (under authentication_milter) "invalid (signature is
  expired)", dkimpy refuses it only 10 hours after x= as a syntax error (mailwarden said neutral then).
  DMARC counts it as any signature that did not pass.
- a key with t=y (the domain is testing DKIM; RFC 6376 §3.6.1: "Verifiers MUST NOT treat messages from
  Signers in testing mode differently from unsigned email, even should the signature fail to verify")
  changes no verdict: each one reached after the key lookup keeps its word and its comment ends "; key in
  testing mode (t=y)". A fail stays `fail`: RFC 8601 §2.7.1 has no word for "failed, but the signer is
  testing" (`none` says not signed, `neutral` not processable, `policy` not acceptable to us), and what
  §3.6.1 asks is about treatment. Here a DKIM result is tag only and DMARC is the one thing that acts on
  it, counting passes alone: a failing signature, testing or not, counts for nothing, and the message gets
  the DMARC result and the enforcement the same message unsigned gets (tests/test_dkim.py). A reader of
  the A-R learns of the testing from the comment. A pass stays `pass` and counts for DMARC as any pass:
  that is unlike unsigned mail, against the letter of §3.6.1, on purpose. A verified signature proves that
  d= signed the message, testing or not (the flag spares a signer the consequences of its own broken
  signatures), a domain may leave t=y in a key long after its tests, and not counting such passes would make
  `dmarc_enforce` refuse a p=reject domain's genuine forwarded mail, whose SPF no longer aligns. OpenDKIM
  2.11 (Debian's, run with `-t` on the tests' messages) writes the same words and no note, `dkim=pass
  (1024-bit key)` and `dkim=fail reason="signature verification failed" (1024-bit key)`, and skips its
  On-BadSignature action for a failing t=y signature (its manual says its A-R indicates "both the failed
  result and the test mode"); its A-R gives OpenDMARC a t=y pass as any other pass.
A signature that cannot be processed (bad syntax, duplicated tags, unknown algorithm, From not signed) is
neutral, as RFC 8601 §2.7.1 says.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import authres
import dkim
import nacl.exceptions
from authres.core import AuthenticationResultProperty
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from ..dns import DNSTempError
from ..headers import FOLD, comment, pvalue
from ..sanitise import LIMIT_NAME, clean
from .base import CheckResult, DnsContext, Subject
from .bodyhash import BodyHash
from .message import Fields, Message, MessageCheck

MAX_SIGNATURES = 10  # verified per message; the others are reported together as "policy"
MAX_SIGNATURE_BYTES = 16 * 1024  # a DKIM-Signature field; real ones are under 2 KiB
MAX_SIGNED_FIELDS = 256  # names in h=
RSA_BITS = (1024, 4096)
MAX_EXPONENT_BITS = 64
B_PREFIX = 8  # characters of b= in header.b (RFC 6008)
_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                   r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")  # fmt: skip
_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)")
QUIET = logging.getLogger("mailwarden.dkimpy")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
# The order in which one signature's result stands for the message (the log line, the metrics).
_RANK = ("pass", "temperror", "fail", "permerror", "neutral", "policy", "none")


@dataclass(frozen=True)
class Signature:
    """The verdict on one DKIM-Signature field."""

    result: str  # pass | fail | neutral | permerror | temperror | policy
    reason: str
    domain: str = ""  # d=
    selector: str = ""  # s=
    b: str = ""  # the first characters of b=

    def resinfo(self) -> str:
        properties = [AuthenticationResultProperty("header", name, pvalue(clean(value, LIMIT_NAME)))
                      for name, value in (("d", self.domain), ("s", self.selector), ("b", self.b)) if value]
        return str(authres.AuthenticationResult(method="dkim", result=self.result,
                                                result_comment=comment(self.reason), properties=properties))


@dataclass(frozen=True)
class DkimResult(CheckResult):
    """Every signature's verdict, in header order; `result` is the best of them (`none`: not signed)."""

    signatures: tuple[Signature, ...] = ()

    def resinfo(self) -> str:
        """One `dkim=` entry per signature (`dkim=none` for an unsigned message)."""
        if not self.signatures:
            return super().resinfo()
        return (";" + FOLD).join(signature.resinfo() for signature in self.signatures)


def unsigned() -> DkimResult:
    return DkimResult("dkim", "none", "message not signed")


def _signed(signatures: list[Signature]) -> DkimResult:
    best = min(signatures, key=lambda s: _RANK.index(s.result))
    count = f"{len(signatures)} signatures" if len(signatures) > 1 else "1 signature"
    return DkimResult("dkim", best.result, f"{count}, best {best.result}", tuple(signatures))


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")


class _Invalid(Exception):
    """The signature cannot be processed: neutral."""


class KeyProblem(Exception):
    """No usable key: permerror."""


@dataclass(frozen=True)
class _Parsed:
    tags: dict[bytes, bytes]
    signed: list[bytes]  # h= names, lower case
    body_hash: BodyHash
    relaxed: bool  # the header canonicalisation of c=


@functools.lru_cache(maxsize=256)
def _parse(value: bytes) -> _Parsed:
    """A DKIM-Signature value's tags, validated (never to be changed: kept for the same message's end of data,
    which reads what its body hashes were asked for by); raises _Invalid."""
    if len(value) > MAX_SIGNATURE_BYTES:
        raise _Invalid(f"signature over {MAX_SIGNATURE_BYTES // 1024} KiB")
    try:
        tags = dkim.util.parse_tag_value(value)
        # x= apart: dkimpy would refuse an expired signature only 10 hours after x= and as a syntax error
        # (neutral); its expiry is checked at each verification (_verify), this result being kept.
        dkim.validate_signature_fields({tag: text for tag, text in tags.items() if tag != b"x"})
        _validate_expiry(tags)
    except dkim.util.InvalidTagValueList as exc:
        raise _Invalid(f"malformed signature: {type(exc).__name__} {exc}") from exc
    except dkim.DKIMException as exc:
        raise _Invalid(str(exc)) from exc
    signed = [name.lower() for name in re.split(rb"\s*:\s*", tags[b"h"].strip())]
    if len(signed) > MAX_SIGNED_FIELDS:
        raise _Invalid(f"h= names more than {MAX_SIGNED_FIELDS} fields")
    if b"from" not in signed:
        raise _Invalid("From is not signed (RFC 6376 section 5.4)")
    for tag in (b"d", b"s"):
        if not _NAME.match(_text(tags[tag])):
            raise _Invalid(f"{_text(tag)}= is not a domain name")
    try:
        canonicalisation = dkim.CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
    except dkim.InvalidCanonicalizationPolicyError as exc:
        raise _Invalid("unknown canonicalisation in c=") from exc
    algorithm = "sha1" if tags[b"a"] == b"rsa-sha1" else "sha256"
    length = int(tags[b"l"]) if b"l" in tags else None
    body_hash = BodyHash(_text(canonicalisation.body_algorithm.name), algorithm, length)
    return _Parsed(tags, signed, body_hash, canonicalisation.header_algorithm.name == b"relaxed")


def _validate_expiry(tags: dict[bytes, bytes]) -> None:
    """x= as dkimpy validates it, whatever the time: a decimal number, not before t= (RFC 6376 §3.5)."""
    if b"x" not in tags:
        return
    if not re.fullmatch(rb"\d+", tags[b"x"]):
        raise _Invalid(f"x= value is not a decimal integer ({_text(tags[b'x'])})")
    if b"t" in tags and int(tags[b"x"]) < int(tags[b"t"]):
        raise _Invalid(f"x= value is less than t= value (x={_text(tags[b'x'])} t={_text(tags[b't'])})")


@dataclass(frozen=True)
class KeyLimits:
    """What a key record says about the use of its key (RFC 6376 §3.6.1), which dkimpy does not check. DKIM
    and ARC (checks/arc.py: an ARC-Message-Signature is verified as a DKIM-Signature is, RFC 8617 §4.1.2,
    and an ARC-Seal with a key from the same records) ask `forbids` the same question."""

    hashes: frozenset[bytes] | None = None  # h=: the hash algorithms the key may be used with; None: any
    strict: bool = False  # t=s: the i= domain must be d= itself, no subdomain
    testing: bool = False  # t=y: the domain is testing DKIM (reported, not acted on differently: DkimCheck)

    def forbids(self, algorithm: bytes, identity: bytes | None = None, domain: bytes = b"") -> str:
        """Why the key may not verify a signature with a= `algorithm`, "" when it may: a hash its h= does not
        list ("inappropriate hash algorithm", RFC 6376 §6.1.2); with `identity`, the domain of a
        DKIM-Signature's i=, one that is a subdomain of `domain` (d=) under t=s. ARC passes no identity: its
        i= is the instance number, not an identity, so t=s has nothing to restrict there."""
        hash_name = algorithm.rpartition(b"-")[2].lower()
        if self.hashes is not None and hash_name not in self.hashes:
            return f"the key's h= does not allow {_text(hash_name)} (RFC 6376 section 3.6.1)"
        if self.strict and identity is not None and identity.lower() != domain.lower():
            return "i= is a subdomain of d=, which the key's t=s forbids (RFC 6376 section 3.6.1)"
        return ""


def key_record(name: str, dns: DnsContext) -> tuple[object, int, bytes, bool, KeyLimits]:
    """(key, bits, k=, tlsrpt, KeyLimits) of the key record at `name` as dkimpy reads it, and what the record
    restricts; raises KeyProblem, DNSTempError."""
    records = [b"".join(value) for value in dns.lookup(name, "TXT").values()]  # type: ignore[arg-type]
    if not records:
        raise KeyProblem(f"no key record at {name}")
    if len(records) > 1:
        raise KeyProblem(f"{len(records)} key records at {name}")
    return _evaluate(records[0])


@functools.lru_cache(maxsize=1024)
def _evaluate(record: bytes) -> tuple[object, int, bytes, bool, KeyLimits]:
    """A key record read by dkimpy and bounded; kept, as a key serves many messages (never to be changed)."""
    try:
        key, bits, kind, tlsrpt = dkim.evaluate_pk("", record)
        tags = dkim.util.parse_tag_value(record)  # as evaluate_pk read them: it has just done so
    except Exception as exc:  # dkimpy's ASN.1, base64 and NaCl errors on hostile keys  # noqa: BLE001
        raise KeyProblem(f"unusable key record: {type(exc).__name__}") from exc
    hashes = frozenset(h.strip().lower() for h in tags[b"h"].split(b":")) if b"h" in tags else None
    flags = {flag.strip().lower() for flag in tags.get(b"t", b"").split(b":")}
    limits = KeyLimits(hashes, b"s" in flags, b"y" in flags)
    if kind == b"rsa":
        if not RSA_BITS[0] <= bits <= RSA_BITS[1]:
            raise KeyProblem(f"{bits}-bit RSA key refused (accepted: {RSA_BITS[0]}-{RSA_BITS[1]})")
        if key["publicExponent"].bit_length() > MAX_EXPONENT_BITS:  # type: ignore[index]
            raise KeyProblem("RSA public exponent too large")
    return key, bits, kind, tlsrpt, limits


@functools.lru_cache(maxsize=1024)
def _rsa(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


# dkimpy's RE_BTAG (b= and its value, for the signature field's own hash) in a form that backtracks less: its
# FWS, `(?:(?:\s*\r?\n)?\s+)?`, matches exactly the runs of white space `\s*` matches, and `(?:FWS [b64])*`
# ends, like `(?:[\s b64]*[b64])?`, at the last base64 character of the run (35 -> 3 us on a 2048-bit signature;
# tests/test_dkim_canonical.py compares the two).
_BTAG = re.compile(rb"([;\s]b\s*=)(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")
_WSP_RUN = re.compile(rb"[\t ]+")


def relaxed_value(value: bytes) -> bytes:
    """dkimpy's relaxed header canonicalisation of a field value, without its CRLF: line ends (CRLF or bare LF)
    unfolded, runs of SP and HTAB one SP, white space at both ends removed (RFC 6376 §3.4.2). The same octets,
    with fewer regular expressions run: none on a value with no line end, tab or double space. The ends are
    stripped first (the same octets: no line end or run of white space crosses from the ends into the text
    between them), which leaves most values without the line end that came with them."""
    value = value.strip()
    if 10 in value:  # LF (an int: memchr; `b"\n" in` costs 4 times as much)
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    if 9 in value or value.find(b"  ") >= 0:  # HTAB, two SP
        value = _WSP_RUN.sub(b" ", value)
    return value


def header_hash_input(fields: Fields, signed: list[bytes], relaxed: bool, header: tuple[bytes, bytes]) -> bytes:
    """What a signature's header hash covers (RFC 6376 §3.7), as dkimpy's verification makes it: the fields
    named in `signed` (lower case), each name taking the next instance from the bottom up (dkimpy's
    `select_headers`, over names as the canonicalisation writes them), canonicalised, then the signature field
    with b= empty and no line end. Only the selected fields are canonicalised."""
    names = [name.lower().rstrip() if relaxed else name.lower() for name, _ in fields]
    out = []
    below: dict[bytes, int] = {}
    for wanted in signed:
        index = below.get(wanted, len(fields))
        while index > 0:
            index -= 1
            if names[index] == wanted:
                name, value = fields[index]
                out.append(names[index] + b":" + relaxed_value(value) + b"\r\n" if relaxed else name + b":" + value)
                break
        below[wanted] = index
    name, value = header
    value = _BTAG.sub(b"\\1", value)
    out.append(name.lower().rstrip() + b":" + relaxed_value(value) if relaxed else name + b":" + value.rstrip())
    return b"".join(out)


def _header_hash(fields: Fields, parsed: _Parsed, header: tuple[bytes, bytes]) -> bytes:
    """The hash of the signed header fields and of the signature field without b= (RFC 6376 §3.7), selected and
    canonicalised as dkimpy does, which also counts one From more than h= names (so that a From added above
    the signed one breaks the signature)."""
    return hashlib.sha256(header_hash_input(fields, [*parsed.signed, b"from"], parsed.relaxed, header)).digest()


def _signature_valid(kind: bytes, key: object, signature: bytes, digest: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 (through `cryptography`: OpenSSL) or Ed25519 (through PyNaCl, dkimpy's key object)."""
    if kind == b"ed25519":
        try:
            key.verify(digest, signature)  # type: ignore[attr-defined]
        except nacl.exceptions.CryptoError:
            return False
        return True
    public = _rsa(key["modulus"], key["publicExponent"])  # type: ignore[index]
    try:
        public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class DkimCheck(MessageCheck[DkimResult]):
    name = "dkim"
    policy = "dkim"
    replies: dict = {}
    report_key = ("dkim",)

    def body_hashes(self, fields: Fields) -> list[BodyHash]:
        wanted = []
        for _, value in [f for f in fields if f[0].lower() == b"dkim-signature"][:MAX_SIGNATURES]:
            try:
                wanted.append(_parse(value).body_hash)
            except _Invalid:
                continue
        return wanted

    def run(self, subject: Message, dns: DnsContext) -> DkimResult:  # type: ignore[override]
        values = subject.values(b"dkim-signature")
        if not values:
            return unsigned()
        if subject.truncated:
            return _signed([Signature("permerror", "header over 1 MiB: not verified", *_names(v))
                            for v in values[:MAX_SIGNATURES]])
        signatures = [self._verify(v, subject, dns) for v in values[:MAX_SIGNATURES]]
        if len(values) > MAX_SIGNATURES:
            more = len(values) - MAX_SIGNATURES
            signatures.append(Signature("policy", f"{more} more signatures not verified (at most {MAX_SIGNATURES})"))
        return _signed(signatures)

    def _verify(self, value: bytes, message: Message, dns: DnsContext) -> Signature:
        lenient = _lenient_tags(value)
        domain, selector = _names(value, lenient)
        prefix = "".join(_text(lenient.get(b"b", b"")).split())[:B_PREFIX]

        testing = ""

        def verdict(result: str, reason: str) -> Signature:
            return Signature(result, reason + testing, domain, selector, prefix)

        try:
            parsed = _parse(value)
        except _Invalid as exc:
            return verdict("neutral", str(exc))
        tags = parsed.tags
        if tags[b"a"] == b"rsa-sha1":
            return verdict("fail", "rsa-sha1 is not acceptable (RFC 8301)")
        if b"x" in tags and int(tags[b"x"]) < time.time():
            expired = datetime.fromtimestamp(int(tags[b"x"]), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return verdict("policy", f"signature expired at {expired} (x=)")
        name = f"{selector}._domainkey.{domain}"
        try:
            key, bits, kind, tlsrpt, limits = key_record(name, dns)
        except DNSTempError as exc:
            return verdict("temperror", f"key lookup failed: {exc}")
        except KeyProblem as exc:
            return verdict("permerror", str(exc))
        if limits.testing:  # t=y: every verdict from here on says so (module docstring)
            testing = "; key in testing mode (t=y)"
        identity = tags.get(b"i", b"@" + tags[b"d"]).rpartition(b"@")[2]
        if refused := limits.forbids(tags[b"a"], identity, tags[b"d"]):
            return verdict("fail", refused)
        digest = message.digests.get(parsed.body_hash)
        try:
            expected = base64.b64decode(b"".join(tags[b"bh"].split()), validate=True)
        except binascii.Error:
            return verdict("neutral", "bh= is not base64")
        if digest != expected:
            return verdict("fail", "body hash did not verify")
        algorithm = _text(tags[b"a"])
        if tlsrpt:
            return verdict("permerror", "key is for TLS reports only (s=tlsrpt)")
        if not algorithm.startswith(_text(kind) + "-"):
            return verdict("fail", f"a={algorithm} does not fit the {_text(kind)} key")
        signature = base64.b64decode(b"".join(tags[b"b"].split()))
        if kind == b"rsa" and len(signature) != (bits + 7) // 8:
            return verdict("fail", f"signature length does not fit the {bits}-bit key")
        header = next(f for f in message.fields if f[0].lower() == b"dkim-signature" and f[1] == value)
        if _signature_valid(kind, key, signature, _header_hash(message.fields, parsed, header)):
            return verdict("pass", f"{bits}-bit key, {algorithm}" if kind == b"rsa" else algorithm)
        return verdict("fail", "signature did not verify")

    def failed(self, subject: Subject, reason: str) -> DkimResult:
        return DkimResult("dkim", "temperror", reason)

    def report(self, result: DkimResult) -> list[dict]:
        return [{"result": s.result, "domain": s.domain, "selector": s.selector} for s in result.signatures]

    def summary(self, result: DkimResult) -> str:
        if not result.signatures:
            return f"dkim: {result.result}"
        return "\n".join(f"dkim d={s.domain} s={s.selector}: {s.result} ({s.reason})" for s in result.signatures)


def _lenient_tags(value: bytes) -> dict[bytes, bytes]:
    """Each tag's value read leniently, its first occurrence (a signature that does not parse is still reported
    with its d= and s=)."""
    tags: dict[bytes, bytes] = {}
    for name, found in _TAG.findall(value):
        tags.setdefault(name, found.strip())
    return tags


def _names(value: bytes, lenient: dict[bytes, bytes] | None = None) -> tuple[str, str]:
    """(d=, s=) as far as they can be read, lower case d=."""
    tags = _lenient_tags(value) if lenient is None else lenient
    return _text(tags.get(b"d", b"")).lower()[:LIMIT_NAME], _text(tags.get(b"s", b""))[:LIMIT_NAME]

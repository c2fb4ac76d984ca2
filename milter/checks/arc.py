"""ARC (RFC 8617): the Authenticated Received Chain of a message verified, reported as `arc=pass (i=2)` (the
chain length in the comment), and, when we forward mail, a new ARC set sealed over our own
Authentication-Results so that the next receiver learns what we saw.

dkimpy does the cryptography and the chain rules (its `ARC` class: sets collected by instance, the most
recent ARC-Message-Signature and every ARC-Seal verified, cv= checked in each seal). What is done here:
- the body is not kept: the most recent AMS's bh= is compared with the digest of the body streamed past
  (`arc_body_hashes` says which), and dkimpy then verifies the header hash with bh= removed from its tags;
  older AMSs are not verified at all (RFC 8617 §5.2 step 5 asks for the most recent one only);
- keys come through mailwarden's resolver (cache, per-message DNS budget) and are read and bounded as DKIM
  reads them (checks/dkim.py: one record, RSA keys of 1024-4096 bits, refused before any arithmetic);
- what the key record restricts is honoured as DKIM honours it, by the same helper (dkim.KeyLimits.forbids),
  for the AMS and for every AS: a key whose h= does not list the signature's hash fails it. RFC 8617 §4.1.2
  gives the AMS the syntax and semantics of a DKIM-Signature, and an AS is verified with a key from the same
  records (its a=, d=, s= as DKIM's); h= is a property of the key whatever field it verifies. t=s is not
  applied: it restricts the i= identity of DKIM, and ARC's i= is an instance number. t=y is not reported:
  RFC 8617 says nothing of it, and an ARC result is about the chain, not one signer. dkimpy checks none of
  this (it reads only p= and k= of a key record);
- RFC 8617 where dkimpy follows the 2018 draft: a chain in which an ARC-Seal says cv=fail is `fail`
  (§5.2 steps 3 and 4; dkimpy returns no result), and instances above 50 make the chain fail (§4.2.1).
A key lookup that fails on DNS trouble fails the chain too ("arc" has no temperror in RFC 8617), but the
result remembers it: we do not seal a chain as cv=fail on a DNS error, which would end it for good.

The result is tag only (no policy keys). It matters to DMARC: with `[arc] trusted_sealers`, a chain that
passes, was last sealed by one of them, and whose last ARC-Authentication-Results says dmarc=pass vouches
for the message (`ArcResult.vouched`), and DMARC does not enforce its fail (checks/dmarc.py).

Sealing (RFC 8617 §5.1) does not use dkimpy's `ARC.sign`, which would need the whole body, re-renders the
Authentication-Results it copies without their comments, and signs with pure-Python RSA: the
ARC-Authentication-Results is our own Authentication-Results verbatim behind `i=N;`, bh= is the streamed
digest, cv= is our own verdict on the chain, the header hash is dkimpy's and the signature OpenSSL's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import authres
import dkim
from authres.arc import ARCAuthenticationResult
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ..dns import DNSTempError
from ..headers import comment
from .base import CheckResult, DnsContext, Field, Subject
from .bodyhash import BodyHash
from .dkim import QUIET, RSA_BITS, KeyProblem, key_record
from .message import Fields, Message, MessageCheck

if TYPE_CHECKING:
    from ..config import Config

MAX_INSTANCES = 50  # RFC 8617 §4.2.1
ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")  # an AS covers them in this order
SEAL_BODY = BodyHash("relaxed", "sha256")  # the body hash a seal's AMS needs
_AMS = b"arc-message-signature"
_RELAXED = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_INSTANCE = re.compile(rb"^\s*i\s*=\s*(\d+)\s*;")
_FOLD_B = re.compile(rb".{72}(?=.)")  # a seal's b= in lines of 72 characters


@dataclass(frozen=True)
class ArcResult(CheckResult):
    """The chain's validation status (pass | fail | none) and what a policy may want to know about it."""

    instances: int = 0  # the highest i= found: the chain's length when it passes
    sealer: str = ""  # d= of the most recent ARC-Seal, when the chain passes
    sealer_dmarc: str = ""  # the dmarc= result in that sealer's ARC-Authentication-Results, "" if it has none
    ended: bool = False  # the most recent ARC-Seal says cv=fail: nobody seals this chain again (§5.1)
    unsure: bool = False  # the fail may not be the chain's (a DNS error, a header cut short): not sealed as such
    vouched: bool = False  # passes, last sealed by a trusted sealer whose ARC-Authentication-Results says dmarc=pass

    def resinfo(self) -> str:
        """`arc=pass (i=2)`; a fail says why after the length, a trusted sealer's vouching is said too."""
        if self.result == "none":
            return "arc=none"
        why = f"i={self.instances}" + (f": {self.reason}" if self.result != "pass" else "")
        if self.vouched:
            why += f", trusted sealer {self.sealer} saw dmarc=pass"
        return str(ARCAuthenticationResult(result=self.result, result_comment=comment(why)))


class ArcCheck(MessageCheck[ArcResult]):
    name = "arc"
    policy = "arc"
    replies: Mapping = {}  # tag only; DMARC reads it
    report_key = ("arc",)

    def __init__(self, trusted_sealers: frozenset[str] = frozenset(), sealer: Sealer | None = None) -> None:
        self.trusted_sealers = trusted_sealers
        self.sealer = sealer

    def configure(self, config: Config) -> ArcCheck:
        return ArcCheck(config.arc.trusted_sealers, config.arc.sealer)

    def body_hashes(self, fields: Fields) -> list[BodyHash]:
        return [*arc_body_hashes(fields), *([SEAL_BODY] if self.sealer else [])]

    def run(self, subject: Message, dns: DnsContext) -> ArcResult:  # type: ignore[override]
        if subject.truncated and (latest := _latest_instance(subject.fields)):
            return ArcResult("arc", "fail", "header over 1 MiB: not verified", latest, unsure=True)
        result = verify_chain(subject.fields, subject.digests, dns)
        vouched = result.sealer in self.trusted_sealers and result.sealer_dmarc == "pass"
        return replace(result, vouched=True) if vouched else result

    def failed(self, subject: Subject, reason: str) -> ArcResult:
        return ArcResult("arc", "fail", reason, unsure=True)

    def sealing(self) -> bool:
        return self.sealer is not None

    def seal(self, result: ArcResult, message: Message, authentication_results: str) -> tuple[Field, ...]:
        if self.sealer is None:
            return ()
        now = int(time.time())
        return tuple(self.sealer.seal(message.fields, message.digests, authentication_results, result, now))

    def report(self, result: ArcResult) -> dict:
        return {"result": result.result, "instances": result.instances}

    def summary(self, result: ArcResult) -> str:
        return f"arc (i={result.instances}): {result.result} ({result.reason})"


def arc_body_hashes(fields: Fields) -> list[BodyHash]:
    """The body digest the most recent ARC-Message-Signature needs (none when there is no chain to check)."""
    latest = _latest_instance(fields)
    for name, value in fields:
        if name.lower() == _AMS and _instance(value) == latest:
            key = _body_key(_tags(value))
            return [key] if key else []
    return []


def verify_chain(fields: Fields, digests: Mapping[BodyHash, bytes], dns: DnsContext) -> ArcResult:
    """RFC 8617 §5.2 over the header fields as they arrived and the digests of the streamed body."""
    latest = _latest_instance(fields)
    if latest == 0:
        return ArcResult("arc", "none", "no ARC sets")
    if latest > MAX_INSTANCES:
        return ArcResult("arc", "fail", f"i={latest} is above {MAX_INSTANCES}", latest)
    chain = _Chain(fields, digests, latest, dns)
    try:
        cv, sets, reason = chain.verify(dnsfunc=None)  # keys are fetched by verify_sig below
    except Exception as exc:  # dkimpy's parsing of hostile fields: IndexError, ValueError, ...  # noqa: BLE001
        return ArcResult("arc", "fail", f"malformed ARC set ({type(exc).__name__})", latest)
    ended = bool(sets) and sets[0].get("cv") == dkim.CV_Fail
    if cv != dkim.CV_Pass:  # None: dkimpy's "the chain is terminated" (a cv=fail seal), RFC 8617 says fail
        why = reason + (f" ({chain.problem})" if chain.problem else "")
        return ArcResult("arc", "fail", why, latest, ended=ended, unsure=chain.dns_error)
    sealer = sets[0]["as-domain"].decode("ascii", "replace").lower()
    return ArcResult("arc", "pass", f"{latest} ARC sets, last sealed by {sealer}", latest, sealer,
                     _dmarc_of(sets[0]["aar-value"]))  # fmt: skip


def _dmarc_of(aar: bytes) -> str:
    """The dmarc= result an ARC-Authentication-Results value ("i=N; authserv-id; ...") reports."""
    text = _INSTANCE.sub(b"", aar, count=1).decode("utf-8", "replace").strip()
    try:
        header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + text)
    except Exception:  # authres raises its own SyntaxError and others on odd input  # noqa: BLE001
        return ""
    return next((r.result.lower() for r in header.results if r.method.lower() == "dmarc"), "")


class _Chain(dkim.ARC):
    """dkimpy's ARC verification over header fields alone (see the module docstring)."""

    def __init__(self, fields: Fields, digests: Mapping[BodyHash, bytes], latest: int, dns: DnsContext) -> None:
        super().__init__(logger=QUIET)
        self.headers = [(name, value) for name, value in fields]
        self.digests = digests
        self.latest = latest
        self.dns = dns
        self.problem = ""  # the first key or DNS problem, for the reason
        self.dns_error = False

    def note(self, problem: str) -> None:
        self.problem = self.problem or problem

    def verify_sig(self, sig: dict, include_headers: list, sig_header: tuple, dnsfunc: object) -> bool:
        """One AMS or AS: body hash (most recent AMS only), key, then dkimpy's header hash and signature."""
        if sig_header[0].lower() == _AMS:
            if _number(sig.get(b"i")) != self.latest:
                return False  # not needed (§5.2 step 5); dkimpy only reads the most recent AMS's verdict
            key = _body_key(sig)
            try:
                expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]), validate=True)
            except binascii.Error:
                return False
            if key is None or self.digests.get(key) != expected:
                self.note("body hash did not verify")
                return False
            sig = {tag: value for tag, value in sig.items() if tag != b"bh"}
        name = (sig[b"s"] + b"._domainkey." + sig[b"d"]).decode("ascii", "replace")
        try:
            self.pk, self.keysize, self.ktag, self.seqtlsrpt, limits = key_record(name, self.dns)
        except DNSTempError as exc:
            self.dns_error = True
            self.note(f"key lookup failed: {exc}")
            return False
        except KeyProblem as exc:
            self.note(str(exc))
            return False
        if refused := limits.forbids(sig.get(b"a", b"")):  # the key's h=, as for DKIM; no i= identity here
            self.note(refused)
            return False
        return bool(self.verify_sig_process(sig, include_headers, sig_header, dnsfunc))


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return {}


def _number(value: bytes | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 10 else 0


def _instance(value: bytes) -> int:
    """The i= of an ARC field as dkimpy reads it (its first i= tag), 0 when it has none."""
    found = dkim.ARC.INSTANCE_RE.search(value)
    return _number(found.group(1)) if found else 0


def _latest_instance(fields: Fields) -> int:
    return max((_instance(value) for name, value in fields if name.lower() in ARC_FIELDS), default=0)


def _body_key(sig: Mapping[bytes, bytes]) -> BodyHash | None:
    """Which digest an AMS's bh= is to be compared with (None: a c=, a= or l= that cannot be hashed)."""
    try:
        body = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"relaxed/relaxed")).body_algorithm.name
    except dkim.InvalidCanonicalizationPolicyError:
        return None
    length = sig.get(b"l")
    if sig.get(b"a") != b"rsa-sha256" or (length is not None and not length.isdigit()):
        return None
    return BodyHash(body.decode(), "sha256", int(length) if length is not None else None)


@dataclass(frozen=True)
class Sealer:
    """What we seal with: the signing domain, the selector its public key is published under, the key."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey = field(hash=False, compare=False)

    @classmethod
    def load(cls, domain: str, selector: str, key_file: str) -> Sealer:
        """Raises ValueError for a key file that is not a usable RSA private key (PEM, PKCS#1 or PKCS#8)."""
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: a key that needs a password
            raise ValueError(f"{key_file}: not an RSA private key in PEM form ({exc})") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_file}: not an RSA private key in PEM form (a {type(key).__name__})")
        if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
            raise ValueError(f"{key_file}: {key.key_size}-bit key (ARC sealing takes {RSA_BITS[0]}-{RSA_BITS[1]} bits)")
        return cls(domain.lower(), selector.lower(), key)

    def seal(
        self,
        fields: Fields,
        digests: Mapping[BodyHash, bytes],
        authentication_results: str,
        chain: ArcResult,
        timestamp: int,
        signed: Sequence[bytes] | None = None,
    ) -> list[Field]:
        """The next ARC set for a message (RFC 8617 §5.1), top first: ARC-Seal, ARC-Message-Signature,
        ARC-Authentication-Results; [] when the chain must not be sealed again. `fields` are the message's
        header fields as they will leave (our own on top); `signed` the names the AMS signs (default: those
        of dkimpy's list that the message has, From twice)."""
        if chain.ended or chain.instances >= MAX_INSTANCES or chain.unsure:
            return []
        instance = str(chain.instances + 1).encode()
        common = [(b"a", b"rsa-sha256"), (b"d", self.domain.encode()), (b"i", instance),
                  (b"s", self.selector.encode()), (b"t", str(timestamp).encode())]  # fmt: skip
        if signed is None:
            defaults = dkim.ARC(logger=QUIET)
            defaults.headers = list(fields)
            signed = defaults.default_sign_headers()
        names = [name.lower() for name in signed]
        aar = (b"ARC-Authentication-Results", b" i=" + instance + b"; " + authentication_results.encode())
        ams_tags = [*common, (b"bh", base64.b64encode(digests[SEAL_BODY])), (b"c", b"relaxed/relaxed"),
                    (b"h", b":".join(names))]  # fmt: skip
        ams = self._signature(b"ARC-Message-Signature", ams_tags, names, [aar, *fields])
        # The seal covers every earlier set (oldest first) when the chain passed, only our own otherwise (§5.1.2).
        earlier = [f for f in fields if f[0].lower() in ARC_FIELDS] if chain.result == "pass" else []
        covered = [name for _ in range(chain.instances if earlier else 0) for name in reversed(ARC_FIELDS)]
        covered += [b"arc-authentication-results", _AMS]
        seal = self._signature(b"ARC-Seal", [*common, (b"cv", chain.result.encode())], covered, [ams, aar, *earlier])
        return [(name.decode(), value.decode().strip()) for name, value in (seal, ams, aar)]

    def _signature(
        self, name: bytes, tags: list[tuple[bytes, bytes]], covered: list[bytes], headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, bytes]:
        """A signature field: its tags in name order, b= signed over the `covered` fields (dkimpy's selection,
        bottom up, and relaxed canonicalisation) and over the field itself with b= empty; RSASSA-PKCS1-v1_5
        by `cryptography` (OpenSSL: dkimpy's own RSA is pure Python, ~15 ms a seal for a 2048-bit key). Tags
        in name order with lower-case values is what dkimpy calls standardised, the form of the ARC suite's
        reference signatures.

        The field is folded between tags (relaxed canonicalisation reads each fold as the space it replaced)
        with a line end and a space, not FOLD's tab: dkimpy finds an AMS by " i=N;" and misses it after a tab.
        The seal's b= is folded too (no signature of ours covers it); the AMS's is not: our seal signs the AMS
        as it is, and the suite's reference seals sign it unfolded (up to 690 characters, for a 4096-bit key)."""
        ordered = sorted([*tags, (b"b", b"")])

        def value(signature: bytes) -> bytes:
            return b"; ".join(tag + b"=" + (signature if tag == b"b" else text) for tag, text in ordered)

        hasher = hashlib.sha256()
        dkim.hash_headers(hasher, _RELAXED, _RELAXED.canonicalize_headers(headers), covered, (name, b" " + value(b"")),
                          {})  # fmt: skip
        signature = base64.b64encode(self.key.sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())))
        if name == b"ARC-Seal":
            signature = _FOLD_B.sub(b"\\g<0>\n ", signature)
        return name, b" " + value(signature).replace(b"; ", b";\n ")

"""Checks of the message itself (DKIM, DMARC; ARC is one more): they run at end of data, over the header fields
as they arrived and the body hashes they asked for, after the checks of the client and the envelope.

While the message streams past, a `MessageReader` keeps the header fields verbatim and, from the first body
chunk on, hashes the body for the `BodyHash`es the message checks ask for once the header is complete
(checks/bodyhash.py); the body itself is never kept. At end of data each message check gets a `Message`: the
client and envelope, the fields, the digests, and the results of every check before it (DMARC reads SPF's
and DKIM's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .base import Check, CheckResult, Field, Subject
from .bodyhash import BodyHash, BodyHasher

Fields = tuple[tuple[bytes, bytes], ...]  # (name, value): the value verbatim after the colon, CRLF line ends
MAX_HEADER_BYTES = 1024 * 1024  # header fields kept per message (Postfix's own header_size_limit is 100 KiB)


@dataclass(frozen=True)
class Message(Subject):
    """The subject of a message check: the client and envelope, and what the message says."""

    fields: Fields = ()
    truncated: bool = False  # the header was larger than MAX_HEADER_BYTES: the fields after that are missing
    digests: Mapping[BodyHash, bytes] = field(default_factory=dict, hash=False, compare=False)
    results: Mapping[str, CheckResult] = field(default_factory=dict, hash=False, compare=False)

    def values(self, name: bytes) -> list[bytes]:
        """The values of every field called `name` (lower case), top down."""
        return [value for key, value in self.fields if key.lower() == name]


R = TypeVar("R", bound=CheckResult)


class MessageCheck(Check[R]):
    """A check that runs at end of data; `run` gets a `Message`."""

    stage = "message"

    def body_hashes(self, fields: Fields) -> Iterable[BodyHash]:
        """The body hashes this check will read, asked once the header is complete."""
        return ()

    def seal(self, result: R, message: Message, authentication_results: str) -> tuple[Field, ...]:
        """Fields to add above everything else once our Authentication-Results (its value given) is written,
        top first: ARC's seal, which signs it. `message` has our fields on top of those that arrived."""
        return ()

    def sealing(self) -> bool:
        """Whether `seal` may add fields (the engine builds the message as it leaves only then): whether this
        check has a `seal` of its own."""
        return type(self).seal is not MessageCheck.seal


def field_of(name: str, value: str) -> tuple[bytes, bytes]:
    """A header field as the milter passes it (the value verbatim after the colon, folded lines joined by LF
    or CRLF) in the form DKIM hashes it: bytes as they came, CRLF line ends, CRLF at the end."""
    raw = value.encode("utf-8", "surrogateescape")
    if 10 in raw:  # LF; CRLF or bare LF -> CRLF (as re.sub of \r?\n, which tries a match at every octet)
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return name.encode("utf-8", "surrogateescape"), raw + b"\r\n"


class MessageReader:
    """One message as it streams past: its header fields kept verbatim (up to MAX_HEADER_BYTES), its body
    hashed for the message checks and dropped."""

    def __init__(self, checks: Sequence[MessageCheck]) -> None:
        self.checks = checks
        self.fields: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.truncated = False
        self.hasher: BodyHasher | None = None  # made at the first body chunk: the header is complete then

    def header(self, name: str, value: str) -> None:
        if self.truncated:
            return
        item = field_of(name, value)
        self.size += len(item[0]) + len(item[1]) + 1
        if self.size > MAX_HEADER_BYTES:
            self.truncated = True
            return
        self.fields.append(item)

    def _hasher(self) -> BodyHasher:
        if self.hasher is None:
            fields = tuple(self.fields)
            self.hasher = BodyHasher(key for check in self.checks for key in check.body_hashes(fields))
        return self.hasher

    def body(self, chunk: bytes) -> bool:
        """Hash a body chunk; False once no check needs more of the body."""
        hasher = self._hasher()
        if not hasher.wanted:
            return False
        hasher.feed(chunk)
        return hasher.wanted

    def message(self, subject: Subject, results: Mapping[str, CheckResult]) -> Message:
        """What the message checks get at end of data (the body hashes finished)."""
        digests = self._hasher().finish()
        return Message(subject.ip, subject.helo, subject.sender, tuple(self.fields), self.truncated, digests,
                       dict(results))  # fmt: skip


def read_message(raw: bytes, checks: Sequence[MessageCheck]) -> MessageReader:
    """A whole message from a file, read as the milter reads one from the MTA (for `mailwarden check
    --message`): its header fields one by one, its body in chunks. A leading mbox "From " line is skipped."""
    reader = MessageReader(checks)
    fields, body = split_message(raw)
    for name, value in fields:
        reader.header(name, value)
    for start in range(0, len(body), 65536):
        if not reader.body(body[start : start + 65536]):
            break
    return reader


def split_message(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """(header fields as (name, verbatim value) strings, as the milter gets them; body) of a message file."""
    lines = raw.split(b"\n")
    fields: list[tuple[str, str]] = []
    index = 0
    if lines and lines[0].startswith(b"From "):
        index = 1
    while index < len(lines):
        line = lines[index].rstrip(b"\r")
        if not line:
            index += 1
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line.decode("utf-8", "surrogateescape"))
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))
        index += 1
    return fields, b"\n".join(lines[index:])

"""Turn raw message bytes into an ``email`` message and decoded text, tolerating any damage.

Bounces are machine-written and often broken (wrong boundaries, unknown charsets, truncated originals);
everything here degrades to "less text" rather than raising.
"""

from __future__ import annotations

import contextlib
import email
import email.errors
import email.header
import email.message
import email.policy
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Diagnostics sit at the top of a bounce; what follows is usually the returned original. Parsing only this
# much keeps a 10 MB bounce as cheap as a 10 kB one.
MAX_PARSED_BYTES = 128 * 1024
MAX_TEXT_CHARS = 64 * 1024

Message = email.message.Message
# Parts whose content is data about the bounce (or the returned original), never descended into.
OPAQUE_TYPES = frozenset({
    "message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
    "message/delivery-status", "message/global-delivery-status", "message/feedback-report",
})


# What compat32 leaves in a header that arrived as undeclared 8-bit bytes (surrogate escapes) or ISO-2022-JP.
RAW_HEADER_RE = re.compile("[\udc80-\udcff\x1b]")
LINE_BREAK_TAG_RE = re.compile(r"(?i)<(?:br\s*/?|/p|/div|/tr)>")
TAG_RE = re.compile(r"<[^<>]{0,1000}>")
BOUNDARY_LINE_RE = re.compile(rb"(?m)^--([^\s]{1,200})\r?$")


@dataclass(frozen=True)
class Parsed:
    """A bounce parsed once: the message, its outer parts with their content types, and its readable text."""

    msg: Message
    parts: tuple[tuple[Message, str], ...]
    body: str

    def of_type(self, *types: str) -> list[Message]:
        """The outer parts (the message itself included) of the given content types, in order."""
        return [part for part, ctype in self.parts if ctype in types]


def parse(raw: bytes) -> Parsed:
    """Parse the message and compute what every later step reads (content types are costly to recompute)."""
    msg = parse_message(raw)
    parts = tuple(walk_outer(msg))
    return Parsed(msg, parts, human_text(parts))


def parse_message(raw: bytes) -> Message:
    """Parse at most MAX_PARSED_BYTES with the lenient compat32 policy (defects are recorded, not raised).

    A multipart whose declared boundary never occurs (MTAs do send those) is re-parsed with the boundary that
    the body actually uses, so its delivery-status part is not lost.
    """
    raw = raw[:MAX_PARSED_BYTES]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_maintype() == "multipart" and not isinstance(msg.get_payload(), list):
        found = BOUNDARY_LINE_RE.search(raw.partition(b"\n\n")[2] or raw)
        if found:
            try:
                msg.set_boundary(found.group(1).decode("latin-1"))
                msg = email.message_from_bytes(msg.as_bytes(), policy=email.policy.compat32)
            except Exception:  # noqa: BLE001 - keep the first parse when the repair itself fails
                return email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg


def header(msg: Message, name: str) -> str:
    """A header as plain text, with RFC 2047 words decoded and folding removed; '' when absent or broken."""
    wanted = name.lower()
    value = next((str(v) for k, v in msg.raw_items() if k.lower() == wanted), None)
    if value is None:
        return ""
    if RAW_HEADER_RE.search(value):  # raw 8-bit or ISO-2022-JP bytes, sent without RFC 2047 encoding
        with contextlib.suppress(UnicodeError):
            value = decode_bytes(value.encode("ascii", "surrogateescape"), None)
    try:
        decoded = email.header.make_header(email.header.decode_header(value))
        text = str(decoded)
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        text = value
    return " ".join(text.split())


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, else the likely ones (Japanese MTAs often declare none), else Latin-1."""
    guesses = ("iso-2022-jp",) if b"\x1b$" in data else ("utf-8", "euc-jp")
    for candidate in (charset, *guesses):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeError):
            continue
    return data.decode("latin-1")


def part_text(part: Message) -> str:
    """The decoded text of a non-multipart part (transfer encoding and charset undone)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken part yields no text, it must not abort the analysis
        return ""
    if isinstance(payload, bytes):
        charset = part.get_content_charset() if _charset_is_sane(part) else None
        return decode_bytes(payload, charset)[:MAX_TEXT_CHARS]
    if isinstance(payload, str):
        return payload[:MAX_TEXT_CHARS]
    return ""


def _charset_is_sane(part: Message) -> bool:
    try:
        part.get_content_charset()
    except Exception:  # noqa: BLE001 - e.g. RFC 2231 garbage in the parameter
        return False
    return True


def content_type(part: Message) -> str:
    """The content type, lower-case; damaged values (folded into the type) are cut at the first blank."""
    return part.get_content_type().split()[0].rstrip(";").lower()


def walk_outer(msg: Message, ctype: str | None = None) -> Iterator[tuple[Message, str]]:
    """(part, content type) of the bounce itself, not descending into attached originals (message/rfc822...)."""
    yield msg, ctype or content_type(msg)
    if not msg.is_multipart():
        return
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return
    for sub in payload:
        if not isinstance(sub, Message):
            continue
        sub_type = content_type(sub)
        if sub_type in OPAQUE_TYPES:
            yield sub, sub_type
        else:
            yield from walk_outer(sub, sub_type)


def human_text(parts: Iterable[tuple[Message, str]]) -> str:
    """The human-readable text of the bounce (text/* parts outside any attached original), HTML stripped."""
    chunks: list[str] = []
    for part, ctype in parts:
        if part.is_multipart():
            continue
        broken_multipart = ctype.startswith("multipart/")  # a multipart whose parts could not be found
        if ctype == "text/plain" or broken_multipart or (ctype == "text/html" and not chunks):
            text = part_text(part)
            chunks.append(strip_html(text) if ctype == "text/html" else text)
    return "\n".join(chunks)[:MAX_TEXT_CHARS]


def strip_html(text: str) -> str:
    """Tags, scripts and styles removed, entities resolved; good enough to read a diagnostic sentence.

    Linear in the input: script/style blocks are cut with str.find and tags are bounded, because a pattern
    like '<[^>]*>' is quadratic on a body of unclosed '<' (seconds for 100 kB of attacker-written HTML).
    """
    lowered = text.lower()
    kept: list[str] = []
    position = 0
    while True:
        starts = [i for i in (lowered.find("<script", position), lowered.find("<style", position)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        kept.append(text[position:start])
        closing = lowered.find("</" + ("script" if lowered.startswith("<script", start) else "style"), start)
        end = lowered.find(">", closing) if closing >= 0 else -1
        position = end + 1 if end >= 0 else len(text)
    kept.append(text[position:])
    text = LINE_BREAK_TAG_RE.sub("\n", "".join(kept))
    return html.unescape(TAG_RE.sub(" ", text))

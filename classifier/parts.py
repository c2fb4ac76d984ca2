"""Turn raw message bytes into an ``email`` message and decoded text, tolerating any damage.

Bounces are machine-written and often broken (wrong boundaries, unknown charsets, truncated originals);
everything here degrades to "less text" rather than raising.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.header
import email.message
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

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
BOUNDARY_LINE_RE = re.compile(r"(?m)^--([^\s]{1,200})\r?$")


def at_word_start(*alternatives: str) -> str:
    r"""Regex source for "any alternative, starting at a word start", in a form Python's re scans fast.

    With "\b(?:mail|data)" re tries every branch at every position; "m(?<!\wm)ail|d(?<!\wd)ata" lets it skip
    to candidate first letters and checks the word start in a look-behind (2-5x faster on long texts). Each
    alternative must start with a literal letter.
    """
    return "|".join(f"{a[0]}(?<!\\w{a[0]}){a[1:]}" for a in alternatives)


# Lines after which a body-only bounce quotes the original message.
ORIGINAL_LINE_RE = re.compile(
    r"(?m)^[ \t\-=_*>|]*(?:"
    r"(?:-+ ?)?(?:original message|unsent message|returned message|undelivered message|message headers? follow)"
    r"|content-type: message/rfc822"
    r"|received: ?from "
    r")")
# The same announcement anywhere in a line (kept separate from the anchored pattern: no backtracking '.*').
# ("did NOT receive a copy of your message" names the recipients that follow, it announces no original.)
# Both are matched against lower-cased text.
ORIGINAL_PHRASE_RE = re.compile(at_word_start(
    "copy(?<!receive a copy) of (?:the|your) (?:original )?message", "original message (?:follows|headers?)",
    "message (?:text )?follows", "headers? of the original", "text of your message"))
# Lines that are a header field or its continuation (the stdlib feed parser's own test; a "From " line is an
# mbox envelope) ...
HEADER_BLOCK_RE = re.compile(r"(?:(?:From |[\041-\071\073-\176]*:|[\t ])[^\n]*(?:\n|\Z))*")
# ... the fields among them, continuation lines included (a "From " line or a nameless ":" line is none) ...
FIELD_RE = re.compile(r"(?m)^([\041-\071\073-\176]+):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
# ... and the blank line that ends them.
BLANK_LINE_RE = re.compile(r"\r?\n|\r")
STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
# Multiparts nested deeper than this are not read, nor parts after this many in one multipart (hostile input
# nests thousands deep or packs 30 000 empty parts into 128 KiB; a real bounce has at most a handful).
MAX_DEPTH = 20
MAX_PARTS = 100
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Parsed:
    """A bounce parsed once: the message, its outer parts with their content types, and its readable text."""

    msg: Message
    parts: tuple[tuple[Message, str], ...]
    body: str

    @cached_property
    def original(self) -> tuple[int, int] | None:
        """Where the body quotes the returned original (see find_original); computed once."""
        return find_original(self.body)

    @cached_property
    def report_text(self) -> str:
        """The body up to the returned original: the part that is the bounce's own wording."""
        return self.body[: self.original[0]] if self.original else self.body

    @cached_property
    def body_lower(self) -> str:
        """body lower-cased (same length): found once, not once per recipient looked up in it."""
        return lowered(self.body)

    @cached_property
    def report_lower(self) -> str:
        """report_text lower-cased (same length), for the case-insensitive wording tests."""
        return lowered(self.report_text)

    @cached_property
    def report_words(self) -> str:
        """report_lower with every run of white space one space: wording tests match across wrapped lines
        ("has not\nbeen delivered")."""
        return " ".join(self.report_lower.split())

    def of_type(self, *types: str) -> list[Message]:
        """The outer parts (the message itself included) of the given content types, in order."""
        return [part for part, ctype in self.parts if ctype in types]


def lowered(text: str) -> str:
    """Lower-cased text with the same length (so match positions are positions in ``text``).

    Patterns run on lower-cased text instead of with re.IGNORECASE, which makes Python's re ~5x slower on
    alternations. str.lower() changes the length of a few characters (e.g. U+0130); then only ASCII is lowered.
    """
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


def find_original(text: str) -> tuple[int, int] | None:
    """(start of the line announcing the returned original, end of the announcement), if there is one."""
    low = lowered(text)
    spans = [(m.start(), m.end()) for m in (ORIGINAL_LINE_RE.search(low), ORIGINAL_PHRASE_RE.search(low)) if m]
    if not spans:
        return None
    start, end = min(spans)
    return text.rfind("\n", 0, start) + 1, end


def cut_original(text: str) -> str:
    """The text up to where the returned original message starts."""
    span = find_original(text)
    return text[: span[0]] if span else text


def parse(raw: bytes) -> Parsed:
    """Parse the message and compute what every later step reads (content types are costly to recompute)."""
    return _parsed(parse_message(raw))


def _parsed(msg: Message) -> Parsed:
    parts = tuple(walk_outer(msg))
    return Parsed(msg, parts, human_text(parts))


def attached_report(parsed: Parsed) -> Parsed | None:
    """The first attached message that is itself a delivery report (multipart/report), parsed as one.

    Gateways and list managers forward a bounce as an attachment under a text of their own; the report is
    then inside, and the attached message's To is the original sender, not the failed recipient. Only the
    header block of each attachment is read unless it declares a report.
    """
    for part in parsed.of_type("message/rfc822"):
        inner = part.get_payload()
        if part is not parsed.msg and isinstance(inner, str) and \
                content_type(split_message(inner)[0]) == "multipart/report":
            return _parsed(_parse_text(inner, 1))
    return None


def parse_message(raw: bytes) -> Message:
    """Parse at most MAX_PARSED_BYTES into compat32 messages, splitting MIME parts ourselves.

    The stdlib feed parser reads every line of a 60 KiB bounce in Python (~3 ms, the bulk of a classification),
    although nothing past the headers of an attached original is ever read. Here header blocks are read with
    the stdlib's own rules (header-line test, compat32 unfolding), bodies are cut at boundary lines found with
    str.find, and attached messages keep their body unparsed. A multipart whose declared boundary never
    occurs (MTAs do send those) is split at the boundary the body actually uses.
    """
    return _parse_text(raw[:MAX_PARSED_BYTES].decode("ascii", "surrogateescape"), 0)


def _parse_text(text: str, depth: int) -> Message:
    """One message or MIME part: its headers, and its body split into parts or kept as a string.

    Attached originals and reports (OPAQUE_TYPES) stay text: only the To/Cc of a returned original are ever
    read, and only when there is no delivery-status part (extract.original_recipients parses them then).
    """
    msg, body = split_message(text)
    maintype = msg.get_content_maintype()
    if maintype == "multipart":
        if depth >= MAX_DEPTH:
            msg.set_payload([])
            return msg
        parts = _split_multipart(body, msg.get_boundary())
        if parts is None:
            found = BOUNDARY_LINE_RE.search(body)
            parts = _split_multipart(body, found.group(1)) if found else None
        if parts is not None:
            msg.set_payload([_parse_text(part, depth + 1) for part in parts])
            return msg
    elif maintype == "message" and content_type(msg) not in OPAQUE_TYPES and depth < MAX_DEPTH:
        msg.set_payload([_parse_text(body, depth + 1)])  # message/partial and the like: read as the stdlib does
        return msg
    msg.set_payload(body)
    return msg


def split_message(text: str) -> tuple[Message, str]:
    """(the header block as a Message without payload, the body).

    The header block ends at the first line that is neither a header field nor a continuation (the stdlib
    feed parser's test; a blank separator line is dropped, any other line starts the body); fields are
    unfolded as compat32 does, with two regex scans instead of a Python loop per line. Also reads
    delivery-status field groups and quoted original headers.
    """
    end = HEADER_BLOCK_RE.match(text).end()
    msg = Message()
    for name, value in FIELD_RE.findall(text, 0, end):
        msg.set_raw(name, value.rstrip("\r\n"))
    blank = BLANK_LINE_RE.match(text, end)
    return msg, text[blank.end() if blank else end:]


def _split_multipart(body: str, boundary: str | None) -> list[str] | None:
    """The parts between boundary lines (up to the close delimiter or MAX_PARTS), or None when the boundary
    never occurs.

    A delimiter is "--boundary" at the start of a line, optionally "--" (close), blanks and CR after it
    (RFC 2046 5.1.1, as the stdlib reads it); found with str.find, which is ~10x faster than a multiline regex.
    """
    if not boundary:
        return None
    delimiter = "--" + boundary
    parts: list[str] = []
    start = None
    position = 0
    while (found := body.find(delimiter, position)) >= 0:
        position = found + len(delimiter)
        line_end = body.find("\n", position)
        line_end = len(body) if line_end < 0 else line_end
        rest = body[position:line_end].removesuffix("\r")
        closing = rest.startswith("--")
        if found and body[found - 1] != "\n" or rest[2 if closing else 0:].strip(" \t"):
            continue
        if start is not None:
            # The line break before a delimiter belongs to the delimiter.
            end = found - (2 if body.startswith("\r\n", found - 2) else 1)
            parts.append(body[start:max(end, start)])
        if closing or len(parts) == MAX_PARTS:
            return parts
        start = line_end + 1
    if start is None:
        return None
    last = body[start:]  # truncated: the last part runs to the end, less its final line break
    parts.append(last[:-2] if last.endswith("\r\n") else last[:-1] if last.endswith(("\n", "\r")) else last)
    return parts


def header(msg: Message, name: str, encoded_words: bool = True) -> str:
    """A header as plain text, with RFC 2047 words decoded and folding removed; '' when absent or broken.

    ``encoded_words=False`` keeps "=?utf-8?B?...?=" as written: in an address it is part of the address.
    """
    wanted, size = name.lower(), len(name)  # the length test spares a lower() of each of 80+ provider fields
    value = next((str(v) for k, v in msg.raw_items() if len(k) == size and k.lower() == wanted), None)
    if value is None:
        return ""
    if RAW_HEADER_RE.search(value):  # raw 8-bit or ISO-2022-JP bytes, sent without RFC 2047 encoding
        with contextlib.suppress(UnicodeError):
            value = decode_bytes(value.encode("ascii", "surrogateescape"), None)
    if "=?" not in value or not encoded_words:  # no RFC 2047 encoded word: nothing to decode
        return " ".join(value.split())
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
        return decode_bytes(payload, _charset(part))[:MAX_TEXT_CHARS]
    if isinstance(payload, str):
        return payload[:MAX_TEXT_CHARS]
    return ""


def _charset(part: Message) -> str | None:
    """The declared charset, or None when there is none or the parameter is garbage (e.g. broken RFC 2231)."""
    try:
        return part.get_content_charset()
    except Exception:  # noqa: BLE001 - the stdlib raises various errors on damaged parameters
        return None


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


def human_text(parts: tuple[tuple[Message, str], ...]) -> str:
    """The human-readable text of the bounce (text/* parts outside any attached original), HTML stripped.

    HTML is read only when nothing else is: no text/plain part before it and no delivery-status part.
    """
    # With a delivery-status part the report is in its fields; an HTML rendering of it (AOL and Exchange send
    # 60 KiB of it) is not worth ~1 ms of decoding and stripping.
    html_wanted = not any(ctype in STATUS_TYPES for _, ctype in parts)
    chunks: list[str] = []
    for part, ctype in parts:
        if part.is_multipart():
            continue
        broken_multipart = ctype.startswith("multipart/")  # a multipart whose parts could not be found
        if ctype == "text/plain" or broken_multipart or (ctype == "text/html" and not chunks and html_wanted):
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

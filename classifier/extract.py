"""Per-recipient facts of a bounce: from the delivery-status part when there is one, else from the body text.

Labels depend on more than the sentence (the same "user unknown" means bad-mailbox at RCPT and a policy
rejection after DATA), so the SMTP stage, reply code and status code are pulled out here as well.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from .addresses import (
    ADDRESS_RE,
    find_addresses,
    first_address,
    is_bounce_sender,
    is_list_robot,
    is_robot,
    list_address,
)
from .codes import find_reply_code, find_status, is_generic
from .parts import (
    FIELD_RE,
    STATUS_TYPES,
    Message,
    Parsed,
    at_word_start,
    attached_report,
    cut_original,
    decode_bytes,
    header,
    lowered,
    part_text,
    split_message,
)

# Matched against lower-cased text (see parts.lowered: Python's re is ~5x slower with IGNORECASE).
STAGE_PATTERNS = (
    ("rcpt", re.compile(at_word_start(r"rcpt\b", "recipient address rejected"))),
    ("data", re.compile(at_word_start(r"end of data\b", r"data\b", r"text command\b", r"message body\b",
                                      r"content\b"))),
    ("mail", re.compile(at_word_start(r"mail from\b", r"mail\b command", "sender address rejected"))),
    ("connect", re.compile(at_word_start(r"connect(?:ion|ing)?\b", r"greeting\b", r"helo\b", r"ehlo\b",
                                         r"banner\b"))),
)
MESSAGE_ID_LOCAL_RE = re.compile(r"^(?=.*\d)[0-9a-f.=_\-]{12,}$")
# Delivery-status fields pasted into a text body (a report whose MIME structure was lost).
INLINE_STATUS_RE = re.compile(r"(?im)^(?:Reporting-MTA|Final-Recipient|Original-Recipient):")
# Lines where addresses are message identifiers, contact hints or (Exim) the alias a failed address was
# expanded from, not recipients.
NOT_RECIPIENT_LINE_RE = re.compile(r"(?i)message-?id|^\s*(?:queue[- ]?)?id:|in-reply-to|references:|contact|please"
                                   r"|helpdesk|support|wenden sie sich|kontaktieren|contactez|contatta")
# Lines whose addresses count only when the text names no other: Exim's note under a failed address that an
# alias expanded to ("(generated from alias@example.org)": the alias stands for an undisclosed address), and
# the original's To/Cc quoted in the report ("  To:  list@example.org", cross-posted lists among them).
FALLBACK_LINE_RE = re.compile(r"(?i)\s*(?:\(generated from |to:|cc:)")
# An address that is the argument of "MAIL FROM:" (in a transcript, or an Exim "after MAIL FROM:<...>" line) is
# the sender of the original, never a failed recipient; matched against the text just before the address.
SENDER_ARGUMENT_RE = re.compile(r"(?i)from:\s*<?$")
# An address this many words into an error reply is one the reason mentions ("... or send an e-mail to
# dz@example.lv with the blocked sender"), not the recipient the reply is about, which comes first.
MENTION_WORDS = 4
# A Diagnostic-Code without a single letter states no reason: "X-Unix; 255" is a local program's exit status,
# "smtp;" is empty. The human-readable part then says what happened.
LETTER_RE = re.compile(r"[^\W\d_]")
WORD_RE = re.compile(r"[^\W\d_]{3,}")
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
# A line of prose ending in one of these ends its sentence (":" announces what follows on the next lines, ")"
# closes a parenthesis such as "(Authoritative answer from name server)"); any other line break is wrapping.
LINE_SENTENCE_ENDS = (".", "!", "?", ":", ")")
# A line announcing the list below it ("The following recipients did not receive your message:").
ANNOUNCEMENT_RE = re.compile(r"(?i)\bfollowing\b[^:]*:\s*$")
# A delivery-status field's whole value as one address: one "@" with something on both sides, no blanks.
FIELD_ADDRESS_RE = re.compile(r"[^\s@<>]+@[^\s@<>]+")
# The reason sentence (Finding.reason): it starts after the first error reply and its enhanced code ("550-5.1.1",
# "550: 5.2.2", "554 5.7.1:") and the recipient's address written before the words ('<a@b>...', 'a@b:');
# it ends at its sentence's end, a rule of dashes or stars, or " ... ", and Postfix's "(in reply to ...
# command)" after it is not part of it.
REASON_START_RE = re.compile(r"[45](?<![\w.][45])[0-5]\d(?:[\s:\-]+[245]\.\d{1,3}\.\d{1,3})?(?![\w.])[\s:,\-]*")
REASON_LEAD_RE = re.compile(r"^[\s>'\"]*(?:(?:<[^<>\s]{1,320}>|[\w.+=\-']{1,64}@[\w.\-]{1,255})(?:\.\.\.)?)?[\s:,>]*")
SENTENCE_END_RE = re.compile(r"(?<=[.!?)])\s+(?=[A-Z])|\s[\-*=_]{3,}|\s\.\.\.\s")
REASON_TAIL_RE = re.compile(r"\s*\(in reply to [^()]{1,60}\)\s*$")
MAX_REASON = 200
# An alias expansion noted in the text: the failed address, then within a line or two "(expanded from <alias>)".
EXPANSION_RE = re.compile(rf"({ADDRESS_RE.pattern})>?[^@]{{0,100}}?\(expanded from:?\s*<?({ADDRESS_RE.pattern})>?\)")
# Sendmail transcript lines: what was sent (">>> RCPT To:<...>", which names the stage) and the remote's reply.
TRANSCRIPT_PREFIXES = (">>> ", "<<< ")
# Sendmail's own line about one recipient under such a transcript: "554 <addr>... Remote protocol error".
SUMMARY_LINE_RE = re.compile(r"\s*(?:[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?)?<?[^\s<>@]+@[^\s<>]+?>?\.\.\.")
# Sendmail's line about a host rather than a recipient, "421 example.org (smtp)... Deferred: Connection timed
# out": under a recipient's transcript it reports on the session with another host or mailer.
HOST_LINE_RE = re.compile(r"\s*(?:[245]\d\d )?[\w.\-]+ \([\w\-]+\)\.\.\. ")
MAX_DIAGNOSTIC = 1000
MAX_BLOCK_LINES = 12
# An address this far into its line starts its own block (the line before it is someone else's text).
MAX_LINE_LEAD = 200
# More recipients than this in one bounce are not reported on (bounds the per-recipient work).
MAX_RECIPIENTS = 100
# A first line shorter than this (without the address) is not a whole "554 <addr>... reason" diagnostic.
MIN_BLOCK_CHARS = 24
MAX_LEAD_IN = 400  # how much of the text above such a block is read
FOCUS_AFTER = 300  # a first error reply further into a text than this is where the diagnostic starts (focused)


@dataclass(frozen=True)
class Finding:
    """What the message says about one recipient, before any classification."""

    recipient: str
    action: str | None = None
    status: str | None = None
    remote_mta: str | None = None
    reply_code: str | None = None
    diagnostic: str = ""  # the model reads this; reason (below) is the part of it a person reads
    stage: str | None = None

    @property
    def reason(self) -> str:
        """The one sentence that carries the reason (computed when asked for: the classifier never needs it)."""
        return reason_sentence(self.diagnostic, self.recipient)


def reason_sentence(diagnostic: str, recipient: str = "") -> str:
    """The sentence of a diagnostic that says why: the remote's words after its first error reply ("550 5.1.1
    <a@b>... User unknown" -> "User unknown"), else what follows the recipient's address, up to the end of that
    sentence, without the address, quotes and Postfix's "(in reply to RCPT TO command)".
    """
    reply = REASON_START_RE.search(diagnostic)
    if reply:
        start = reply.end()
    else:
        mention = diagnostic.lower().find(recipient.lower()) if recipient else -1
        start = mention + len(recipient) if mention >= 0 else 0
    text = REASON_LEAD_RE.sub("", diagnostic[start:start + MAX_DIAGNOSTIC])
    if reply:  # a multi-line reply repeats its codes on every line ("550-5.7.1 ... 550 5.7.1 ...")
        text = re.sub(r"\s" + r"[ \-:]+".join(map(re.escape, reply.group(0).strip(" :,-").replace("-", " ").split()))
                      + r"(?![\w.])", " ", text)
    end = SENTENCE_END_RE.search(text)
    sentence = " ".join(REASON_TAIL_RE.sub("", text[: end.start() if end else len(text)]).split()).strip(" :;,-'\"")
    if sentence.count(")") > sentence.count("("):
        sentence = sentence.rstrip(")")
    return (sentence if LETTER_RE.search(sentence) else diagnostic)[:MAX_REASON]


def find_stage(text: str) -> str | None:
    """The SMTP stage the text says the rejection happened at, if it says."""
    text = lowered(text)
    for name, pattern in STAGE_PATTERNS:
        if pattern.search(text):
            return name
    return None


def preferred_status(stated: str | None, in_text: str | None) -> str | None:
    """The diagnostic's own code when it has one (it is the remote's word), else the Status field.

    A generic X.0.0 in the text does not replace a specific Status field: Sendmail's transcript ends in
    "550 5.0.0 ... Insufficient permission" while its Status field says 5.3.0.
    """
    if in_text and not (stated and is_generic(in_text) and not is_generic(stated)):
        return in_text
    return stated


def compact(text: str, limit: int = MAX_DIAGNOSTIC) -> str:
    """One line, single spaces, bounded length."""
    return " ".join(text.split())[:limit]


def focused(text: str) -> str:
    """The text from the line of its first error reply when that reply comes late (a session transcript, long
    boilerplate before "The error that the other server returned was: 550 ..."): the model reads a bounded
    start of the diagnostic (features.MAX_CHARS), and the remote's reply is the reason."""
    reply = REASON_START_RE.search(text)
    if reply is None or reply.start() < FOCUS_AFTER:
        return text
    return text[text.rfind("\n", 0, reply.start()) + 1:]


def strip_type(value: str) -> str:
    """'rfc822; user@x' -> 'user@x' (the address/diagnostic type prefix of RFC 3464 fields)."""
    head, sep, tail = value.partition(";")
    return tail.strip() if sep and " " not in head.strip() else value.strip()


def status_blocks(part: Message) -> list[Message]:
    """The field groups of a (global-)delivery-status part, whatever shape the parser left it in."""
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(p, Message) for p in payload):
        return list(payload)
    raw = part.get_payload(decode=True)
    return blocks_from_text(decode_bytes(raw, "utf-8") if isinstance(raw, bytes) else part_text(part))


def blocks_from_text(text: str) -> list[Message]:
    """Field groups (separated by blank lines) parsed as header blocks."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip())
    return [split_message(block.strip() + "\n")[0] for block in blocks if block.strip()]


def split_groups(block: Message) -> list[Message]:
    """Split a field group that holds several recipients (some MTAs omit the blank line between them)."""
    if len(block.get_all("Final-Recipient") or []) < 2:
        return [block]
    groups: list[Message] = []
    for name, value in block.raw_items():
        starts = name.lower() in ("final-recipient", "original-recipient")
        if not groups or starts and groups[-1].get(name) is not None:
            groups.append(Message())
        groups[-1][name] = value
    return groups


def from_delivery_status(parsed: Parsed) -> list[Finding]:
    """Findings from every per-recipient group of every delivery-status part (RFC 3464 / RFC 6533)."""
    body = parsed.body
    blocks = [g for part in parsed.of_type(*STATUS_TYPES) for b in status_blocks(part) for g in split_groups(b)]
    if not blocks:
        inline = INLINE_STATUS_RE.search(body)
        text = cut_original(body[inline.start():]) if inline else ""
        blocks = [g for b in blocks_from_text(text) for g in split_groups(b)]
    fields = [(block, header(block, "Original-Recipient", encoded_words=False),
               header(block, "Final-Recipient", encoded_words=False)) for block in blocks[: MAX_RECIPIENTS * 2]]
    fields = [named for named in fields if named[1] or named[2]]
    recipients = recipients_of([(original, final) for _, original, final in fields])
    if None in recipients:  # "Final-Recipient: rfc822; @mx.example.org": the text names the address
        named = iter(a for a in body_addresses(parsed, own_addresses(parsed)) if a not in recipients)
        recipients = [r or next(named, "") for r in recipients]
    mentions = [mention(parsed, block, rcpt) for (block, _, _), rcpt in zip(fields, recipients, strict=True)]
    return [_finding_from_block(block, rcpt, parsed, named, following)
            for (block, _, _), rcpt, (named, following) in zip(fields, recipients, with_next(mentions), strict=True)]


def with_next(items: list[str]) -> list[tuple[str, str | None]]:
    """Each item with the one after it (None after the last)."""
    return list(zip(items, [*items[1:], None][:len(items)], strict=True))


def mention(parsed: Parsed, block: Message, rcpt: str) -> str:
    """How the report's text names a recipient: its address, else the display name Exchange states beside it
    (X-Display-Name) when the text lists recipients by name."""
    if not rcpt or rcpt.lower() in parsed.body_lower:
        return rcpt
    display = header(block, "X-Display-Name").strip()
    return display if len(display) > 2 and display.lower() in parsed.body_lower else rcpt


def recipients_of(fields: list[tuple[str, str]]) -> list[str | None]:
    """Per (Original-Recipient, Final-Recipient) pair, the address the sender wrote, else the one delivery
    ended at.

    An alias or forward makes them differ ("<r@host> (expanded from <kijitora@example.org>)"); the sender
    knows, and can stop using, only the first. An Original-Recipient shared by several groups is a list that
    expanded, though: the failure is one member's, so the member (Final-Recipient) is reported, never the list.
    """
    originals = [field_address(original) for original, _ in fields]
    shared = {a for a, n in Counter(o.lower() for o in originals if o).items() if n > 1} if len(fields) > 1 else ()
    return [original if original and original.lower() not in shared else field_address(final) or original
            for (_, final), original in zip(fields, originals, strict=True)]


def field_address(value: str) -> str | None:
    """The address an Original-/Final-Recipient field holds as written, if it holds one.

    A field holds a single addr-spec, so anything shaped local@domain counts ("a@b.c", a quoted local part,
    an encoded word); other values ("@mx.example.org", a source route) count only for an address inside.
    """
    value = strip_type(value).strip("<> \t")
    if FIELD_ADDRESS_RE.fullmatch(value):
        return value
    return first_address(value)


def _finding_from_block(block: Message, rcpt: str, parsed: Parsed, named: str, following: str | None) -> Finding:
    """``named``: how the text names the recipient (see mention); ``following``: how it names the next one."""
    body = parsed.body
    diagnostic = strip_type(header(block, "Diagnostic-Code"))
    own = recipient_block(body, parsed.body_lower, named, following) if named else ""
    context = with_lead_in(body, parsed.body_lower, named, own) if named else ""
    # An exit status ("X-Unix; 255") or no Diagnostic-Code states no reason: the body's text about the
    # recipient does, and the codes come from it too.
    reason = diagnostic if LETTER_RE.search(diagnostic) else context or body
    status = preferred_status(find_status(header(block, "Status")), find_status(reason))
    action = (header(block, "Action").split() or [None])[0]
    remote = strip_type(header(block, "Remote-MTA")) or None
    return Finding(
        recipient=rcpt,
        action=action,
        status=status,
        remote_mta=remote,
        reply_code=find_reply_code(reason),
        diagnostic=compact(focused(with_own_text(reason, own) if gave_up(action, status) else reason)),
        stage=find_stage(reason + "\n" + context),
    )


def gave_up(action: str | None, status: str | None) -> bool:
    """A failed recipient with a temporary status: the MTA stopped retrying. Its Diagnostic-Code quotes only the
    last temporary reply; the report's text about the recipient says why it stopped (Exim's "retry timeout
    exceeded" under the address)."""
    return (action or "").lower() == "failed" and (status or "")[:1] == "4"


def with_own_text(reason: str, own: str) -> str:
    """The reason, and the report's text about the recipient when that says more than the reason."""
    own = own.strip()
    return f"{reason}\n{own}" if own and own not in reason else reason


def recipient_block(text: str, lowered: str, address: str, next_address: str | None = None) -> str:
    """The text from the first mention of the address up to the next recipient's first mention, after the
    Sendmail transcript lines above it when that mention is Sendmail's summary line about the recipient.

    ``lowered`` is ``text`` lower-cased (parts.lowered, computed once per message: a bounce naming a hundred
    recipients must not lower-case its text a hundred times). Works on a bounded window (MAX_DIAGNOSTIC
    characters), so a huge one-line body costs no more than a normal one.
    """
    position = lowered.find(address.lower())
    if position < 0:
        return ""
    line_start = lowered.rfind("\n", 0, position) + 1
    start = line_start if position - line_start <= MAX_LINE_LEAD else position
    lines = text[start:start + MAX_DIAGNOSTIC].splitlines()
    summary = SUMMARY_LINE_RE.match(lines[0]) is not None
    transcript = transcript_before(text, start) if summary else []
    following = next_address.lower() if next_address else None
    if following and len(ADDRESS_RE.sub("", lines[0]).strip(" <>.:;,")) >= MIN_BLOCK_CHARS:
        # Several recipients, each with a line of its own ("554 <addr>... reason") or named in a sentence of
        # prose: the line is the diagnostic, plus what continues it, up to the next recipient's line.
        end = 1
        while (end < len(lines) and continues(lines[end - 1], lines[end], prose=not summary)
               and following not in lines[end].lower()):
            end += 1
        return "\n".join(transcript + lines[:end])
    lines = until(lines[:MAX_BLOCK_LINES], lambda line: HOST_LINE_RE.match(line) is not None)
    if following:
        lines = until(lines, lambda line: following in line.lower())
    return "\n".join(transcript + lines)


def continues(line: str, below: str, prose: bool) -> bool:
    """Whether the line ``below`` continues ``line``: indented under it, or, in prose, the rest of a sentence
    that hard-wrapping broke at the end of ``line``.

    A Sendmail summary line ("554 <addr>... User unknown") is not prose: it ends without punctuation, and the
    unindented line below it starts something else (the next recipient's transcript, "While talking to ...").
    """
    if not below.strip():
        return False
    if below[:1] in (" ", "\t"):
        return True
    return prose and LETTER_RE.match(below) is not None and not line.rstrip().endswith(LINE_SENTENCE_ENDS)


def until(lines: list[str], ends: Callable[[str], bool]) -> list[str]:
    """The lines before the first one after the first that ``ends`` (the first line is the block's own)."""
    return lines[:next((i for i in range(1, len(lines)) if ends(lines[i])), len(lines))]


def with_lead_in(text: str, lowered: str, address: str, block: str) -> str:
    """A recipient block that says nothing by itself (the address alone) with the text above the address's
    first mention, where such reports state the reason once for the list of recipients. A text that never
    names the address is all about it."""
    position = lowered.find(address.lower())
    if position < 0:
        return block or text
    if says_something(block):
        return block
    return block + "\n" + text[max(position - MAX_LEAD_IN, 0):position]


def text_after(text: str, lowered: str, address: str) -> str:
    """The text below the line of the address's first mention (as much as a lead-in above it)."""
    position = lowered.find(address.lower())
    start = text.find("\n", position) + 1 if position >= 0 else 0
    return text[start:start + MAX_LEAD_IN] if start else ""


def with_reply(text: str, block: str) -> str:
    """The one recipient's block, and the text from the line of the first error reply when the block has none:
    a session transcript names the recipient at its top and the remote's reply near its end."""
    if REASON_START_RE.search(block):
        return block
    reply = REASON_START_RE.search(text)
    if reply is None:
        return block
    start = text.rfind("\n", 0, reply.start()) + 1
    return block + "\n" + text[start:start + MAX_DIAGNOSTIC]


def says_something(block: str) -> bool:
    """Whether a recipient block holds a word besides the address ("(user not found)" does) in a sentence that
    is not a contact hint ("Please reply to Postmaster@... if you feel this message to be in error" under the
    address, where the reason stands above it) nor a line announcing what follows ("The following recipients
    did not receive your message:" between two addresses of a list)."""
    if "following" in block.lower():  # the pattern scans every position of every line; most blocks lack the word
        block = "\n".join(line for line in block.splitlines() if not ANNOUNCEMENT_RE.search(line))
    sentences = SENTENCE_SPLIT_RE.split(" ".join(ADDRESS_RE.sub("", block).split()))
    return any(WORD_RE.search(sentence) and not NOT_RECIPIENT_LINE_RE.search(sentence) for sentence in sentences)


def transcript_before(text: str, start: int) -> list[str]:
    """The ">>> command" / "<<< reply" lines right above a Sendmail per-recipient error line.

    In a transcript ("While talking to host: >>> MAIL From:<...> <<< 501 ... 554 <rcpt>... Remote protocol
    error") the sendmail line only summarises; the command names the stage and the reply is the remote's reason.
    """
    kept: list[str] = []
    for line in reversed(text[max(0, start - MAX_DIAGNOSTIC):start].splitlines()):
        if not line.startswith(TRANSCRIPT_PREFIXES):
            break
        kept.append(line)
    return kept[::-1]


def own_addresses(parsed: Parsed) -> set[str]:
    """Addresses of the bounce's own envelope/headers (the sender of the original and the reporting robot) and
    the returned original's envelope sender (original_sender).

    When the bounce goes to a mailing list's bounce address, the list's own address (the To of the returned
    post) is one of them: the failure is a member's. A list's own notice (From its owner address, to a poster
    whose post it refused) is about the list's address, so the sending side's list address is not.
    """
    found = {a.lower() for name in ("From", "Return-Path", "Reply-To", "Sender")
             for a in find_addresses(header(parsed.msg, name))}
    receiving = {a.lower() for name in ("To", "Cc", "Delivered-To")
                 for a in find_addresses(header(parsed.msg, name))}
    return found | receiving | {posting for a in receiving if (posting := list_address(a))} | original_sender(parsed)


def original_sender(parsed: Parsed) -> set[str]:
    """The Return-Path of the original the bounce quotes, unless the original was addressed to it too: a quoted
    "553 <sender>: Sender address rejected" names it, and it did not fail as a recipient (it is often a VERP
    address the bounce's own To does not show)."""
    start = parsed.body.find("\n", parsed.original[1]) + 1 if parsed.original else 0  # after the announcement
    if not start:
        return set()
    quoted, _ = split_message(parsed.body[start:start + MAX_DIAGNOSTIC * 8].lstrip("\r\n"))
    sender = {a.lower() for a in find_addresses(header(quoted, "Return-Path"))}
    addressed = {a.lower() for name in ("To", "Cc") for a in find_addresses(header(quoted, name))}
    return sender - addressed


def body_addresses(parsed: Parsed, own: set[str]) -> list[str]:
    """The failed recipients the report text names, in order of mention (X-Failed-Recipients first).

    Left out: the bounce's own addresses (``own``, see own_addresses), robot mailboxes, message-ids, senders
    (MAIL FROM arguments), addresses on contact / message-id lines, and those on alias notes and quoted To/Cc
    lines unless the text names no other address.
    """
    text = parsed.report_text
    addresses = find_addresses(header(parsed.msg, "X-Failed-Recipients"))[:MAX_RECIPIENTS]
    seen = {a.lower() for a in addresses}
    fallback: list[str] = []
    for line in text.splitlines():
        if "@" not in line:
            continue
        if FALLBACK_LINE_RE.match(line):
            fallback += find_addresses(line)
            continue
        if NOT_RECIPIENT_LINE_RE.search(line):
            continue
        for match in ADDRESS_RE.finditer(line):
            if SENDER_ARGUMENT_RE.search(line, max(0, match.start() - 8), match.start()):
                continue
            if mentioned_in_reply(line, match.start()):
                fallback.append(match.group(0))
                continue
            address = match.group(0)
            low = address.lower()
            if low in own or low in seen or not _looks_like_mailbox(low) or len(addresses) >= MAX_RECIPIENTS:
                continue
            seen.add(low)
            addresses.append(address)
    if addresses and "expanded from" in parsed.report_lower:
        return sender_side(addresses, parsed.report_text)
    return addresses or list(dict.fromkeys(a for a in fallback if a.lower() not in own))[:MAX_RECIPIENTS]


def mentioned_in_reply(line: str, position: int) -> bool:
    """Whether the address at ``position`` stands deep inside an error reply's words on its line."""
    reply = REASON_START_RE.search(line, 0, position)
    return reply is not None and len(WORD_RE.findall(ADDRESS_RE.sub("", line[reply.end():position]))) >= MENTION_WORDS


def sender_side(addresses: list[str], text: str) -> list[str]:
    """The addresses with each alias expansion the text notes undone, as recipients_of does for DSN fields.

    "<r@host> (expanded from <alias@example.org>)" (Postfix) or "r@host\n (expanded from: <alias@...>)"
    (Sendmail) reports alias@example.org; an alias several failed addresses came from is a list, so those
    are reported and the list is not.
    """
    pairs = [(final.lower(), original) for final, original in EXPANSION_RE.findall(text)]
    counts = Counter(original.lower() for _, original in pairs)
    alias = {final: original for final, original in pairs if counts[original.lower()] == 1}
    expanded = {original.lower() for _, original in pairs}
    return list(dict.fromkeys(alias.get(a.lower(), a) for a in addresses
                              if a.lower() in alias or a.lower() not in expanded))


def from_body(parsed: Parsed) -> list[Finding]:
    """Findings from a bounce without a delivery-status part: addresses in the text, in order of mention."""
    text = parsed.report_text
    own = own_addresses(parsed)
    addresses = body_addresses(parsed, own)
    if is_list_robot(header(parsed.msg, "From")):
        addresses = lists_posted_to(addresses)
    if not addresses:
        return [finding_from_text(next(iter(original_recipients(parsed, own)), ""), text)]
    lowered = parsed.report_lower
    blocks = [recipient_block(text, lowered, address, following) for address, following in with_next(addresses)]
    if len(addresses) > 1 and not says_something(blocks[0]):
        # A list of bare addresses under one reason ("... because of: 550 Mailbox disabled. The following
        # recipients were affected:"): each is its own line, read with the text above the list.
        lead_in = with_lead_in(text, lowered, addresses[0], "")
        if not REASON_START_RE.search(lead_in):  # "... was not sent to the following recipients:", reason below
            lead_in += "\n" + text_after(text, lowered, addresses[-1])
        blocks = [block.partition("\n")[0] + lead_in for block in blocks]
    elif len(addresses) == 1:
        blocks = [with_reply(text, with_lead_in(text, lowered, addresses[0], blocks[0]))]
    return [finding_from_text(address, block) for address, block in zip(addresses, blocks, strict=True)]


def lists_posted_to(addresses: list[str]) -> list[str]:
    """A list's notice to a poster names the list by its posting address or by an administrative one
    ("ALUMNI-NEWS-request@...", "astro-club-owner@..."); either way the post failed for the posting address."""
    return list(dict.fromkeys(list_address(a) or a for a in addresses))


def finding_from_text(address: str, text: str) -> Finding:
    """A finding read from free text; action stays None because no delivery-status field stated one."""
    return Finding(
        recipient=address,
        status=find_status(text),
        reply_code=find_reply_code(text),
        diagnostic=compact(focused(text)),
        stage=find_stage(text),
    )


def _looks_like_mailbox(address: str) -> bool:
    """False for robot mailboxes and for message identifiers that merely look like addresses."""
    return not is_robot(address) and not MESSAGE_ID_LOCAL_RE.match(address.split("@")[0])


def original_recipients(parsed: Parsed, own: set[str]) -> list[str]:
    """To/Cc of the returned original (attached or quoted below the marker): who the failure can be about.

    Never from a returned message that is itself a bounce (from MAILER-DAEMON: it is addressed to the original
    sender), and never one of the bounce's own addresses (``own``; a returned list post is addressed to the list).
    """
    sources: list[Message] = []
    body = parsed.body
    for part in parsed.of_type("message/rfc822", "text/rfc822-headers"):
        if part is not parsed.msg:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                sources.append(inner[0])
            elif isinstance(inner, str):
                sources.append(split_message(inner)[0])
    span = parsed.original
    if span:
        # The quoted headers start on the announcement's line ("--- Original message ---  To: ...") or below it.
        quoted = body[span[1]:].lstrip("-= \t\r\n")
        headers = quoted if FIELD_RE.match(quoted) else quoted.partition("\n")[2].lstrip("\r\n")
        sources.append(split_message(headers)[0])
    return [a for source in sources if not is_bounce_sender(header(source, "From"))
            for name in ("To", "Cc") for a in find_addresses(header(source, name)) if a.lower() not in own]


def extract(parsed: Parsed) -> list[Finding]:
    """All recipients the bounce reports on, in order of appearance (delivery-status wins over body text)."""
    findings = from_delivery_status(parsed)
    if not findings:
        forwarded = attached_report(parsed)
        findings = from_delivery_status(forwarded) if forwarded else []
    return _dedupe(findings) if findings else from_body(parsed)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per address; a later group for the same address only fills gaps of the first."""
    merged: dict[str, Finding] = {}
    for finding in findings:
        key = finding.recipient.lower()
        first = merged.get(key)
        if first is None:
            merged[key] = finding
        elif not first.diagnostic:
            merged[key] = replace(first, diagnostic=finding.diagnostic)
    return list(merged.values())

"""Mail addresses in bounce text and envelopes, and the mailboxes that send bounces: one definition for all.

The classifier (extraction, detection) and the milter (envelope sender, From field) ask the same questions,
so they share this module. It imports nothing but ``re``: the milter's dependencies (pymilter, pyspf,
dnspython, prometheus) must never come with it.
"""

from __future__ import annotations

import re

# Linear-time by construction: a match can only start where a local part starts (look-behind after the first
# character, so re can skip ahead; a quote is a local-part character, but "addressed to 'a@b.example'" quotes
# the address), and every repetition is bounded (local part <= 64, domain <= 253), so long
# runs of letters or dots cannot make the search quadratic - a bounce body is attacker-controlled input.
_LOCAL = r"A-Za-z0-9._%+\-=/!#$&'*^`{|}~"
ADDRESS_RE = re.compile(rf"[A-Za-z0-9](?:(?<![{_LOCAL}][A-Za-z0-9])|(?<=[\s(<:,;=\[]'[A-Za-z0-9]))[{_LOCAL}]{{0,63}}@"
                        r"[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,24}(?![A-Za-z])")
# What redact() writes instead of an address: itself an address, so the model reads a redacted text as it reads
# the original (features.normalise turns both into the same placeholder word).
REDACTED = "address@redacted.invalid"
# What ADDRESS_RE leaves that still names a mailbox: quoted or dotless local forms, address literals
# ("j.doe"@x, bob@localhost, u@[192.0.2.1]). Bounded repetitions keep the scan linear.
_OTHER_ADDRESS_RE = re.compile(r"[^\s<>@()\[\],;:]{1,64}@(?:\[[^\]\s]{1,64}\]|[^\s<>@,;:()\[\]\"']{1,253})")
# Mailboxes that send delivery reports: a From or envelope sender naming one is a sign of a bounce (MDaemon sends
# its reports from "MDaemon@<host>", Verizon's and other James-based gateways from "post_master@<host>").
BOUNCE_SENDER_LOCALPARTS = frozenset({"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "post_master",
                                      "mdaemon"})
# ... and the names MTAs give that sender, also in front of an address that is no robot name (Postfix's "Mail
# Delivery System", Sendmail's "Mail Delivery Subsystem", "Mail.Delivery.System@").
BOUNCE_SENDER_NAME_RE = re.compile(r"(?i)mailer-daemon|mail[ .]delivery[ .](?:sub)?system")
# Suffixes of a mailing list's administrative addresses ("announce-bounces@...").
LIST_ROLES = frozenset({"bounces", "bounce", "admin", "owner", "request", "ctl"})  # ctl: fml's command address
# List managers that send from their own name ("sympa@lists.example.org", "LISTSERV@...").
LIST_MANAGER_LOCALPARTS = frozenset({"sympa", "listserv", "majordomo", "mailman", "mlmmj", "ezmlm", "listproc", "lyris",
                                     "ecartis"})
# Mailboxes that are never the failed recipient: the report's own robots and no-reply senders.
ROBOT_LOCALPARTS = BOUNCE_SENDER_LOCALPARTS | {"noreply", "no-reply"}


def find_addresses(text: str) -> list[str]:
    """Every address in the text, in order, as written."""
    return ADDRESS_RE.findall(text)


def first_address(text: str) -> str | None:
    """The first address in the text, if there is one."""
    match = ADDRESS_RE.search(text)
    return match.group(0) if match else None


def redact(text: str) -> str:
    """The text with every mail address replaced by REDACTED: what is kept of a bounce for review names nobody."""
    if "@" not in text:
        return text
    return _OTHER_ADDRESS_RE.sub(REDACTED, ADDRESS_RE.sub(REDACTED, text))


def bare_address(value: str) -> str:
    """An address without its angle brackets or display name ('Name <a@b>' / '<a@b>' -> 'a@b', '<>' -> '').

    Envelope arguments come with brackets (Postfix's non-SMTP mail without); header fields with a name.
    """
    value = value.strip()
    close = value.rfind(">")
    if close >= 0:
        value = value[value.rfind("<", 0, close) + 1:close]
    return value.strip()


def canonical(address: str) -> str:
    """The mailbox an address names, for comparing: lower-cased, a quoted local part unquoted.

    '"neko....nyaan...."@example.org' and 'neko....nyaan....@example.org' are one mailbox (Postfix writes the
    first in Final-Recipient and the second in Original-Recipient).
    """
    local, at, domain = address.strip().rpartition("@")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = local[1:-1]
    return f"{local}{at}{domain}".lower()


def local_part(address: str) -> str:
    """The lower-cased local part of a bare address, without quotes ('"Postmaster"@x' -> 'postmaster')."""
    return address.rpartition("@")[0 if "@" in address else 2].strip('"').lower()


def is_bounce_sender(value: str) -> bool:
    """Whether an envelope sender or a From field names a mailbox that sends delivery reports.

    'MAILER-DAEMON' alone (no domain, or only as a display name) and the display names MTAs give their report
    sender count too. The null sender does not:
    auto-replies use it as well, so callers that take it as a sign decide that themselves.
    """
    if BOUNCE_SENDER_NAME_RE.search(value):
        return True
    return any(local_part(a) in BOUNCE_SENDER_LOCALPARTS for a in find_addresses(value) or [bare_address(value)])


def list_address(address: str) -> str | None:
    """The posting address of the mailing list whose administrative address this is, if it is one.

    'announce-bounces@lists.example.org', 'announce-bounces+a=b.example@...' (VERP), 'announce-admin@...',
    'announce-owner@...', 'owner-announce@...' and 'announce+owner@...' -> 'announce@lists.example.org'. A
    bounce sent to one of them is about a member; the list's own address, on the returned post, is not the
    failed recipient.
    """
    local, at, domain = address.rpartition("@")
    local, _, tag = local.lower().partition("+")
    if not at or not local:
        return None
    if tag.split("-")[0] in LIST_ROLES:  # mlmmj: 'announce+owner@...', 'announce+bounces-12@...'
        return f"{local}@{domain}".lower()
    if local.startswith("owner-") and len(local) > 6:
        return f"{local[6:]}@{domain}".lower()
    name, dash, role = local.rpartition("-")
    return f"{name}@{domain}".lower() if dash and name and role in LIST_ROLES else None


def is_list_robot(value: str) -> bool:
    """Whether a From field or envelope sender names a mailing list's administrative address or a list
    manager: the senders of a list's notices to a poster (a refused post among them)."""
    addresses = find_addresses(value) or [bare_address(value)]
    return any(list_address(a) or local_part(a).split("+")[0] in LIST_MANAGER_LOCALPARTS for a in addresses if a)


def is_robot(address: str) -> bool:
    """Whether an address is a report robot or a no-reply sender ('noreply+tag@x' too), never a recipient."""
    return local_part(address).split("+")[0] in ROBOT_LOCALPARTS

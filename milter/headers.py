"""Our Authentication-Results field, the syntax every header renderer shares, and reading incoming A-R fields.

Values from the SMTP client (HELO, MAIL FROM) and from DNS (PTR names) are attacker-controlled. Each goes
through `sanitise.clean()` (printable ASCII of bounded length), and the renderers then quote or escape as the
RFC 5322, RFC 7208 §9.1 and RFC 8601 grammars require (`comment`, `kv_value`, `pvalue`). A hostile value can
therefore never end a header, start another one, or add a key of its own. Each check renders its own entry
(`CheckResult.resinfo`); this module joins them under our authserv-id.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import authres

from .sanitise import LIMIT_ADDRESS, LIMIT_NAME, LIMIT_TEXT, clean

if TYPE_CHECKING:
    from .checks.base import CheckResult

__all__ = ["FOLD", "LIMIT_ADDRESS", "LIMIT_NAME", "LIMIT_TEXT", "RENDERED", "authentication_results",
           "authserv_id_of", "clean", "comment", "kv_value", "pvalue"]

FOLD = "\n\t"  # header continuation; the MTA turns it into CRLF + TAB
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(\.{_ATEXT})*$")
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"')
# Results are immutable and a client that writes again gets the very same ones (see verdicts.py): the text
# rendered for a result is kept rather than built again through authres for every message.
RENDERED = 4096


def comment(text: str) -> str:
    """A RFC 5322 comment body: parentheses and backslashes escaped as quoted-pairs."""
    return re.sub(r"([()\\])", r"\\\1", clean(text))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kv_value(value: str) -> str:
    """RFC 7208 §9.1 key-value-pair value: dot-atom when it is one, quoted-string otherwise."""
    return value if _DOT_ATOM.match(value) else _quoted(value)


def pvalue(value: str) -> str:
    """An RFC 8601 property value for authres, which quotes what needs it except values with an '@' (it
    takes those for local-part@domain and writes them verbatim): quote those here."""
    return _quoted(value) if "@" in value else value


@functools.lru_cache(maxsize=RENDERED)
def _resinfo(result: CheckResult) -> str:
    return result.resinfo()


def authentication_results(authserv_id: str, results: list[CheckResult], skipped: str = "") -> str:
    """The value of our Authentication-Results field (RFC 8601), one resinfo per result."""
    if skipped or not results:
        header = authres.AuthenticationResultsHeader(
            authserv_id=authserv_id,
            authserv_id_comment=comment(f"checks skipped: {skipped}") if skipped else None,
            results=[],
        )
        return str(header).split(": ", 1)[1]
    return authserv_id + ";" + FOLD + (";" + FOLD).join(_resinfo(r) for r in results)


def authserv_id_of(value: str) -> str:
    """The authserv-id an incoming Authentication-Results claims: lower case, without a trailing dot.

    RFC 8601 §2.2 makes it a value (token or quoted-string) after optional comments. It is read here by
    hand rather than through authres so that fields which do not parse (RFC 8601 §5: treat them as ours if
    they might be) are read the same way: comments skipped (nested, with quoted-pairs), then the
    quoted-string, or the text before the first ';', '(' or white space.
    """
    text = re.sub(r"\r?\n[ \t]", " ", value).strip()
    while text.startswith("("):
        text = _after_comment(text)
    quoted = _QUOTED.match(text)
    # An unterminated quote still claims what follows it: strip the stray quote rather than miss a forgery.
    claimed = re.sub(r"\\(.)", r"\1", quoted[1]) if quoted else re.split(r"[;(\s]", text, maxsplit=1)[0].strip('"')
    return claimed.strip().rstrip(".").lower()


def _after_comment(text: str) -> str:
    """What follows the (possibly nested) comment that `text` starts with; "" if it never closes."""
    depth = 0
    escaped = False
    for end, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "()":
            depth += 1 if ch == "(" else -1
            if depth == 0:
                return text[end + 1 :].lstrip()
    return ""

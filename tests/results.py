"""Our Authentication-Results read back entry by entry, comments included (authres's parser drops the comment
of a result): what DKIM and DMARC tests assert on."""

from __future__ import annotations

import re
from typing import NamedTuple

_ENTRY = re.compile(r"^(?P<method>[\w-]+)=(?P<result>\w+)(?: \((?P<comment>(?:[^()\\]|\\.)*)\))?(?P<rest>.*)$", re.S)


class Entry(NamedTuple):
    method: str
    result: str
    comment: str
    properties: dict[str, str]  # "header.d" -> value, quotes removed


def entries(value: str, method: str | None = None) -> list[Entry]:
    """The resinfo entries of one of our A-R values (entries are separated by ';' and a fold), of `method`."""
    out = []
    for part in value.split(";\n\t")[1:]:
        match = _ENTRY.match(part.strip())
        assert match, part
        properties = dict(re.findall(r'(\w+\.[\w-]+)=("(?:[^"\\]|\\.)*"|\S+)', match["rest"]))
        properties = {key: val.strip('"') for key, val in properties.items()}
        comment = re.sub(r"\\(.)", r"\1", match["comment"] or "")
        out.append(Entry(match["method"], match["result"], comment, properties))
    return [e for e in out if method is None or e.method == method]

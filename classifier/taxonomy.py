"""The product's category taxonomy (shipped taxonomy.json) and the bounce type each category implies."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

TAXONOMY_PATH = Path(__file__).with_name("taxonomy.json")
FALLBACK_CATEGORY = "other"
NOT_A_BOUNCE = "not-a-bounce"


@cache
def default_types() -> dict[str, str]:
    """category -> bounce type, with the taxonomy's 'hard*' (hard with a caveat) counted as hard."""
    categories = json.loads(TAXONOMY_PATH.read_text(encoding="utf-8"))["categories"]
    return {name: bounce_type(entry["type"]) for name, entry in categories.items()}


def bounce_type(raw: str) -> str:
    """Normalise a taxonomy type: 'hard*' -> 'hard'; anything else as written ('unknown' stays unknown)."""
    return raw.rstrip("*") or "unknown"

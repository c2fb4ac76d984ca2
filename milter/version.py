"""mailwarden: IPREV/SPF milter with result headers, per-domain policy and bounce classification."""

__version__ = "0.1.0"

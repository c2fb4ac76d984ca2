"""The classifier is usable without the milter's dependencies (a CLI, an evaluation box, another program)."""

from __future__ import annotations

import subprocess
import sys

# Top-level modules of pymilter (milter, Milter), pyspf, dnspython and prometheus-client.
MILTER_ONLY = ("milter", "Milter", "spf", "dns", "prometheus_client")


def test_importing_the_classifier_and_analysing_a_bounce_imports_no_milter_dependency(make_bounce):
    probe = (
        "import sys\n"
        "from mailwarden.classifier import BounceClassifier, header_value\n"
        "classifier = BounceClassifier.load()\n"
        "report = classifier.analyse(sys.stdin.buffer.read())\n"
        "print(header_value(report.recipients[0], classifier.model_id))\n"
        f"print(' '.join(sorted(m for m in {MILTER_ONLY!r} if m in sys.modules)))\n"
    )
    bounce = make_bounce("<bob@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n")
    done = subprocess.run([sys.executable, "-c", probe], input=bounce, capture_output=True, timeout=60, check=True)
    header, imported = done.stdout.decode().splitlines()
    assert header.startswith("bob@example.org; category=bad-mailbox; ")
    assert imported == ""

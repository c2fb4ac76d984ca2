"""The systemd unit passes `systemd-analyze verify` and keeps its sandbox (offline security score)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "systemd" / "mailwarden.service"


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit as installed: ExecStart pointing at this environment's mailwarden."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs the systemd package")
    command = Path(sys.executable).with_name("mailwarden")
    unit = tmp_path / "mailwarden.service"
    unit.write_text(UNIT.read_text().replace("/opt/mailwarden/bin/mailwarden", str(command)))
    return unit


def test_unit_passes_systemd_analyze_verify(installed_unit: Path):
    proc = subprocess.run(["systemd-analyze", "verify", str(installed_unit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_unit_sandbox_exposure_stays_low(installed_unit: Path):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(installed_unit)],
                          capture_output=True, text=True)  # fmt: skip
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)[1])
    assert score <= 2.0, proc.stdout

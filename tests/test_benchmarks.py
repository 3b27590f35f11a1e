import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_asv_suite_is_discoverable_and_valid():
    asv = Path(sys.executable).with_name("asv")
    res = subprocess.run(
        [str(asv), "check", "--python=same"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No problems found" in res.stdout

"""`arcade-pacs bench --quick --json` as a smoke test: it finishes and prints every figure.

Never a timed assertion: the numbers depend on the machine and its load; only their presence
and type are checked (the targets are judged by a person reading the bench's table).
"""

import json
import math
import subprocess
import sys

import pytest

from arcade_pacs.bench.suite import REQUIRED_NUMERIC
from tests.project import PROJECT_ROOT

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_bench_quick_prints_every_field_as_a_number(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "arcade_pacs.cli", "bench", "--quick", "--json"],
        capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in REQUIRED_NUMERIC:
        assert key in result, key
        assert isinstance(result[key], (int, float)), key
        assert not isinstance(result[key], bool), key
        assert math.isfinite(result[key]), key
    # the plugin serves the int8 form when it was validated as its own model; passes_per_s stays the float form's
    assert result["int8"] is not None and result["int8_passes_per_s"] > 0
    assert result["engine"] == ("litert-int8" if result["int8_own_passed"] else "litert")
    assert result["int8"]["gate"]["passed"] is not None
    machine = result["machine"]
    assert machine["cpu"]
    assert machine["cores"] >= 1
    assert machine["versions"].get("ai-edge-litert")
    assert "[8/8] memory" in out.stderr  # the progress display went through every step
    assert "passes/s" in out.stdout  # the table

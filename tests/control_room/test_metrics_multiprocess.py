"""Engine and API in different processes: with PROMETHEUS_MULTIPROC_DIR set (as
``routewatch serve`` does), the API's /metrics registry includes what another process
counted, even after that process exited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENGINE = """
from routewatch import metrics
metrics.PINGS_STORED.inc(7)
metrics.PINGS_REJECTED.labels("multiprocess_probe").inc(2)
"""

API = """
from prometheus_client import generate_latest
from api.routes.metrics import _registry
print(generate_latest(_registry()).decode())
"""


def test_api_registry_merges_the_engine_process(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", ENGINE], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", API], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert "routewatch_pings_stored_total 7.0" in out
    assert 'routewatch_pings_rejected_total{reason="multiprocess_probe"} 2.0' in out

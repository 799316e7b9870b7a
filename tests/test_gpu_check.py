"""benchmarks/gpu_check.py, dry-run on the CPU: every section runs and lands in one report (slow: about 3 minutes)."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "report.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--num-envs", "2",
           "--workers", "1", "--steps", "5", "--batches", "1", "--skip", "playground", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    raw = json.loads(re.search(r"```json\n(.*)\n```", report, flags=re.S).group(1))
    assert raw["cuda_tests"]["returncode"] in (0, 5) and raw["cuda_tests"].get("skipped", 0) >= 2  # no GPU here
    assert raw["smoke"]["dm_control"]["ok"] and raw["smoke"]["dm_control"]["frames_total"] == 10000
    rows = {row["variant"]: row for row in raw["throughput"]}
    assert set(rows) == {"plain", "compile_policy"}  # the CUDA-graph rows need CUDA
    assert all(row["fps"] > 0 and row["whole_fps"] < row["fps"] for row in rows.values())
    assert raw["update"]["dm_control"]["frames"] == 2 * 1000 and raw["update"]["dm_control"]["update_s"] > 0
    assert "| dm_control | plain |" in report

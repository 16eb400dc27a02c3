"""The GPU benchmark's code paths, run dry on the CPU (a tiny model, 16 images, DDP over 2 gloo processes), so
that the first machine with an accelerator measures radbench's GPU path in one command. Nothing here is timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_every_path_dry_on_the_cpu():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry", "--ddp"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["device"].startswith("cpu (dry run")
    measured = rows[1]
    assert measured["precision"] == "fp32" and measured["forward_img_s"] > 0 and measured["extract_img_s"] > 0
    assert measured["gflop_per_image"] > 0 and 0 < measured["of_fp32_matmul_peak"]
    assert [row["ddp"]["world"] for row in rows[2:]] == [1, 2] and all(row["ddp"]["img_s"] > 0 for row in rows[2:])

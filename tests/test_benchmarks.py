"""The benchmark scripts run end to end (tiny generators, a few steps; the figures are meaningless)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .helpers import REPO_ROOT


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projection_benchmark_runs_tiny(tmp_path: Path) -> None:
    bench = load_benchmark("projection")
    out = tmp_path / "projection.json"
    figures = bench.main(
        ["--generator", "tiny", "--device", "cpu", "--lpips", "random", "--anchors", "4", "--batch-size", "2",
         "--steps", "20", "--patience", "3", "--timing-steps", "2", "--warmup-steps", "1", "--full",
         "--json", str(out)]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["resolution"] == 32 and saved["input_size"] == 4 and saved["task"] == "superres"
    for recipe, batch in (("official", 1), ("ours", 2)):
        r = saved[recipe]
        assert r["batch"] == batch
        for key in ("sec_per_step", "images_per_min", "peak_mb", "final_loss"):
            assert r[key] > 0, (recipe, key, r[key])
    assert saved["official"]["steps"] == 20 and saved["official"]["steps_source"] == "fixed"
    assert saved["ours"]["steps_source"] == "measured" and 1 <= saved["ours"]["steps"] <= 20
    assert saved["speedup"] > 0 and saved["official_loss_at_ours_steps"] > 0
    assert figures["speedup"] == saved["speedup"]

"""The benchmark scripts run end to end (tiny generators, a few steps; the figures are meaningless)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mystyle_pl.generators.mobilestylegan as msg

from .helpers import REPO_ROOT


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_every_row_timed(figures: dict, key: str, kinds: tuple[str, ...], out: Path) -> None:
    """A before/after benchmark timed every ``"<kind> <precision> <version>"`` row (> 0 s) and wrote its figures."""
    rows = figures[key]
    assert sorted(rows) == sorted(
        f"{kind} {precision} {version}" for kind in kinds for precision in ("32", "bf16-mixed")
        for version in ("before", "after")
    )  # fmt: skip
    assert all(seconds > 0 for seconds in rows.values())
    assert json.loads(out.read_text()) == figures


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


def test_beta_sweep_plot_reads_evaluations_and_averages_per_beta(tmp_path: Path, capsys) -> None:
    """scripts/plot_beta_sweeps.py on two evaluations' metrics.json (as evaluate writes its sweep)."""
    path = REPO_ROOT / "scripts" / "plot_beta_sweeps.py"
    spec = importlib.util.spec_from_file_location("plot_beta_sweeps", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folders = []
    for person, (psnr0, dlib0) in {"a": (20.0, 0.50), "b": (22.0, 0.70)}.items():
        points = [
            {"beta": b, "id_dist_gt": dlib0 - k * 0.02, "aggregate": {"psnr": {"mean": psnr0 - k}, "lpips": {"mean": 0.4}}}
            for k, b in enumerate((0, 0.1))
        ]
        folder = tmp_path / person / "sweep"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"beta_sweep": {"points": points}}))
        folders.append(str(folder))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.json").write_text(json.dumps({"beta_sweep": None}))
    out = tmp_path / "sweeps.png"
    assert script.main([*folders, str(tmp_path / "empty"), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    # beta 0: PSNR (20 + 22) / 2 = 21, dlib (0.50 + 0.70) / 2 = 0.60, one of two below 0.6
    assert "beta 0      PSNR  21.00  LPIPS 0.400  dlib 0.600 (1/2 same person)" in printed.out
    assert "beta 0.1    PSNR  20.00  LPIPS 0.400  dlib 0.580 (1/2 same person)" in printed.out
    assert "no beta sweep" in printed.err and out.stat().st_size > 0


def test_optimiser_plot_compares_methods_at_the_fastest_ones_time(tmp_path: Path, capsys) -> None:
    """scripts/plot_optimisers.py: the best objective of each method by the time the fastest finished."""
    path = REPO_ROOT / "scripts" / "plot_optimisers.py"
    spec = importlib.util.spec_from_file_location("plot_optimisers", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    traces = [
        {"method": "fast", "trace": [1.0, 0.5, 0.4], "trace_seconds": [1.0, 2.0, 3.0], "seconds": 3.0},
        {"method": "slow", "trace": [1.0, 0.6, 0.2], "trace_seconds": [2.0, 4.0, 6.0], "seconds": 6.0},
    ]
    (tmp_path / "traces.json").write_text(json.dumps(traces))
    out = tmp_path / "o.png"
    assert script.main([str(tmp_path), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "best by 3 s" in lines[0]
    # slow: best 0.2 overall, but only 1.0 had been reached by 3 s (its second step ends at 4 s)
    assert lines[2].split()[-3:] == ["1.0000", "0.2000", "1.0000"] and lines[1].split()[-1] == "0.4000"
    assert out.stat().st_size > 0
    assert script.main([str(tmp_path), "--methods", "nope"]) == 1


def test_step_precision_benchmark_times_every_row_and_restores_the_rule(tmp_path: Path) -> None:
    shipped = msg._kernel_gradient_is_cheap
    bench = load_benchmark("step_precision")
    out = tmp_path / "steps.json"
    figures = bench.main(["--generator", "tiny", "--lpips", "random", "--steps", "1", "--threads", "1", "--json", str(out)])
    assert_every_row_timed(figures, "seconds_per_step", ("projection", "tuning"), out)
    assert msg._kernel_gradient_is_cheap is shipped  # the benchmark's patch does not outlive it


def test_lpips_speed_benchmark_times_every_row_and_compares_like_with_like(tmp_path: Path) -> None:
    import torch

    from mystyle_pl.losses import LPIPS

    bench = load_benchmark("lpips_speed")
    out = tmp_path / "lpips.json"
    figures = bench.main(
        ["--generator", "tiny", "--lpips", "random", "--size", "64", "--steps", "1", "--warmup", "0",
         "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    assert_every_row_timed(figures, "seconds", ("lpips-random", "tuning"), out)
    # "before" is the same distance computed the old way (one batch, contiguous): 1e-5, float32 rounding
    module = LPIPS("alex", pretrained=False)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(bench.lpips_before(module)(x, y), module(x, y), atol=1e-5)

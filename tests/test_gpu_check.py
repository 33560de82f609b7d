"""The GPU check (benchmarks/gpu_check.sh): its real path on the CPU with --tiny, the time caps, the README table.

The --tiny figures are meaningless; what is checked is that every part either measured something or
says why it did not, so that the script is ready whenever a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from .helpers import REPO_ROOT
from .test_benchmarks import load_benchmark

gpu_check = load_benchmark("gpu_check")
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"
ALL_PARTS = {"machine", "assets", "correctness", "tuning", "projection", "demo", "full_fit"}


def run_script(out: Path, work: Path, *options: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``bash benchmarks/gpu_check.sh OUT --no-setup --work-dir WORK OPTIONS`` (the real path, set-up skipped)."""
    proc = subprocess.run(["bash", str(SCRIPT), str(out), "--no-setup", "--work-dir", str(work), *options],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def check_every_part_reported(out: Path) -> tuple[dict, str]:
    """Every part has figures (done) or a reason (skipped); nothing failed, timed out or was left out."""
    report = json.loads((out / "gpu_check.json").read_text())
    markdown = (out / "gpu_check.md").read_text()
    assert report["format"] == "mystyle_pl.gpu_check" and set(report["parts"]) == ALL_PARTS
    for key, part in report["parts"].items():
        why = (key, part.get("status"), part.get("reason"), part.get("traceback"))
        assert part["status"] in ("done", "skipped"), why
        if part["status"] == "done":
            assert part["figures"], key
        else:
            assert part["reason"], key
            assert " ".join(part["reason"].split()) in markdown, key  # the table says why
        assert part["title"] in markdown
    return report, markdown


def test_tiny_cpu_check_reports_every_part(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_script(out, tmp_path / "work", "--device", "cpu", "--tiny")
    report, markdown = check_every_part_reported(out)
    parts = {k: p["figures"] for k, p in report["parts"].items()}
    assert report["tiny"] and report["setup"]["status"] == "skipped (--no-setup)"
    assert parts["machine"]["torch"] == torch.__version__ and parts["machine"]["cpus"] >= 1

    # 1. the tiny StyleGAN2 on the CPU against the CPU: identical in fp32; bf16 close but not equal
    sg2 = parts["correctness"]["generators"]["stylegan2"]
    assert sg2["ws"] == [2, 8, 32] and sg2["image"] == [2, 3, 32, 32]
    assert sg2["fp32_max_abs_diff"] == 0.0 and 0 < sg2["bf16_max_abs_diff"] < 0.5 and 20 < sg2["bf16_psnr_db"] < 80
    assert "--tiny" in parts["correctness"]["generators"]["mobilestylegan"]["skipped"]  # the real prior: skipped
    lpips = parts["correctness"]["lpips"]
    if "skipped" not in lpips:  # the shared reference images are present: computed with the stand-in weights
        for net in ("alex", "vgg"):
            assert lpips[net]["match"] is None and 0 < lpips[net]["d_ref_p0"] and "stand-in" in lpips[net]["weights"]

    # 2. tuning: the official recipe and the shipped config, read from the config files
    rows = parts["tuning"]["rows"]
    assert rows["official"]["batch"] == 1 and rows["official"]["precision"] == "32-true"
    assert rows["official"]["loss_resolution"] is None
    assert rows["shipped"]["batch"] == 4 and rows["shipped"]["precision"] == "bf16-mixed"
    assert rows["shipped"]["loss_resolution"] == 256
    assert rows["official"]["images_per_s"] > 0 and rows["shipped"]["vs_official"] > 0
    assert "torch.compile" in rows["shipped + torch.compile"]["skipped"]

    # 3. projection: preset official (batch 1) against the shipped predict settings on the same inputs
    proj = parts["projection"]["projection"]
    assert proj["complete"] and proj["presets"] == {"official": "official", "ours": "quick"}
    assert proj["official"]["batch"] == 1 and proj["ours"]["batch"] == parts["projection"]["predict"]["batch"] == 4
    for recipe in ("official", "ours"):
        r = proj[recipe]
        assert r["images_per_min"] > 0 and r["images_per_min_with_overhead"] > 0 and r["steps"] == 4
        assert r["final_loss"] > 0 and r["truth_psnr"] > 0
    assert proj["speedup"] > 0 and proj["speedup_with_overhead"] > 0

    # 4. the demo needs the real prior (skipped); the full fit's first steps ran through LightningCLI
    assert report["parts"]["demo"]["status"] == "skipped" and "--tiny" in report["parts"]["demo"]["reason"]
    timer, summary = parts["full_fit"]["timer"], parts["full_fit"]["summary"]
    assert timer["finished"] and len(timer["steps"]) == 3 and timer["config"] == "fit/mystyle.yaml"
    assert timer["batch_size"] == 4 and timer["anchor_steps_shipped"] == 300 and timer["anchor_s"] > 0
    assert summary["steps_per_epoch"] == 25 and summary["total_s"] > summary["tuning_s"] > 0

    assert "**--tiny run**" in markdown and "| 4 | quick demo end to end | **skipped** |" in markdown
    assert "100 photos x 1000 passes" in markdown and "ours / official" in markdown


def write_fake_worker(tmp_path: Path) -> Path:
    """A stand-in worker speaking the real record protocol: 'tuning' hangs, 'projection' crashes."""
    path = tmp_path / "fake_worker.py"
    path.write_text(textwrap.dedent("""
        import importlib.util, sys, time
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("gpu_check", sys.argv[1])
        gc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gc)
        work, keys = Path(sys.argv[2]), sys.argv[3].split(",")
        for key in keys:
            rec = gc.Record(work / "parts" / f"{key}.json", gc.PART_BY_KEY[key], time.time() + 60)
            if key == "tuning":
                rec.figures["rows"] = {"official": {"source": "x", "batch": 1, "images_per_s": 2.0}}
                rec.doing("timing the compile row")
                time.sleep(60)
            if key == "projection":
                sys.exit(3)
            rec.figures["ok"] = True
            rec.finish("done")
    """))
    return path


def test_a_part_past_its_cap_is_stopped_and_the_others_run(tmp_path: Path) -> None:
    fake = write_fake_worker(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    args = gpu_check.parse_args(["--out", str(out), "--work-dir", str(work), "--device", "cpu", "--parts",
                                 "machine,tuning,projection,demo", "--caps", "tuning=1", "--budget-s", "60"])  # fmt: skip
    argv = lambda keys: [sys.executable, str(fake), gpu_check.__file__, str(work), ",".join(keys)]  # noqa: E731
    report = gpu_check.Orchestrator(args, worker_argv=argv, env=dict(os.environ)).run()
    parts = report["parts"]
    assert parts["machine"]["status"] == "done" and parts["demo"]["status"] == "done"  # before and after
    tuning = parts["tuning"]
    assert tuning["status"] == "timed_out" and tuning["seconds"] < 10
    assert "1 s cap while timing the compile row" in tuning["reason"]
    assert tuning["figures"]["rows"]["official"]["images_per_s"] == 2.0  # what it measured is kept
    assert parts["projection"]["status"] == "failed" and "exit code 3" in parts["projection"]["reason"]
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["parts"]["tuning"]["status"] == "timed_out" and saved["wall_s"] < 30
    markdown = (out / "gpu_check.md").read_text()
    assert "**timed out**" in markdown and "**failed**" in markdown
    assert "| 4 | first steps of a --quality full fit | not selected |" in markdown

    # no budget left: the parts are reported as not run, with the reason
    args = gpu_check.parse_args(["--out", str(tmp_path / "late"), "--work-dir", str(work), "--device", "cpu",
                                 "--budget-s", "1"])  # fmt: skip
    late = gpu_check.Orchestrator(args, worker_argv=argv, env=dict(os.environ)).run()
    assert {p["status"] for p in late["parts"].values()} == {"not_run"} and set(late["parts"]) == ALL_PARTS
    assert "budget was spent" in late["parts"]["demo"]["reason"]


def test_readme_section_is_filled_from_gpu_runs_only(tmp_path: Path) -> None:
    readme_text = (REPO_ROOT / "README.md").read_text()
    section = readme_text.split("## GPU figures", 1)[1].split("\n## ", 1)[0]
    assert "make gpu-check" in section and gpu_check.README_BEGIN in section and "No GPU run exists yet" in section
    readme = tmp_path / "README.md"
    readme.write_text(readme_text)
    out = tmp_path / "run"
    out.mkdir()
    machine = {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "cuda": "13.0", "driver": "580.159.03",
               "cuda_available": True, "commit": "abc1234"}  # fmt: skip
    report = {"format": gpu_check.FORMAT, "device": "cuda", "tiny": False, "started": "2026-11-20 10:00 UTC",
              "wall_s": 431.0, "budget_s": 480, "setup": {"status": "done", "seconds": 52},
              "parts": {"machine": {"key": "machine", "number": "5", "title": "machine", "status": "done",
                                    "seconds": 2, "cap_s": 10, "figures": machine}}}  # fmt: skip
    (out / "gpu_check.json").write_text(json.dumps(report))
    assert gpu_check.main(["--render", str(out), "--update-readme", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "### GPU check: NVIDIA H200, 2026-11-20 10:00 UTC" in text and "driver 580.159.03" in text
    assert "No GPU run exists yet" not in text and "| 1 | correctness on the device | not selected |" in text
    assert text.split(gpu_check.README_BEGIN)[0] == readme_text.split(gpu_check.README_BEGIN)[0]
    assert text.split(gpu_check.README_END)[1] == readme_text.split(gpu_check.README_END)[1]
    (out / "gpu_check.json").write_text(json.dumps({**report, "device": "cpu", "tiny": True}))
    with pytest.raises(SystemExit, match="no GPU figures"):
        gpu_check.main(["--render", str(out), "--update-readme", "--readme", str(readme)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_cuda_check_reports_every_part(tmp_path: Path) -> None:
    """The same code paths on the GPU (tiny generator, CUDA against the CPU)."""
    run_script(tmp_path / "out", tmp_path / "work", "--device", "cuda", "--tiny")
    report, _ = check_every_part_reported(tmp_path / "out")
    assert report["parts"]["correctness"]["figures"]["generators"]["stylegan2"]["fp32_max_abs_diff"] < 1e-3

#!/usr/bin/env python
"""One GPU check: what a GPU shows about mystyle-pl, measured in one call of at most 8 minutes.

``bash benchmarks/gpu_check.sh [OUT_DIR]`` (or ``make gpu-check``) sets the package up on a fresh GPU
machine (``scripts/setup.sh``, keeping the machine's torch) and runs this script, which writes
``OUT_DIR/gpu_check.json`` (every figure) and ``OUT_DIR/gpu_check.md`` (the table the README's
"GPU figures" section shows):

0. set-up (timed by the shell script) and the assets, fetched through ``mystyle_pl.assets``;
1. correctness on the device: StyleGAN2 (config-f shapes, random weights) and MobileStyleGAN
   (``mobilestylegan-ffhq``) rendered on the device and on the CPU from the same ``ws``: fp32 max abs
   difference (TF32 off, and with torch's default TF32 flags), bf16 autocast max abs difference and PSNR
   against the device's fp32; LPIPS alex / vgg on the shared reference pair against the published values;
2. tuning throughput at the generator's resolution (1024 px) on the real prior, ``benchmarks/tuning.py``:
   the official recipe (``configs/fit/official.yaml``: batch 1, fp32, loss at full resolution) against the
   shipped GPU config (``configs/fit/mystyle.yaml`` + ``configs/trainer/gpu.yaml``: batch, bf16, loss
   resolution), and the shipped config with ``torch.compile`` when time allows: images/s, peak memory, ratio;
3. projection throughput, ``benchmarks/projection.py``: preset ``official`` (batch 1, 1000 steps) against
   the shipped predict settings (``configs/predict/superres.yaml``: preset ``quick``, its batch) on the same
   x8 super-resolution inputs: images/min, steps used, final loss, PSNR to the truth, ratio;
4. the quick demo end to end on the device (``run_demo``: seconds per stage) and the first steps of a
   ``--quality full`` fit (the demo's full recipe on a small synthesised album through LightningCLI:
   seconds per anchor step and per tuning step, extrapolated to 100 photos x 1000 passes);
5. the machine: GPU, driver, torch / CUDA / cuDNN versions, commit.

How it runs: this process (the orchestrator) imports no torch. It runs the parts, in the order
``PARTS``, in a worker process (this script with ``--worker``). Each part has a time cap (``PARTS``;
the caps and the set-up's sum to less than the 8-minute budget) and writes what it measured to its
record as it goes (the long parts hand the figures of the tools they run over as files, written
after each phase). A part that outruns its cap is stopped (the worker's process group is killed),
keeps what it measured, and the next part runs in a fresh worker; a part that fails records the
error and the others go on; parts left when the whole budget is spent are marked with the reason.
The json and md are rewritten after every part, so an interrupted check still leaves its table.

``--device cpu --tiny`` runs the same path on the CPU with a tiny random generator and a few steps
(``tests/test_gpu_check.py`` runs it, so the check cannot rot): the real-prior measurements are
skipped with their reason and LPIPS runs on random stand-in weights. Its figures check code paths;
they are not measurements.

Examples::

    bash benchmarks/gpu_check.sh outputs/gpu_check                  # the GPU check (make gpu-check)
    bash benchmarks/gpu_check.sh /tmp/gc --no-setup --device cpu --tiny
    python benchmarks/gpu_check.py --out outputs/gpu_check --parts tuning,projection   # rerun two parts
    python benchmarks/gpu_check.py --render outputs/gpu_check --update-readme         # table -> README
"""

# Imports: the orchestrator (and --render) use the standard library only, so that starting it and
# watching the worker costs nothing and works before the package is installed; torch, Lightning and
# mystyle_pl are imported lazily inside the worker's parts (their import takes seconds).
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FORMAT = "mystyle_pl.gpu_check"
BUDGET_S = 480.0  # the whole check, set-up included: 8 minutes
SETUP_CAP_S = 100  # benchmarks/gpu_check.sh's cap on scripts/setup.sh (kept in step with it)
KILL_GRACE_S = 3.0  # a part is killed this long after its cap (it gets the cap to finish by itself first)
MIN_PART_S = 5.0  # a part is not started with less of the budget left
FINAL_RESERVE_S = 2.0  # kept at the end of the budget for writing the table
README_BEGIN, README_END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"
LPIPS_REFERENCE = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}  # ../shared/data/lpips_reference/README
LPIPS_TOLERANCE = 5e-4  # the published values have three decimals
LPIPS_ASSETS = {"alex": "alexnet-imagenet", "vgg": "vgg16-imagenet"}
REAL_PRIOR = "mobilestylegan-ffhq"  # the shipped generator (configs/fit/mystyle.yaml)
FULL_FIT_PHOTOS, FULL_FIT_PASSES = 100, 1000  # the paper's budget, for the extrapolation
FIT_WARMUP_STEPS = 5  # tuning steps left out of the per-step medians (cuDNN autotuning, allocations)
COMPILE_MIN_S = 30.0  # the torch.compile row of the tuning part needs at least this much of its cap left


class Part(NamedTuple):  # (a NamedTuple: the module also loads by path, outside sys.modules)
    key: str  # the part's name in the json, --parts and --caps
    number: str  # its number in the issue and the table
    title: str
    cap_s: float  # time cap in seconds (from the part's start in the worker to its end)


PARTS = (
    Part("machine", "5", "machine", 10),
    Part("assets", "0", "assets (mystyle_pl.assets)", 60),
    Part("correctness", "1", "correctness on the device", 30),
    Part("tuning", "2", "tuning throughput", 60),
    Part("projection", "3", "projection throughput", 80),
    Part("demo", "4", "quick demo end to end", 85),
    Part("full_fit", "4", "first steps of a --quality full fit", 40),
)
PART_BY_KEY = {p.key: p for p in PARTS}
TABLE_ORDER = sorted(PARTS, key=lambda p: (p.number, PARTS.index(p)))  # by number; the two 4s in run order
assert SETUP_CAP_S + sum(p.cap_s for p in PARTS) < BUDGET_S


class Skip(Exception):
    """A part (or a row of one) that cannot run here; the message says why and how to make it run."""


# ---------------------------------------------------------------------------------------------
# small helpers (standard library)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def clean_json(value: Any) -> Any:
    """``value`` with non-finite floats as strings (``"inf"``, ``"nan"``), so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or not (yet) valid."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_config(relative: str) -> dict:
    """A YAML file of ``configs/`` as a dict (PyYAML comes with jsonargparse / omegaconf)."""
    import yaml  # lazy: only the worker reads configs

    path = REPO_ROOT / "configs" / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the GPU check runs from a source checkout of mystyle-pl")
    return yaml.safe_load(path.read_text())


def init_args(config: dict, *keys: str) -> dict:
    """``config[keys...]["init_args"]`` (a LightningCLI class_path entry), ``{}`` when absent."""
    node: Any = config
    for key in keys:
        node = (node or {}).get(key) or {}
    return dict(node.get("init_args") or {})


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# the record of one part (written by the worker, read by the orchestrator)


class Record:
    """One part's record, ``WORK/parts/<key>.json``, rewritten (atomically) at every change.

    ``status``: ``running`` (written at the start, with ``started``), then ``done``, ``skipped``
    (with ``reason``) or ``failed`` (with ``reason`` and ``traceback``); the orchestrator sets
    ``timed_out`` / ``not_run``. ``figures``: what the part measured (each row as soon as it is
    measured). ``attached``: name -> path of a JSON file that a tool the part runs writes itself
    (after each of its phases); the orchestrator reads them into ``figures[name]``, also after a kill.
    """

    def __init__(self, path: Path, part: Part, deadline: float):
        self.path, self.part = path, part
        self.deadline = deadline  # epoch seconds: the part should be done by then
        self.data: dict[str, Any] = {
            "key": part.key, "number": part.number, "title": part.title, "status": "running",
            "started": time.time(), "cap_s": part.cap_s, "figures": {}, "attached": {}, "notes": [],
        }  # fmt: skip
        self.save()

    @property
    def figures(self) -> dict:
        return self.data["figures"]

    def time_left(self) -> float:
        """Seconds until the part's deadline."""
        return self.deadline - time.time()

    def attach(self, name: str, path: Path) -> None:
        self.data["attached"][name] = str(path)
        self.save()

    def doing(self, text: str) -> None:
        """Say what the part is measuring now (a timed-out part's note names it)."""
        self.data["doing"] = text
        self.save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.save()

    def finish(self, status: str, reason: str | None = None, trace: str | None = None) -> None:
        self.data.update(status=status, seconds=round(time.time() - self.data["started"], 2))
        if reason:
            self.data["reason"] = reason
        if trace:
            self.data["traceback"] = trace
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


# ---------------------------------------------------------------------------------------------
# the worker: the parts themselves


class Context:
    """What every part needs: the options, the device, the tiny stand-ins, the folders."""

    def __init__(self, args: argparse.Namespace):
        import torch

        self.args = args
        self.tiny: bool = args.tiny
        self.device = torch.device(args.device)
        self.work: Path = args.work_dir
        self.tiny_generator_file = self.work / "tiny" / "tiny_generator.safetensors"
        if self.tiny:
            torch.set_num_threads(1)  # a tiny model on a shared CPU: one thread is by far the fastest
            self.prepare_tiny()

    def prepare_tiny(self) -> None:
        """A tiny random generator file and random stand-in LPIPS trunks (handed to the asset route
        through ``MYSTYLE_ASSET_<NAME>``), made once in the work folder: --tiny fetches nothing."""
        import torch

        from mystyle_pl import assets, save_generator
        from mystyle_pl.demo import tiny_generator
        from mystyle_pl.losses.backbones import build_backbone
        from mystyle_pl.losses.lpips_weights import convert_backbone_checkpoint

        folder = self.tiny_generator_file.parent
        folder.mkdir(parents=True, exist_ok=True)
        if not self.tiny_generator_file.is_file():
            save_generator(tiny_generator(32), self.tiny_generator_file)
        for net, name in LPIPS_ASSETS.items():
            converted = folder / f"{name}-random-standin.safetensors"
            if not converted.is_file():
                torch.manual_seed(0)
                raw = folder / f"{name}-random-standin.pth"
                torch.save(build_backbone(net).state_dict(), raw)
                convert_backbone_checkpoint(raw, converted, net)
                raw.unlink()
            os.environ[assets.get(name).env_var] = str(converted)

    def require_device(self) -> None:
        import torch

        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise Skip(f"--device cuda but torch {torch.__version__} sees no GPU (torch.cuda.is_available() is "
                       "False): run on a GPU machine, or check the code paths with --device cpu --tiny")  # fmt: skip

    def asset(self, name: str) -> Path:
        """The asset's file through ``mystyle_pl.assets.fetch``; ``Skip`` with the reason when unobtainable."""
        from mystyle_pl import assets

        if self.tiny and name not in LPIPS_ASSETS.values():
            raise Skip(f"--tiny: the real prior ({name}) is not fetched; the GPU check measures it")
        try:
            return Path(assets.fetch(name, progress=False))
        except assets.AssetError as e:
            tried = " ".join(str(e).split())[:700]
            raise Skip(f"asset {name} unavailable here: fetch it with `mystyle-pl assets fetch {name}` or set "
                       f"{assets.get(name).env_var}=FILE ({tried})") from e  # fmt: skip

    def generator_source(self) -> str:
        """The generator the throughput parts run: the shipped one, or the tiny file with --tiny."""
        if self.tiny:
            return str(self.tiny_generator_file)
        self.asset(REAL_PRIOR)
        return REAL_PRIOR

    def fresh_folder(self, name: str) -> Path:
        path = self.work / name
        if path.exists():
            raise Skip(f"{path} exists from an earlier check (its stages would be skipped, not timed): "
                       "choose another --work-dir or delete that folder")  # fmt: skip
        return path

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()


def part_machine(ctx: Context, rec: Record) -> None:
    """GPU name and memory, driver, torch / CUDA / cuDNN / Lightning versions, TF32 flags, commit."""
    import torch

    f = rec.figures
    f.update(python=platform.python_version(), platform=platform.platform(), cpus=os.cpu_count(),
             torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
             cuda_available=torch.cuda.is_available(), device=str(ctx.device), tiny=ctx.tiny,
             tf32={"matmul": torch.backends.cuda.matmul.allow_tf32,
                   "cudnn": torch.backends.cudnn.allow_tf32})  # fmt: skip
    try:
        import lightning

        f["lightning"] = lightning.__version__
    except ImportError as e:
        f["lightning"] = f"not importable ({e})"
    f["commit"] = _git("rev-parse", "--short", "HEAD")
    f["dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        f.update(gpu=props.name, gpu_memory_mib=round(props.total_memory / 2**20),
                 capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                 bf16_supported=torch.cuda.is_bf16_supported())  # fmt: skip
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                query = [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
                line = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
                if line:
                    f["nvidia_smi"] = line[0]
                    f["driver"] = line[0].split(",")[1].strip()
            except (OSError, subprocess.SubprocessError) as e:
                f["nvidia_smi"] = f"failed: {e}"
    elif ctx.device.type == "cuda":
        rec.note("torch.cuda.is_available() is False: the other parts skip with the reason")
    rec.save()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def part_assets(ctx: Context, rec: Record) -> None:
    """Fetch (or find cached) every asset the other parts use, through ``mystyle_pl.assets``."""
    from mystyle_pl import assets

    failed = []
    for name in (REAL_PRIOR, *LPIPS_ASSETS.values()):
        row: dict[str, Any] = {"cached_before": assets.status(name)["cached"]}
        start = time.perf_counter()
        try:
            path = ctx.asset(name)
            row.update(path=str(path), size_mib=round(path.stat().st_size / 2**20, 1))
            if ctx.tiny:
                row["note"] = "random stand-in (--tiny)"
        except Skip as e:
            row["skipped"] = str(e)
            if not ctx.tiny:
                failed.append(name)
        row["seconds"] = round(time.perf_counter() - start, 2)
        rec.figures[name] = row
        rec.save()
    if failed:
        raise RuntimeError(f"could not obtain {', '.join(failed)} (the parts that need them are skipped; "
                           "see each asset's row for the sources tried)")  # fmt: skip


def _wake(generator) -> None:
    """Random values for noise strengths and biases (they start at zero), so every path is compared."""
    import torch

    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.normal_(0, 0.1)


def compare_devices(ctx: Context, generator, batch: int = 2, seed: int = 0) -> dict:
    """Render the same ``ws [batch, num_ws, w_dim]`` (mapped seeded ``z``) on the CPU in fp32 and on the
    device in fp32 (TF32 off; torch's TF32 flags as found) and under bf16 autocast.

    Returns max abs pixel differences (images ``[B, 3, R, R]`` in [-1, 1]) of the device's fp32 against
    the CPU, and of bf16 against the device's fp32 with its mean PSNR (dB, peak-to-peak 2)."""
    import torch

    from mystyle_pl.metrics.image import psnr

    start = time.perf_counter()
    g = generator.float().eval().requires_grad_(False).cpu()
    z = torch.randn(batch, g.z_dim, generator=torch.Generator().manual_seed(seed))
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch.no_grad():
        ws = g.broadcast_w(g.mapping(z))
        cpu = g.synthesis(ws, noise_mode="const")
        g.to(ctx.device)
        wd = ws.to(ctx.device)
        try:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            fp32 = g.synthesis(wd, noise_mode="const")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
            fp32_default = g.synthesis(wd, noise_mode="const")
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
                bf16 = g.synthesis(wd, noise_mode="const").float()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
        ctx.sync()
        row = {
            "ws": list(ws.shape),
            "image": list(cpu.shape),
            "image_range": [round(float(cpu.min()), 4), round(float(cpu.max()), 4)],
            "fp32_max_abs_diff": float((fp32.cpu() - cpu).abs().max()),
            "fp32_default_tf32_max_abs_diff": float((fp32_default.cpu() - cpu).abs().max()),
            "default_tf32": {"matmul": flags[0], "cudnn": flags[1]},
            "bf16_max_abs_diff": float((bf16 - fp32).abs().max()),
            "bf16_psnr_db": float(psnr(bf16.clamp(-1, 1), fp32.clamp(-1, 1)).mean()),
        }
    g.cpu()
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def part_correctness(ctx: Context, rec: Record) -> None:
    """StyleGAN2 and MobileStyleGAN device vs CPU, fp32 and bf16; LPIPS on the reference pair."""
    import torch

    from mystyle_pl import StyleGAN2Generator, load_generator
    from mystyle_pl.demo import tiny_generator

    ctx.require_device()
    gens = rec.figures.setdefault("generators", {})
    if ctx.tiny:
        label, build = "StyleGAN2, tiny 32 px (random weights)", lambda: tiny_generator(32)
    else:
        label = "StyleGAN2 config-f 1024 px (random weights)"

        def build():
            torch.manual_seed(0)
            g = StyleGAN2Generator(img_resolution=1024, channel_base=32768, channel_max=512)
            _wake(g)
            return g

    rec.doing(f"comparing {label}")
    gens["stylegan2"] = {"label": label, **compare_devices(ctx, build())}
    rec.save()
    ctx.free()
    try:
        path = ctx.asset(REAL_PRIOR)
        rec.doing(f"comparing MobileStyleGAN {REAL_PRIOR}")
        gens["mobilestylegan"] = {"label": f"MobileStyleGAN {REAL_PRIOR}", **compare_devices(ctx, load_generator(path))}
    except Skip as e:
        gens["mobilestylegan"] = {"label": f"MobileStyleGAN {REAL_PRIOR}", "skipped": str(e)}
    rec.save()
    ctx.free()
    rec.doing("LPIPS on the reference pair")
    rec.figures["lpips"] = lpips_reference(ctx)
    rec.doing("")


def lpips_reference(ctx: Context) -> dict:
    """LPIPS alex / vgg (fp32, TF32 off) of ``ex_ref`` against ``ex_p0`` / ``ex_p1`` on the device,
    against the published values (``LPIPS_REFERENCE``, tolerance ``LPIPS_TOLERANCE``)."""
    import torch

    from mystyle_pl.data.io import read_image, to_tensor
    from mystyle_pl.losses import LPIPS

    folder = ctx.args.lpips_reference
    if folder is None or not (folder / "ex_ref.png").is_file():
        return {"skipped": f"reference images not found in {folder}: pass --lpips-reference DIR (the folder of "
                           "ex_ref.png, ex_p0.png, ex_p1.png: ../shared/data/lpips_reference, or set "
                           "MYSTYLE_SHARED_DATA)"}  # fmt: skip
    ref, p0, p1 = (to_tensor(read_image(folder / f"{n}.png"), device=ctx.device) for n in ("ex_ref", "ex_p0", "ex_p1"))
    rows: dict[str, Any] = {"folder": str(folder)}
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    for net, name in LPIPS_ASSETS.items():
        try:
            ctx.asset(name)
        except Skip as e:
            rows[net] = {"skipped": str(e)}
            continue
        try:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            with torch.no_grad():
                d = LPIPS(net).to(ctx.device)(torch.cat([ref, ref]), torch.cat([p0, p1])).float().cpu().tolist()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
        diff = max(abs(a - b) for a, b in zip(d, LPIPS_REFERENCE[net]))
        rows[net] = {"d_ref_p0": d[0], "d_ref_p1": d[1], "expected": list(LPIPS_REFERENCE[net]), "max_abs_diff": diff,
                     "match": None if ctx.tiny else diff <= LPIPS_TOLERANCE,
                     "weights": "random stand-in (--tiny): values meaningless" if ctx.tiny
                     else "ImageNet (assets)"}  # fmt: skip
    return rows


def tuning_recipes() -> dict[str, dict]:
    """The official and the shipped GPU tuning recipes, read from their config files."""
    official, shipped = read_config("fit/official.yaml"), read_config("fit/mystyle.yaml")
    gpu = read_config("trainer/gpu.yaml")

    def recipe(config: dict, precision: str, source: str) -> dict:
        model = init_args(config, "model")
        return {
            "source": source,
            "generator": model.get("generator", REAL_PRIOR),
            "batch": int(init_args(config, "data").get("batch_size", 1)),
            "precision": precision,
            "loss_resolution": model.get("loss_resolution"),
            "lpips_net": model.get("lpips_net", "alex"),
            "compile": bool(model.get("compile", False)),
        }

    def precision(config: dict) -> str:
        return (config.get("trainer") or {}).get("precision", "32-true")

    return {
        "official": recipe(official, precision(official), "configs/fit/official.yaml"),
        "shipped": recipe(shipped, precision(gpu), "configs/fit/mystyle.yaml + configs/trainer/gpu.yaml"),
    }


def part_tuning(ctx: Context, rec: Record) -> None:
    """Tuning steps/s of the official recipe against the shipped GPU config (+ torch.compile), one run."""
    import torch

    ctx.require_device()
    tuning = load_benchmark("tuning")
    recipes = tuning_recipes()
    generator = ctx.generator_source()
    steps, warmup = (2, 1) if ctx.tiny else (20, 5)
    rows = rec.figures.setdefault("rows", {})
    rec.figures.update(generator=generator, timed_steps=steps, warmup_steps=warmup,
                       note="PersonalTuner.render + reconstruction_loss + backward + Adam on random photos at the "
                            "generator's resolution (benchmarks/tuning.py); images/s from the median step")  # fmt: skip
    plan = [("official", recipes["official"]), ("shipped", recipes["shipped"])]
    if not recipes["shipped"]["compile"]:
        compiled = {**recipes["shipped"], "compile": True, "source": "model.compile true"}
        plan.append(("shipped + torch.compile", compiled))
    for label, r in plan:
        if r["precision"] not in ("32-true", "32", "bf16-mixed"):
            rows[label] = {**r, "skipped": f"precision {r['precision']!r}: the check times 32-true and bf16-mixed only"}
            continue
        if r["compile"] and ctx.tiny:
            rows[label] = {**r, "skipped": "--tiny: torch.compile is timed on the GPU only"}
            continue
        if r["compile"] and rec.time_left() < COMPILE_MIN_S:
            rows[label] = {**r, "skipped": f"{rec.time_left():.0f} s left of the part's {rec.part.cap_s:.0f} s cap; "
                                           f"torch.compile's first steps need about {COMPILE_MIN_S:.0f} s"}  # fmt: skip
            rec.save()
            continue
        rec.doing(f"timing the {label} recipe")
        bf16 = r["precision"] == "bf16-mixed"
        if bf16 and ctx.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            rows[label] = {**r, "skipped": "this GPU has no bf16: use precision 16-mixed (configs/trainer/gpu.yaml)"}
            continue
        start = time.perf_counter()
        tuner = tuning.build_tuner(generator, r["lpips_net"], r["loss_resolution"], compile=r["compile"])
        images_per_s, peak = tuning.run(tuner, ctx.device, r["batch"], bf16, steps, warmup)
        rows[label] = {**r, "generator": generator, "images_per_s": images_per_s, "peak_mib": peak,
                       "peak_memory": "torch.cuda.max_memory_allocated" if ctx.device.type == "cuda" else "ru_maxrss",
                       "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
        del tuner
        ctx.free()
        official = rows.get("official", {}).get("images_per_s")
        if official and label != "official":
            rows[label]["vs_official"] = images_per_s / official
        shipped = rows.get("shipped", {}).get("images_per_s")
        if shipped and r["compile"]:
            rows[label]["vs_shipped"] = images_per_s / shipped  # does compiling help?
        rec.doing("")


def predict_settings() -> dict:
    """The shipped super-resolution predict settings (configs/predict/superres.yaml)."""
    config = read_config("predict/superres.yaml")
    task = (init_args(config, "model").get("task") or {}).get("init_args") or {}
    return {
        "source": "configs/predict/superres.yaml",
        "batch": int(init_args(config, "data").get("batch_size", 4)),
        "preset": task.get("preset") or "quick",
        "beta": task.get("beta"),
        "back_projection": task.get("back_projection"),
    }


def part_projection(ctx: Context, rec: Record) -> None:
    """benchmarks/projection.py: preset official (batch 1) against the shipped predict settings."""
    ctx.require_device()
    projection = load_benchmark("projection")
    shipped = predict_settings()
    generator = ctx.generator_source()
    raw = ctx.work / "projection.json"
    raw.unlink(missing_ok=True)
    rec.figures["predict"] = shipped
    rec.attach("projection", raw)
    argv = ["--device", str(ctx.device), "--generator", generator, "--task", "superres", "--factor", "8",
            "--batch-size", str(shipped["batch"]), "--official-preset", "official", "--ours-preset", shipped["preset"],
            "--full", "--seed", "0", "--json", str(raw)]  # fmt: skip
    if shipped["beta"] is not None:
        argv += ["--beta", str(shipped["beta"])]
    if shipped["back_projection"] is not None:
        argv += ["--back-projection", str(shipped["back_projection"])]
    if ctx.tiny:  # a 32 px generator: 4 px inputs, a few steps
        argv += ["--resolution", "32", "--anchors", "4", "--steps", "4", "--timing-steps", "2", "--warmup-steps", "1",
                 "--threads", "1"]  # fmt: skip
    else:
        argv += ["--resolution", "1024", "--anchors", "20", "--timing-steps", "10", "--warmup-steps", "2"]
    rec.figures["argv"] = argv
    rec.save()
    projection.main(argv)


def part_demo(ctx: Context, rec: Record) -> None:
    """``run_demo`` at quality quick on the device: seconds per stage (OUT/demo.json, after every stage)."""
    if ctx.tiny:
        raise Skip("--tiny: the quick demo needs the real prior (mobilestylegan-ffhq), dlib and the LPIPS weights; "
                   "tests/test_demo.py runs it on a tiny generator")  # fmt: skip
    ctx.require_device()
    for name in (REAL_PRIOR, *LPIPS_ASSETS.values()):
        ctx.asset(name)
    from mystyle_pl.demo import run_demo

    out = ctx.fresh_folder("demo")
    rec.attach("demo", out / "demo.json")
    result = run_demo(out, quality="quick", device=str(ctx.device), progress=False, log=lambda m: print(m, flush=True))
    rec.figures.update(wall_s=round(result.seconds, 1), out=str(out))


def make_step_timer(path: Path, device, meta: dict):
    """A Lightning callback that times every training step (device synchronised) into ``path``.

    Built here because Lightning is imported in the worker only (see the imports note)."""
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        """``steps``: one entry per training step: epoch, batch index, ``compute_s`` (batch start to end)
        and ``since_prev_end_s`` (from the previous step's end: data loading, logging and, at an epoch's
        first batch, the epoch boundary included); ``anchor_s``: the anchors' W inversion."""

        def __init__(self):
            self.data: dict[str, Any] = {**meta, "steps": [], "anchor_s": None, "finished": False}
            self._start = self._prev_end = None

        def sync(self) -> None:
            import torch

            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def save(self) -> None:
            write_json(path, self.data)

        def setup(self, trainer, pl_module, stage: str) -> None:
            self.data["setup_started"] = time.time()
            self.save()

        def on_train_start(self, trainer, pl_module) -> None:
            self.data["setup_to_train_start_s"] = time.time() - self.data.get("setup_started", time.time())
            self.data["precision"] = str(trainer.precision)
            self.save()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.sync()
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.sync()
            end = time.perf_counter()
            self.data["steps"].append({
                "epoch": trainer.current_epoch, "batch": batch_idx, "compute_s": end - self._start,
                "since_prev_end_s": None if self._prev_end is None else end - self._prev_end,
            })  # fmt: skip
            self._prev_end = end
            self.save()

        def on_train_end(self, trainer, pl_module) -> None:
            self.data["finished"] = True
            self.save()

    return StepTimer()


def part_full_fit(ctx: Context, rec: Record) -> None:
    """The demo's ``--quality full`` fit (configs/fit/mystyle.yaml + the demo's run config) for a few
    steps on a small synthesised album, through LightningCLI: anchors and tuning steps timed."""
    import inspect
    from dataclasses import replace

    from mystyle_pl import load_generator
    from mystyle_pl.demo import QUALITIES, _Demo
    from mystyle_pl.lightning_cli import MyStyleLightningCLI
    from mystyle_pl.tuning import PersonalTuner

    ctx.require_device()
    generator = ctx.generator_source()
    for name in LPIPS_ASSETS.values():
        ctx.asset(name)
    out = ctx.fresh_folder("full_fit")
    resolution = int(load_generator(generator).img_resolution)
    # 8 training photos = one anchor batch of the shipped size (8) and two tuning batches of 4
    settings = replace(QUALITIES["full"], num_photos=8, num_held_out=1, photo_size=resolution)
    demo = _Demo(out, None, "full", settings, ctx.device, 1, generator, False, None, [], {}, False,
                 lambda m: print(m, flush=True))  # fmt: skip
    demo.run_album()  # synthesised crops, used as they are (no dlib): the timing does not depend on them
    demo.run_prepare()
    shipped = init_args(read_config(settings.fit_config), "model")
    defaults = inspect.signature(PersonalTuner).parameters
    anchor_steps_shipped = int(shipped.get("anchor_steps", defaults["anchor_steps"].default))
    # GPU: 20 steps = 10 passes over 8 photos (epoch boundaries included); 50 anchor steps, extrapolated
    anchor_steps, max_steps = (2, 3) if ctx.tiny else (50, 20)
    argv = demo.fit_argv()[1:]  # ["fit", ...] -> LightningCLI(run=False) arguments
    argv += [f"--trainer.max_steps={max_steps}", f"--model.anchor_steps={anchor_steps}",
             f"--model.anchors_cache={out / 'anchors'}"]  # fmt: skip
    if ctx.tiny:
        argv += ["--data.num_workers=0"]  # DataLoader worker processes cost more than a tiny step
    saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees both args and sys.argv
    try:
        cli = MyStyleLightningCLI(args=argv, run=False)
    finally:
        sys.argv = saved
    model, data = cli.model, cli.datamodule
    meta = {
        "generator": generator, "config": settings.fit_config, "argv": argv, "album_photos": settings.num_photos,
        "batch_size": int(data.batch_size), "num_workers": int(data.num_workers),
        "anchor_batch_size": int(model.anchor_settings.batch_size), "anchor_steps": anchor_steps,
        "anchor_steps_shipped": anchor_steps_shipped, "anchor_lpips_net": model.anchor_settings.lpips_net,
        "max_steps": max_steps, "loss_resolution": model.hparams.loss_resolution,
    }  # fmt: skip
    timer = make_step_timer(ctx.work / "full_fit_steps.json", ctx.device, meta)
    rec.attach("timer", ctx.work / "full_fit_steps.json")
    timer.save()
    compute_anchors = model.compute_anchors

    def timed_anchors(datamodule):
        timer.sync()
        start = time.perf_counter()
        anchors = compute_anchors(datamodule)
        timer.sync()
        timer.data.update(anchor_s=time.perf_counter() - start, anchor_photos=len(datamodule.train_names))
        timer.save()
        return anchors

    model.compute_anchors = timed_anchors  # an instance attribute: PersonalTuner.setup calls it
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(model, datamodule=data)


def full_fit_summary(raw: dict, photos: int = FULL_FIT_PHOTOS, passes: int = FULL_FIT_PASSES) -> dict:
    """Seconds per anchor step and per tuning step from the step timer's file, and the wall time of a
    fit on ``photos`` photos x ``passes`` passes extrapolated from them (validation and checkpoints
    beyond the measured epochs not included). Standard library only (the orchestrator calls it)."""
    out: dict[str, Any] = {"photos": photos, "passes": passes}
    steps = raw.get("steps") or []
    skip = min(FIT_WARMUP_STEPS, len(steps) // 2)
    timed = steps[skip:]
    out["steps_timed"], out["steps_skipped"] = len(timed), skip
    compute = median([s["compute_s"] for s in timed])
    within = median([s["since_prev_end_s"] for s in timed if s["batch"] > 0 and s["since_prev_end_s"] is not None])
    boundary = median([s["since_prev_end_s"] for s in timed if s["batch"] == 0 and s["since_prev_end_s"] is not None])
    wall = within if within is not None else compute
    out.update(step_compute_s=compute, step_wall_s=wall, epoch_first_step_wall_s=boundary)
    batch = raw.get("batch_size") or 1
    if wall is not None:
        steps_per_epoch = math.ceil(photos / batch)
        per_epoch = (steps_per_epoch - 1) * wall + (boundary if boundary is not None else wall)
        out.update(steps_per_epoch=steps_per_epoch, tuning_s=passes * per_epoch)
    anchor_s, anchor_photos = raw.get("anchor_s"), raw.get("anchor_photos")
    if anchor_s is not None and anchor_photos:
        a_batch = raw.get("anchor_batch_size") or 1
        per_step = anchor_s / (raw["anchor_steps"] * math.ceil(anchor_photos / a_batch))
        anchors_s = math.ceil(photos / a_batch) * raw["anchor_steps_shipped"] * per_step
        out.update(anchor_step_s=per_step, anchors_s=anchors_s)
    if "tuning_s" in out and "anchors_s" in out:
        out["total_s"] = out["tuning_s"] + out["anchors_s"]
    return out


WORKER_PARTS: dict[str, Callable[[Context, Record], None]] = {
    "machine": part_machine,
    "assets": part_assets,
    "correctness": part_correctness,
    "tuning": part_tuning,
    "projection": part_projection,
    "demo": part_demo,
    "full_fit": part_full_fit,
}


def worker_main(args: argparse.Namespace) -> int:
    """Run ``args.parts`` in order, each into its record (``WORK/parts/<key>.json``)."""
    ctx = Context(args)
    caps = parse_caps(args.caps)
    for key in args.parts:
        part = PART_BY_KEY[key]
        start = time.time()
        rec = Record(ctx.work / "parts" / f"{key}.json", part, min(start + caps[key], args.deadline))
        print(f"[gpu_check worker] part {part.number} {key}: started (cap {caps[key]:.0f} s)", flush=True)
        try:
            WORKER_PARTS[key](ctx, rec)
            rec.finish("done")
        except Skip as e:
            rec.finish("skipped", reason=str(e))
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a failed part is recorded; the next one runs
            rec.finish("failed", reason=f"{type(e).__name__}: {str(e)[:600]}", trace=traceback.format_exc()[-4000:])
            traceback.print_exc()
        finally:
            ctx.free()
        print(f"[gpu_check worker] part {key}: {rec.data['status']} in {rec.data['seconds']:.1f} s", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# the orchestrator


def parse_caps(text: str | None) -> dict[str, float]:
    """``PARTS``' caps with ``key=seconds,...`` overrides."""
    caps = {p.key: float(p.cap_s) for p in PARTS}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if key not in caps or not value:
            raise ValueError(f"--caps {item!r}: expected PART=SECONDS with PART one of {', '.join(caps)}")
        caps[key] = float(value)
    return caps


class Orchestrator:
    """Runs the parts in worker processes under their caps and the overall budget; keeps the table."""

    def __init__(self, args: argparse.Namespace, worker_argv: Callable[[list[str]], list[str]] | None = None,
                 env: dict | None = None):  # fmt: skip
        self.args = args
        self.out: Path = args.out
        self.work: Path = args.work_dir
        self.caps = parse_caps(args.caps)
        # parts end by then: a killed part's grace and the final table still fit into the budget
        self.deadline = args.started_at + args.budget_s - KILL_GRACE_S - FINAL_RESERVE_S
        self.worker_argv = worker_argv or self._worker_argv
        self.env = env if env is not None else self._worker_env()
        self.log_path = self.out / "gpu_check.log"
        previous = read_json(self.out / "gpu_check.json") if args.parts_given else None
        self.report: dict[str, Any] = {
            "format": FORMAT, "version": 1, "started": now_iso(), "device": args.device, "tiny": args.tiny,
            "budget_s": args.budget_s, "caps_s": self.caps, "work_dir": str(self.work),
            "command": " ".join(sys.argv), "setup": self._setup_record(), "parts": {},
        }  # fmt: skip
        if previous and previous.get("format") == FORMAT and previous.get("tiny") == args.tiny:
            self.report["parts"] = {k: {**v, "from_earlier_run": v.get("from_earlier_run") or previous.get("started")}
                                    for k, v in previous.get("parts", {}).items() if k not in args.parts}  # fmt: skip
            self.report["earlier_run"] = previous.get("started")
            if args.setup_status is None and previous.get("setup"):  # this command ran no set-up: keep the earlier
                self.report["setup"] = {**previous["setup"], "from_earlier_run": previous.get("started")}

    def _setup_record(self) -> dict:
        a = self.args
        record = {"status": a.setup_status or "not run by this command (gpu_check.py started directly)"}
        if a.setup_seconds is not None:
            record["seconds"] = a.setup_seconds
        if a.setup_status == "failed":
            record["reason"] = (f"scripts/setup.sh exited with {a.setup_rc} (see setup.log); the check goes on with "
                                "the package from this checkout")  # fmt: skip
        elif a.setup_status == "timed_out":
            record["reason"] = f"scripts/setup.sh ran past its {SETUP_CAP_S} s cap (see setup.log)"
        return record

    def _worker_argv(self, keys: list[str]) -> list[str]:
        a = self.args
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(self.out), "--work-dir",
                str(self.work), "--device", a.device, "--parts", ",".join(keys), "--deadline", str(self.deadline),
                "--caps", ",".join(f"{k}={v}" for k, v in self.caps.items())]  # fmt: skip
        if a.tiny:
            argv.append("--tiny")
        if a.lpips_reference is not None:
            argv += ["--lpips-reference", str(a.lpips_reference)]
        return argv

    def _worker_env(self) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        if self.args.tiny:  # never the user's cache, and one thread per process on a shared CPU
            env.update(MYSTYLE_HOME=str(self.work / "tiny" / "home"), OMP_NUM_THREADS="1")
        return env

    # ------------------------------------------------------------------ running

    def say(self, text: str) -> None:
        print(f"[gpu_check] {text}", flush=True)
        with open(self.log_path, "a") as f:
            f.write(f"[gpu_check] {text}\n")

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        pending = [p.key for p in PARTS if p.key in self.args.parts]
        self.say(f"{len(pending)} part(s) on {self.args.device}{' (--tiny)' if self.args.tiny else ''}; "
                 f"{self.deadline - time.time():.0f} s of the {self.args.budget_s:.0f} s budget left; "
                 f"work folder {self.work}")  # fmt: skip
        self.save()
        while pending:
            if self.deadline - time.time() < MIN_PART_S:
                why = (f"the {self.args.budget_s:.0f} s budget was spent before this part (set-up and the parts "
                       "before it)")
                for key in pending:
                    self.report["parts"][key] = self._stub(key, "not_run", why)
                break
            pending = self._run_worker(pending)
            self.save()
        self.report["finished"] = now_iso()
        self.report["wall_s"] = round(time.time() - self.args.started_at, 1)
        self.save()
        self.say(f"done in {self.report['wall_s']:.0f} s: {self.out / 'gpu_check.md'}")
        return self.report

    def _stub(self, key: str, status: str, reason: str) -> dict:
        p = PART_BY_KEY[key]
        return {"key": key, "number": p.number, "title": p.title, "status": status, "reason": reason,
                "cap_s": self.caps[key], "figures": {}}  # fmt: skip

    def _run_worker(self, keys: list[str]) -> list[str]:
        """One worker for ``keys``; returns the keys still to run (after a kill or a crash)."""
        for key in keys:
            (self.work / "parts" / f"{key}.json").unlink(missing_ok=True)
        log = open(self.log_path, "a")
        proc = subprocess.Popen(self.worker_argv(keys), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env, cwd=str(REPO_ROOT), start_new_session=True)  # fmt: skip
        copier = threading.Thread(target=_copy_lines, args=(proc.stdout, log), daemon=True)
        copier.start()
        killed: str | None = None
        try:
            while proc.poll() is None:
                time.sleep(0.2)
                running = self._running(keys)
                now = time.time()
                if running is not None:
                    key, started = running
                    limit = min(started + self.caps[key], self.deadline) + KILL_GRACE_S
                    if now > limit:
                        killed = key
                        _kill_group(proc)
                        break
                elif now > self.deadline + KILL_GRACE_S:  # stuck between parts (e.g. the worker's imports)
                    _kill_group(proc)
                    break
                self._collect(keys, partial=True)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            proc.wait()
            copier.join(timeout=5)
            log.close()
        records = self._collect(keys, partial=False)
        left: list[str] = []
        for i, key in enumerate(keys):
            record = records.get(key)
            if record is None:  # never started
                left.append(key)
                continue
            if record["status"] != "running":
                continue
            if key == killed:
                cap = min(self.caps[key], self.deadline - record["started"])
                doing = f" while {record['doing']}" if record.get("doing") else ""
                record.update(status="timed_out", seconds=round(time.time() - record["started"], 1),
                              reason=f"stopped at its {cap:.0f} s cap{doing} (what it measured until then is "
                                     "kept)")  # fmt: skip
            elif killed is None and proc.returncode not in (0, None) and time.time() <= self.deadline:
                record.update(status="failed", reason=f"the worker process died (exit code {proc.returncode}): "
                                                      "see gpu_check.log")  # fmt: skip
            else:
                record.update(status="timed_out", reason="stopped: the overall budget was spent")
            self.report["parts"][key] = record
        started_any = any(k in records for k in keys)
        if not started_any:  # the worker died before its first part: report instead of retrying forever
            tail = _tail(self.log_path, 1500)
            for key in keys:
                self.report["parts"][key] = self._stub(key, "failed", f"the worker did not start (exit code "
                                                       f"{proc.returncode}); gpu_check.log ends: {tail}")  # fmt: skip
            return []
        if left:
            self.say(f"restarting a worker for {', '.join(left)}")
        return left

    def _running(self, keys: list[str]) -> tuple[str, float] | None:
        for key in keys:
            record = read_json(self.work / "parts" / f"{key}.json")
            if record and record.get("status") == "running":
                return key, float(record["started"])
        return None

    def _collect(self, keys: list[str], partial: bool) -> dict[str, dict]:
        """Read the parts' records and their attached files into the report (rewriting the table when
        a part has finished since the last look)."""
        records: dict[str, dict] = {}
        changed = False
        for key in keys:
            record = read_json(self.work / "parts" / f"{key}.json")
            if record is None:
                continue
            for name, path in (record.get("attached") or {}).items():
                attached = read_json(Path(path))
                if attached is not None:
                    record["figures"][name] = attached
            if key == "full_fit" and isinstance(record["figures"].get("timer"), dict):
                record["figures"]["summary"] = full_fit_summary(record["figures"]["timer"])
            records[key] = record
            before = self.report["parts"].get(key, {}).get("status")
            if record["status"] != "running" or not partial:
                self.report["parts"][key] = record
                changed |= before != record["status"]
        if partial and changed:
            self.save()
        return records

    def save(self) -> None:
        write_json(self.out / "gpu_check.json", self.report)
        write_atomic(self.out / "gpu_check.md", render_markdown(self.report))


def _copy_lines(stream, log) -> None:
    """Copy the worker's output to the console and to gpu_check.log."""
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        try:
            log.write(line)
            log.flush()
        except ValueError:  # the log was closed after a kill
            break


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the worker and everything it started (its own process group): TERM, then KILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, chars: int) -> str:
    try:
        return " ".join(Path(path).read_text()[-chars:].split())
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# the markdown table


def _f(value: Any, spec: str = ".3g", unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return format(value, spec) + unit


def _status(part: dict) -> str:
    status = part.get("status", "?")
    return {"done": "done", "skipped": "**skipped**", "failed": "**failed**", "timed_out": "**timed out**",
            "not_run": "**not run**", "running": "**running**"}.get(status, status)  # fmt: skip


def render_markdown(report: dict) -> str:
    """The check's table (README-ready): machine and date, one line per part, then each part's figures."""
    parts = report.get("parts", {})
    machine = parts.get("machine", {}).get("figures", {})
    where = machine.get("gpu") or ("CPU" if report.get("device") == "cpu" else "no GPU found")
    lines = [f"### GPU check: {where}, {report.get('started', '?')}", ""]
    if report.get("tiny"):
        lines += ["**--tiny run**: a tiny random generator and a few steps check the code paths; "
                  "its figures are not measurements.", ""]  # fmt: skip
    info = [f"torch {machine['torch']}" if machine.get("torch") else None,
            f"CUDA {machine['cuda']}" if machine.get("cuda") else None,
            f"cuDNN {machine['cudnn']}" if machine.get("cudnn") else None,
            f"driver {machine['driver']}" if machine.get("driver") else None,
            f"{machine['gpu_memory_mib']} MiB" if machine.get("gpu_memory_mib") else None,
            f"Python {machine['python']}" if machine.get("python") else None,
            f"{machine['cpus']} CPUs" if machine.get("cpus") else None,
            f"commit {machine['commit']}{' (uncommitted changes)' if machine.get('dirty') else ''}"
            if machine.get("commit") else None]  # fmt: skip
    wall = report.get("wall_s")
    budget = report.get("budget_s", BUDGET_S)
    lines += [f"Machine: {where}; " + ", ".join(i for i in info if i) + "."
              + (f" Wall time {wall:.0f} s of the {budget:.0f} s budget." if wall else ""), ""]  # fmt: skip
    if report.get("earlier_run"):
        lines += [f"Parts marked *earlier* are from the run of {report['earlier_run']}.", ""]
    lines += ["| part | what | status | seconds (cap) | note |", "| --- | --- | --- | --- | --- |"]
    setup = report.get("setup", {})
    lines.append(f"| 0 | set-up (scripts/setup.sh) | {setup.get('status', '?')} | {_f(setup.get('seconds'), '.0f')} "
                 f"({SETUP_CAP_S}) | {setup.get('reason', '')} |")  # fmt: skip
    for p in TABLE_ORDER:
        part = parts.get(p.key)
        if part is None:
            lines.append(f"| {p.number} | {p.title} | not selected | – | |")
            continue
        note = part.get("reason") or ""
        if part.get("from_earlier_run"):
            note = f"*earlier* {note}".strip()
        seconds = f"{_f(part.get('seconds'), '.0f')} ({_f(part.get('cap_s'), '.0f')})"
        lines.append(f"| {p.number} | {p.title} | {_status(part)} | {seconds} | {_md_cell(note)} |")
    lines.append("")
    for p in TABLE_ORDER:
        part = parts.get(p.key)
        if part and part.get("figures"):
            body = RENDERERS[p.key](part["figures"], report)
            if body:
                lines += [f"**{p.number}. {p.title}**", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _render_machine(f: dict, report: dict) -> list[str]:
    if not f.get("cuda_available"):
        cuda = report.get("device") == "cuda"
        gpu = "torch.cuda.is_available() was False: no GPU figures" if cuda else "no GPU (a CPU run)"
        return [f"{gpu}; torch {f.get('torch')}, Lightning {f.get('lightning', '–')}; {f.get('platform', '')}."]
    tf32 = f.get("tf32", {})
    return [f"GPU {f.get('nvidia_smi') or f.get('gpu', '–')}, compute capability {f.get('capability', '–')}, "
            f"bf16 {f.get('bf16_supported', '–')}; torch TF32 defaults: matmul {tf32.get('matmul')}, "
            f"cuDNN {tf32.get('cudnn')}; "
            f"Lightning {f.get('lightning', '–')}; {f.get('platform', '')}."]  # fmt: skip


def _render_assets(f: dict, report: dict) -> list[str]:
    lines = ["| asset | cached before | seconds | size MiB | note |", "| --- | --- | --- | --- | --- |"]
    for name, row in f.items():
        note = _md_cell(row.get("skipped") or row.get("note") or "")
        lines.append(f"| {name} | {row.get('cached_before')} | {_f(row.get('seconds'), '.1f')} | "
                     f"{_f(row.get('size_mib'), '.1f')} | {note} |")  # fmt: skip
    return lines


def _render_correctness(f: dict, report: dict) -> list[str]:
    dev = "CUDA" if report.get("device") == "cuda" else report.get("device", "device")
    lines = [f"| generator | ws | fp32 {dev} vs CPU, max abs diff (TF32 off) | same, torch's TF32 defaults | "
             "bf16 autocast vs fp32, max abs diff | bf16 PSNR vs fp32 (dB) |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in (f.get("generators") or {}).values():
        if "skipped" in row:
            lines.append(f"| {row.get('label')} | – | skipped: {_md_cell(row['skipped'])} | | | |")
            continue
        ws = "x".join(map(str, row.get("ws", [])))
        lines.append(f"| {row.get('label')} | {ws} | {_f(row.get('fp32_max_abs_diff'), '.2e')} | "
                     f"{_f(row.get('fp32_default_tf32_max_abs_diff'), '.2e')} | "
                     f"{_f(row.get('bf16_max_abs_diff'), '.3f')} | {_f(row.get('bf16_psnr_db'), '.1f')} |")  # fmt: skip
    lp = f.get("lpips")
    if lp:
        lines += ["", f"LPIPS v0.1 on `lpips_reference` on {dev}, fp32:", "",
                  "| net | d(ref, p0) | d(ref, p1) | published | max abs diff | match (5e-4) |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        if "skipped" in lp:
            lines.append(f"| alex, vgg | skipped: {_md_cell(lp['skipped'])} | | | | |")
        for net in LPIPS_ASSETS:
            row = lp.get(net)
            if row is None:
                continue
            if "skipped" in row:
                lines.append(f"| {net} | skipped: {_md_cell(row['skipped'])} | | | | |")
                continue
            match = {True: "yes", False: "**no**", None: f"n/a ({row.get('weights')})"}[row.get("match")]
            expected = " / ".join(str(v) for v in row["expected"])
            lines.append(f"| {net} | {row['d_ref_p0']:.4f} | {row['d_ref_p1']:.4f} | {expected} | "
                         f"{row['max_abs_diff']:.1e} | {match} |")  # fmt: skip
    return lines


def _render_tuning(f: dict, report: dict) -> list[str]:
    rows = f.get("rows") or {}
    lines = [f"Generator {f.get('generator')}; {f.get('timed_steps')} timed steps after {f.get('warmup_steps')} "
             "warm-up.", "",
             "| recipe | batch | precision | loss px | compile | images/s | peak MiB | vs official |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, r in rows.items():
        head = (f"| {label} ({r.get('source')}) | {r.get('batch')} | {r.get('precision')} | "
                f"{r.get('loss_resolution') or 'full'} | {r.get('compile')} ")
        if "skipped" in r:
            lines.append(head + f"| skipped: {_md_cell(r['skipped'])} | | |")
        else:
            vs = _f(r.get("vs_official"), ".2f", "x")
            if r.get("vs_shipped"):
                vs += f" ({r['vs_shipped']:.2f}x shipped)"
            lines.append(head + f"| {_f(r.get('images_per_s'), '.2f')} | {_f(r.get('peak_mib'), '.0f')} | {vs} |")
    return lines


def _render_projection(f: dict, report: dict) -> list[str]:
    raw = f.get("projection")
    if not raw:
        return []
    lines = [f"{raw.get('task')} x{raw.get('factor')} ({raw.get('input_size')} px -> {raw.get('resolution')} px), "
             f"{raw.get('family')} {raw.get('img_resolution')} px with {raw.get('anchors')} random anchors; inputs: "
             f"{raw.get('observations')}; peak memory: {raw.get('memory')}.", "",
             "| recipe | batch | s/step | steps used | images/min (steps) | images/min (+ per-run overhead) | "
             "final loss (own objective) | PSNR to truth (dB) | peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    presets = raw.get("presets") or {}
    for recipe in ("official", "ours"):
        r = raw.get(recipe) or {}
        if "sec_per_step" not in r:
            lines.append(f"| {recipe} | {r.get('batch', '–')} | not measured | | | | | | |")
            continue
        name = f"{recipe} (preset {presets[recipe]})" if presets.get(recipe) else recipe
        lines.append(f"| {name} | {r.get('batch')} | {_f(r.get('sec_per_step'), '.4f')} | "
                     f"{r.get('steps')} ({r.get('steps_source')}) | "
                     f"{_f(r.get('images_per_min'), '.2f')} | {_f(r.get('images_per_min_with_overhead'), '.2f')} | "
                     f"{_f(r.get('final_loss'), '.4f')} | {_f(r.get('truth_psnr'), '.2f')} | "
                     f"{_f(r.get('peak_mb'), '.0f')} |")  # fmt: skip
    incomplete = "" if raw.get("complete") else " (run incomplete: the missing figures were not reached)"
    lines += ["", f"ours / official: {_f(raw.get('speedup'), '.2f', 'x')} images/min from the steps, "
                  f"{_f(raw.get('speedup_with_overhead'), '.2f', 'x')} with the per-run overhead{incomplete}."]
    return lines


def _render_demo(f: dict, report: dict) -> list[str]:
    demo = f.get("demo")
    if not demo:
        return []
    lines = ["| stage | status | seconds | note |", "| --- | --- | --- | --- |"]
    total = 0.0
    for s in demo.get("stages", []):
        total += s.get("seconds") or 0.0
        note = _md_cell(s.get("note", ""))[:200]
        lines.append(f"| {s.get('name')} | {s.get('status')} | {_f(s.get('seconds'), '.1f')} | {note} |")
    lines.append(f"| total | | {total:.1f} | device {demo.get('device')} |")
    return lines


def _render_full_fit(f: dict, report: dict) -> list[str]:
    raw, s = f.get("timer"), f.get("summary")
    if not raw or not s:
        return []
    hours = (lambda v: "–" if v is None else f"{v / 3600:.2f} h")  # noqa: E731
    return [
        f"{raw.get('config')} (the demo's --quality full recipe), {raw.get('generator')}, precision "
        f"{raw.get('precision', '–')}, batch {raw.get('batch_size')}, {raw.get('num_workers')} loader workers, on "
        f"{raw.get('album_photos')} synthesised photos; anchors: {raw.get('anchor_steps')} of the shipped "
        f"{raw.get('anchor_steps_shipped')} W-inversion steps ({raw.get('anchor_lpips_net')}, "
        f"batch {raw.get('anchor_batch_size')}).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| s per anchor step (batch of {raw.get('anchor_batch_size')}) | {_f(s.get('anchor_step_s'), '.4f')} |",
        f"| s per tuning step: compute / wall (median of {s.get('steps_timed')} after {s.get('steps_skipped')}) | "
        f"{_f(s.get('step_compute_s'), '.4f')} / {_f(s.get('step_wall_s'), '.4f')} |",
        f"| s for an epoch's first step (epoch boundary) | {_f(s.get('epoch_first_step_wall_s'), '.4f')} |",
        f"| extrapolated, {s['photos']} photos x {s['passes']} passes: anchors + tuning = total | "
        f"{hours(s.get('anchors_s'))} + {hours(s.get('tuning_s'))} = **{hours(s.get('total_s'))}** |",
        "",
        "Extrapolation: anchors scale with the photos' batches x the shipped steps, tuning with "
        f"{s.get('steps_per_epoch', '–')} steps per pass; held-out validation and checkpoints are not included.",
    ]  # fmt: skip


RENDERERS: dict[str, Callable[[dict, dict], list[str]]] = {
    "machine": _render_machine,
    "assets": _render_assets,
    "correctness": _render_correctness,
    "tuning": _render_tuning,
    "projection": _render_projection,
    "demo": _render_demo,
    "full_fit": _render_full_fit,
}


def update_readme(readme: Path, markdown: str) -> None:
    """Put ``markdown`` between the README's gpu-check markers (atomically)."""
    text = readme.read_text()
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise SystemExit(f"{readme}: expected one {README_BEGIN} and one {README_END} line (the 'GPU figures' section)")
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    write_atomic(readme, f"{head}{README_BEGIN}\n{markdown.rstrip()}\n{README_END}{tail}")


# ---------------------------------------------------------------------------------------------
# entry point


def default_lpips_reference() -> Path:
    shared = os.environ.get("MYSTYLE_SHARED_DATA")
    return (Path(shared) if shared else REPO_ROOT.parent / "shared" / "data") / "lpips_reference"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples::")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "gpu_check",
                   help="where gpu_check.json, gpu_check.md and gpu_check.log go "
                        "(default: outputs/gpu_check)")  # fmt: skip
    p.add_argument("--work-dir", type=Path, default=None,
                   help="the parts' own files (demo outputs, albums, the tools' figures); default: a new temporary "
                        "folder, so that OUT holds only the results")  # fmt: skip
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="default: cuda")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny random generator and a few steps (code paths, not measurements; "
                        "the real prior is skipped)")  # fmt: skip
    p.add_argument("--parts", default=None,
                   help=f"comma-separated parts to run (default all: {','.join(p.key for p in PARTS)}); the other "
                        "parts' rows are kept from OUT/gpu_check.json")  # fmt: skip
    p.add_argument("--caps", default=None, help="time caps in seconds, e.g. demo=150,projection=120 (defaults: PARTS)")
    p.add_argument("--budget-s", type=float, default=BUDGET_S,
                   help=f"the whole check, set-up included (default {BUDGET_S:.0f})")  # fmt: skip
    p.add_argument("--lpips-reference", type=Path, default=None,
                   help="folder of ex_ref.png, ex_p0.png, ex_p1.png (default: $MYSTYLE_SHARED_DATA or ../shared/data, "
                        "/lpips_reference)")  # fmt: skip
    p.add_argument("--render", type=Path, default=None, metavar="OUT_DIR",
                   help="only rewrite OUT_DIR/gpu_check.md from its gpu_check.json (no measurement)")  # fmt: skip
    p.add_argument("--update-readme", action="store_true",
                   help="with --render: also put the table into the README's 'GPU figures' section "
                        "(GPU runs only)")  # fmt: skip
    p.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md", help=argparse.SUPPRESS)
    # passed by gpu_check.sh
    p.add_argument("--started-at", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--setup-status", default=None, help=argparse.SUPPRESS)
    p.add_argument("--setup-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--setup-rc", type=int, default=None, help=argparse.SUPPRESS)
    # the worker (started by the orchestrator)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.update_readme and args.render is None:
        p.error("--update-readme goes with --render OUT_DIR (render a finished check's table into the README)")
    args.parts_given = args.parts is not None
    keys = [p.key for p in PARTS]
    args.parts = [k for k in (args.parts.split(",") if args.parts else keys) if k]
    unknown = [k for k in args.parts if k not in keys]
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(keys)}")
    try:
        parse_caps(args.caps)
    except ValueError as e:
        p.error(str(e))
    if args.started_at is None:
        args.started_at = time.time()
    if args.deadline is None:  # (the orchestrator passes its own to the worker)
        args.deadline = args.started_at + args.budget_s - KILL_GRACE_S - FINAL_RESERVE_S
    if args.lpips_reference is None:
        args.lpips_reference = default_lpips_reference()
    if args.work_dir is None and not args.worker and args.render is None:
        args.work_dir = Path(tempfile.mkdtemp(prefix="mystyle-gpu-check-"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.render is not None:
        report = read_json(args.render / "gpu_check.json")
        if report is None or report.get("format") != FORMAT:
            raise SystemExit(f"{args.render / 'gpu_check.json'}: no GPU check report there (run gpu_check.sh first)")
        markdown = render_markdown(report)
        write_atomic(args.render / "gpu_check.md", markdown)
        if args.update_readme:
            if report.get("tiny") or report.get("device") != "cuda":
                raise SystemExit("this report is from a --tiny or CPU run: it holds no GPU figures for the README "
                                 "(run bash benchmarks/gpu_check.sh on a GPU machine)")  # fmt: skip
            update_readme(args.readme, markdown)
            print(f"updated {args.readme}")
        print(markdown)
        return 0
    Orchestrator(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fidelity probe: do projection methods give back *this* photo restored? Prints figures.

For each held-out aligned photo: the truth at ``--resolution`` px, the input = the truth
area-down-sampled by ``--factor`` (or the truth itself with ``--factor 1``: held-out inversion),
then every method's result, scored by PSNR to the truth, consistency (PSNR of the result
down-sampled like the input against the input), LPIPS-VGG to the truth, dlib distance to the
truth (same person below 0.6) and seconds per image. A strip per photo (input | methods | truth)
goes to ``--out``.

Methods are named settings of :class:`~mystyle_pl.tasks.SuperResolve` (or ``Invert``):
``name:key=value,key=value`` with ProjectionSettings / task fields, e.g.

    python benchmarks/fidelity.py --prior outputs/demo/prior --photos outputs/demo/held_out \\
        --factor 8 --steps 100 --method "shipped:preset=shipped" --method "wplus:preset=quick"

``bicubic`` is always included. Presets: see :mod:`mystyle_pl.tasks.presets`.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mystyle_pl.data.io import read_image, to_tensor, to_uint8  # noqa: E402
from mystyle_pl.losses import LPIPS  # noqa: E402
from mystyle_pl.metrics.identity import IdentityScorer  # noqa: E402
from mystyle_pl.metrics.image import psnr  # noqa: E402
from mystyle_pl.prior import PersonalPrior  # noqa: E402
from mystyle_pl.tasks import Invert, SuperResolve  # noqa: E402
from mystyle_pl.tasks.presets import task_settings  # noqa: E402


def parse_method(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    kwargs: dict = {}
    for part in filter(None, rest.split(",")) if "=" in rest else []:
        key, _, value = part.partition("=")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return name, kwargs


def _fix_tuples(kwargs: dict) -> dict:
    # "pull=(0.1;0.1;0)" on the command line (commas separate the fields)
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, str) and v.startswith("(") and ";" in v:
            v = tuple(float(x) for x in v.strip("()").split(";"))
        out[k] = v
    return out


def plot_traces(traces: list[dict], path: Path, width: int = 720, height: int = 420, xlabel: str = "step") -> None:
    """Objective against step (one line per method and photo), drawn with PIL (no matplotlib here).
    Each method's objective includes its own penalties, so compare shapes and convergence, not levels.
    ``traces``: dicts with ``method`` (legend), ``trace`` (values), ``seconds`` (shown in the legend)
    and optionally ``x`` (the x value of each entry, e.g. seconds since the start; default: its index)."""
    from PIL import ImageDraw

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = 60, 20, width - 170, height - 40
    values = [v for t in traces for v in t["trace"]]
    if not values:
        return
    xs = [t.get("x") or list(range(len(t["trace"]))) for t in traces]
    x_lo = min(min(x) for x in xs if x)
    x_max = max(max(x) for x in xs if x)
    x_span = x_max - x_lo if x_max > x_lo else 1
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        yy = bottom - (bottom - top) * k / 4
        draw.text((5, yy - 6), f"{v:.3f}", fill=(0, 0, 0))
    draw.text(((left + right) // 2 - 20, bottom + 12), f"{xlabel} ({x_lo:.0f}..{x_max:.0f})", fill=(0, 0, 0))
    names = list(dict.fromkeys(t["method"] for t in traces))
    for t, x in zip(traces, xs):
        c = colours[names.index(t["method"]) % len(colours)]
        pts = [(left + (right - left) * (xi - x_lo) / x_span, bottom - (bottom - top) * (v - lo) / (hi - lo)) for xi, v in zip(x, t["trace"])]
        if len(pts) > 1:
            draw.line(pts, fill=c, width=2)
        if t.get("x") is not None and len(pts) <= 12:  # few measured points (a sweep): mark each
            for px, py in pts:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=c)
    for i, n in enumerate(names):
        secs = [t["seconds"] for t in traces if t["method"] == n and t.get("seconds") is not None]
        label = f"{n} ({sum(secs) / len(secs):.0f} s)" if secs else n
        draw.text((right + 10, top + 16 * i), label, fill=colours[i % len(colours)])
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", required=True, help="personal prior bundle folder")
    ap.add_argument("--photos", nargs="+", required=True, help="aligned held-out photos (files or folders)")
    ap.add_argument("--factor", type=int, default=8, help="down-sampling factor of the input; 1 = inversion")
    ap.add_argument("--resolution", type=int, default=256, help="truth / output resolution (px)")
    ap.add_argument("--steps", type=int, default=100, help="projection steps of every method")
    ap.add_argument("--method", action="append", default=[], help="name:key=value,... (repeatable)")
    ap.add_argument("--out", default="outputs/fidelity", help="strips and metrics.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-identity", action="store_true", help="skip dlib scoring")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = PersonalPrior.load(args.prior)
    files = []
    for p in map(Path, args.photos):
        files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")) if p.is_dir() else [p]
    R, f = args.resolution, args.factor
    vgg = LPIPS("vgg")
    lpips_alex = LPIPS("alex")
    scorer = None if args.no_identity else IdentityScorer()
    methods = [parse_method(m) for m in (args.method or ["quick:preset=quick"])]
    rows, traces = [], []
    for file in files:
        truth = F.interpolate(to_tensor(read_image(file)), size=(R, R), mode="area")
        y = truth if f == 1 else F.interpolate(truth, size=(R // f, R // f), mode="area")
        down = (lambda x: x) if f == 1 else (lambda x: F.interpolate(x, size=(R // f, R // f), mode="area"))
        results = {"bicubic": (F.interpolate(y, size=(R, R), mode="bicubic", align_corners=False).clamp(-1, 1), 0.0, 0)}
        for name, kw in methods:
            kw = _fix_tuples(kw)
            preset = kw.pop("preset", "quick")
            task_kw = {k: kw.pop(k) for k in list(kw) if k in ("back_projection",)}
            settings = task_settings(preset, **{"steps": args.steps, **kw})
            t0 = time.perf_counter()
            if f == 1:
                task = Invert(projection=settings, beta=kw.get("beta", 0.03)).bind(prior, lpips=lpips_alex)
                full = F.interpolate(truth, size=(prior.generator.img_resolution,) * 2, mode="bicubic", align_corners=False)
                res = task(full)
                img = F.interpolate(res.images, size=(R, R), mode="area")
            else:
                task = SuperResolve(projection=settings, output_resolution=R, **task_kw).bind(prior, lpips=lpips_alex)
                res = task(y)
                img = res.images
            results[name] = (img.clamp(-1, 1), time.perf_counter() - t0, res.steps_used)
            if getattr(res, "raw", None) is not None and task.back_projection:  # the same projection, not back-projected
                results[f"{name}-raw"] = (res.raw.clamp(-1, 1), time.perf_counter() - t0, res.steps_used)
            traces.append({"photo": file.name, "method": name, "trace": [round(v, 5) for v in res.trace],
                           "seconds": round(time.perf_counter() - t0, 1),
                           "trace_seconds": [round(v, 2) for v in res.trace_seconds]})  # fmt: skip
        gt_desc = scorer.describe(truth[0]) if scorer else None
        for name, (img, secs, steps) in results.items():
            row = {
                "photo": file.name, "method": name, "seconds": round(secs, 1), "steps": steps,
                "psnr": float(psnr(img, truth)[0]), "consistency": float(psnr(down(img), y)[0]),
                "lpips_vgg": float(vgg(img, truth)[0]),
            }  # fmt: skip
            if scorer:
                row["dlib"] = scorer.score(img[0], gt_desc).dist_gt
            rows.append(row)
            print(json.dumps(row), flush=True)
        tiles = [F.interpolate(y, size=(R, R), mode="nearest")] + [r[0] for r in results.values()] + [truth]
        Image.fromarray(to_uint8(torch.cat(tiles, dim=3))[0]).save(out / f"{file.stem}_x{f}.jpg", quality=90)
    (out / "metrics.json").write_text(json.dumps(rows, indent=1))
    (out / "traces.json").write_text(json.dumps(traces))
    plot_traces(traces, out / "traces.png")
    plot_traces([{**t, "x": t["trace_seconds"]} for t in traces], out / "traces_seconds.png", xlabel="seconds")
    print("\nmethod            PSNR   cons.  LPIPS  dlib   s/img")
    for name in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == name]
        mean = lambda k: sum(r.get(k, float("nan")) for r in sel) / len(sel)  # noqa: E731
        print(f"{name:16s} {mean('psnr'):6.2f} {mean('consistency'):6.1f} {mean('lpips_vgg'):6.3f} {mean('dlib'):6.3f} {mean('seconds'):6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

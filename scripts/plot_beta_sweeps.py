#!/usr/bin/env python3
"""The beta sweeps of several evaluations on one plot: identity against PSNR, one line per person.

    python scripts/plot_beta_sweeps.py outputs/albums/*/sweep --out docs/images/beta_sweeps.png

Reads each folder's ``metrics.json`` (``mystyle-pl evaluate ... --betas 0,0.03,0.1,0.3``; its
``beta_sweep`` entry) and prints, per person and beta: PSNR to the truth (dB), LPIPS, dlib distance
to the truth (same person below 0.6) and the mean over people per beta, which is how the shipped
beta is chosen (docs/fidelity.md). The plot: x = PSNR (right = closer to the photo), y = dlib
distance (down = more the person), one line per folder through its betas in order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fidelity import plot_traces  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def read_sweep(folder: Path) -> list[dict]:
    """``[{beta, psnr, lpips, dlib}]`` of the folder's ``metrics.json`` sweep (empty when it has none)."""
    data = json.loads((folder / "metrics.json").read_text())
    sweep = data.get("beta_sweep") or {}
    return [
        {
            "beta": p["beta"],
            "psnr": p["aggregate"]["psnr"]["mean"],
            "lpips": p["aggregate"]["lpips"]["mean"],
            "dlib": p["id_dist_gt"],
        }
        for p in sweep.get("points", [])
    ]


def _name(folder: Path) -> str:
    return folder.parent.name if folder.name in ("sweep", "eval") else folder.name


def plot(sweeps: dict[str, list[dict]], path: Path) -> None:
    """One line per person: dlib distance (y) against PSNR (x) over the betas, drawn by the
    benchmarks' PIL plotter (no matplotlib in the project's dependencies)."""
    traces = [
        {"method": name,
         "x": [p["psnr"] for p in points if p["dlib"] is not None],
         "trace": [p["dlib"] for p in points if p["dlib"] is not None], "seconds": None}
        for name, points in sweeps.items()
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    betas = ", ".join(str(p["beta"]) for p in next(iter(sweeps.values())))
    plot_traces(traces, path, xlabel=f"x: PSNR dB, y: dlib distance, points: beta {betas}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="evaluation output folders (with metrics.json)")
    parser.add_argument("--out", type=Path, default=None, help="PNG of the plot (default: print only)")
    args = parser.parse_args(argv)
    sweeps = {}
    for folder in args.folders:
        if not (folder / "metrics.json").is_file():
            print(f"{folder}: no metrics.json (run mystyle-pl evaluate --out {folder} first)", file=sys.stderr)
            continue
        points = read_sweep(folder)
        if not points:
            print(f"{folder}: metrics.json has no beta sweep (evaluate ran with --betas '')", file=sys.stderr)
            continue
        sweeps[_name(folder)] = points
    if not sweeps:
        return 1
    print("person   beta    PSNR   LPIPS  dlib")
    for name, points in sweeps.items():
        for p in points:
            dlib = "  -  " if p["dlib"] is None else f"{p['dlib']:.3f}"
            print(f"{name:8s} {p['beta']!s:6s} {p['psnr']:6.2f} {p['lpips']:6.3f} {dlib}")
    print("mean over people:")
    for beta in dict.fromkeys(p["beta"] for points in sweeps.values() for p in points):
        sel = [p for points in sweeps.values() for p in points if p["beta"] == beta]
        dl = [p["dlib"] for p in sel if p["dlib"] is not None]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        print(f"  beta {beta!s:6s} PSNR {mean([p['psnr'] for p in sel]):6.2f}  LPIPS {mean([p['lpips'] for p in sel]):.3f}"
              f"  dlib {mean(dl):.3f} ({sum(d < 0.6 for d in dl)}/{len(sel)} same person)")  # fmt: skip
    if args.out:
        plot(sweeps, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Plot how fits reached their reconstruction target: the anchors' LPIPS against the epoch.

    python scripts/plot_tuning_curves.py outputs/albums/*/fit --out docs/images/tuning_curves.png

Reads each run folder's ``lightning_logs/*/metrics.csv`` (the ``train/anchor_lpips_<net>`` column
that :class:`mystyle_pl.tuning.ReconstructionTarget` logs) and prints one line per run: epochs,
first and last value, tuning seconds (from ``wall_time.txt`` when present).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fidelity import plot_traces  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def read_curve(run: Path, net: str) -> tuple[list[int], list[float]]:
    """The run's ``train/anchor_lpips_<net>`` values in epoch order, with the epochs completed at each
    (``ReconstructionTarget(every_n_epochs=k)`` measures every k-th epoch); empty lists when never logged."""
    values: dict[int, float] = {}
    for path in sorted(run.glob("lightning_logs/*/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                value = row.get(f"train/anchor_lpips_{net}")
                if value:
                    values[int(row["epoch"]) + 1] = float(value)  # the CSV's epoch counts from 0
    epochs = sorted(values)
    return epochs, [values[k] for k in epochs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="fit run folders (--trainer.default_root_dir)")
    parser.add_argument("--net", default="vgg", help="the ReconstructionTarget's LPIPS trunk (default: vgg)")
    parser.add_argument("--out", type=Path, default=None, help="PNG of the curves (default: print only)")
    args = parser.parse_args(argv)
    traces = []
    for run in args.runs:
        epochs, curve = read_curve(run, args.net)
        if not curve:
            print(f"{run}: no train/anchor_lpips_{args.net} logged (a fit without ReconstructionTarget?)", file=sys.stderr)
            continue
        wall = (run / "wall_time.txt").read_text().strip() if (run / "wall_time.txt").exists() else "wall time unknown"
        name = run.parent.name if run.name == "fit" else f"{run.parent.name}/{run.name}"
        print(f"{name}: {epochs[-1]} epochs, LPIPS-{args.net} {curve[0]:.3f} -> {curve[-1]:.3f} ({wall})")
        traces.append({"method": name, "trace": curve, "x": epochs, "seconds": None})
    if args.out and traces:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot_traces(traces, args.out, xlabel="epoch")
        print(f"wrote {args.out}")
    return 0 if traces else 1


if __name__ == "__main__":
    raise SystemExit(main())

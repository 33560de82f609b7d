#!/usr/bin/env python3
"""Merge several ``mystyle-pl evaluate`` outputs (one per person) into one markdown table.

    python scripts/summarize_evaluations.py outputs/albums/*/eval > outputs/albums/summary.md

Per condition and method: identity (dlib distance and cosine to the ground truth and to the
album's identity centre, same-person share under 0.6), LPIPS, PSNR, per person and pooled over
everyone (the mean of every image's value; a result with no face counts as not the same person).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

METHODS = ("personal", "personal-raw", "generic", "baseline")


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def _row(label: str, records: list[dict]) -> str:
    same = [bool(r.get("id_same_gt")) for r in records]  # no face found = not the same person
    cells = [
        _fmt(_mean([r.get("id_dist_gt") for r in records])),
        _fmt(_mean([r.get("id_cos_gt") for r in records])),
        _fmt(_mean([r.get("id_dist_centre") for r in records])),
        f"{sum(same)}/{len(same)}",
        _fmt(_mean([r.get("lpips") for r in records])),
        _fmt(_mean([r.get("psnr") for r in records]), 2),
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="evaluate output folders (each holding metrics.json)")
    parser.add_argument("--compact", action="store_true",
                        help="one pooled table: condition x method (ID distance, same-person count, LPIPS, PSNR, consistency)")
    args = parser.parse_args(argv)
    runs = {}
    for folder in map(Path, args.runs):
        metrics = json.loads((folder / "metrics.json").read_text())
        runs[folder.parent.name if folder.name == "eval" else folder.name] = metrics["records"]
    conditions = sorted({r["condition"] for recs in runs.values() for r in recs})
    if args.compact:
        print(f"| condition ({len(runs)} people) | " + " | ".join(METHODS) + " |")
        print("|---|" + "---|" * len(METHODS))
        for cond in conditions:
            cells = []
            for method in METHODS:
                sel = [r for recs in runs.values() for r in recs if r["condition"] == cond and r["method"] == method]
                same = sum(bool(r.get("id_same_gt")) for r in sel)
                cells.append(
                    f"{_fmt(_mean([r.get('id_dist_gt') for r in sel]))} ({same}/{len(sel)}) · "
                    f"{_fmt(_mean([r.get('lpips') for r in sel]))} · {_fmt(_mean([r.get('psnr') for r in sel]), 1)}"
                    f" · {_fmt(_mean([r.get('consistency') for r in sel]), 1)}"
                    if sel else "-"
                )
            print(f"| {cond} | " + " | ".join(cells) + " |")
        return 0
    header = "| person · method | ID dist to gt ↓ | ID cos to gt ↑ | ID dist to centre ↓ | same person (<0.6) | LPIPS ↓ | PSNR ↑ |"
    for cond in conditions:
        print(f"\n### {cond}\n\n{header}\n|---|---|---|---|---|---|---|")
        for method in METHODS:
            for person, recs in runs.items():
                sel = [r for r in recs if r["condition"] == cond and r["method"] == method]
                if sel:
                    print(_row(f"{person} · {method}", sel))
            pooled = [r for recs in runs.values() for r in recs if r["condition"] == cond and r["method"] == method]
            if pooled and len(runs) > 1:
                print(_row(f"**all · {method}**", pooled))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

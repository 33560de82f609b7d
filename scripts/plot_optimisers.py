#!/usr/bin/env python3
"""Objective against seconds for the methods of one ``benchmarks/fidelity.py`` run, and where each
stood when the fastest had finished (the comparison at equal time, not at equal steps).

    python benchmarks/fidelity.py --prior P --photos PHOTO --factor 8 --steps 60 \\
        --method adam:preset=quick --method lbfgs:preset=quick,optimizer=lbfgs --out outputs/s5/optim
    python scripts/plot_optimisers.py outputs/s5/optim --methods adam,lbfgs --out docs/images/optim.png

Each method's objective includes its own penalties: compare methods of one space (W+ with W+,
P+ with P+), not levels across spaces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fidelity import plot_traces  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def at_time(trace: list[float], seconds: list[float], t: float) -> float:
    """The lowest objective reached by time ``t`` (seconds since the loop began)."""
    seen = [v for v, s in zip(trace, seconds) if s <= t]
    return min(seen) if seen else trace[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a benchmarks/fidelity.py --out folder (traces.json)")
    parser.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="PNG: objective against seconds")
    args = parser.parse_args(argv)
    traces = json.loads((args.run / "traces.json").read_text())
    wanted = [m for m in args.methods.split(",") if m]
    traces = [t for t in traces if not wanted or t["method"] in wanted]
    traces = [t for t in traces if t.get("trace_seconds")]
    if not traces:
        print(f"{args.run}: no traces with per-step seconds for {wanted or 'any method'}", file=sys.stderr)
        return 1
    budget = min(t["trace_seconds"][-1] for t in traces)
    print(f"method           steps  seconds  start    best     best by {budget:.0f} s")
    for t in traces:
        tr, ts = t["trace"], t["trace_seconds"]
        print(f"{t['method']:16s} {len(tr):5d} {ts[-1]:8.1f}  {tr[0]:.4f}  {min(tr):.4f}  {at_time(tr, ts, budget):.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # Official Adam on P+ jumps to 10-20x its start (the offsets' norm through Adam's gradient):
        # values are drawn clipped at 1.5x the start so that the converging methods stay readable.
        cap = 1.5 * max(t["trace"][0] for t in traces)
        shown = [{**t, "x": t["trace_seconds"], "trace": [min(v, cap) for v in t["trace"]]} for t in traces]
        plot_traces(shown, args.out, xlabel="seconds (objective clipped at 1.5x the start)")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``mystyle-pl demo``: the whole method end to end (:func:`mystyle_pl.demo.run_demo`).

Lazy import: :mod:`mystyle_pl.demo` is imported inside ``_run_demo``, so that ``mystyle-pl --help`` and the
other commands do not import the fit and the evaluation (Lightning: seconds).
"""

from __future__ import annotations

import argparse

from ..errors import check_paths


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo", help="output folder; re-running resumes (default: outputs/demo)")
    parser.add_argument("--album", default=None, metavar="DIR",
                        help="a folder of your own photos of one person (only read); default: synthesise a demo person")
    parser.add_argument("--quality", default="quick", choices=["quick", "full"],
                        help="quick: minutes (default); full: the paper's budgets (~100 photos, 1000 passes; a GPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--seed", type=int, default=1, help="the demo person, the held-out split and the samples (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--provenance", default="on", choices=["on", "off"],
                        help="on (default): the gallery's PNGs carry Content Credentials, IPTC XMP and a watermark in "
                             "the results (mystyle-pl verify), and evaluate reports the mark's PSNR cost; off: research "
                             "runs, written unlabelled. Recorded in OUT/demo.json as \"provenance\"")  # fmt: skip


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo  # lazy: see module docstring

    check_paths(inputs={"--album": [args.album]}, outputs={"--out": args.out})
    run_demo(args.out, album=args.album, quality=args.quality, device=args.device, seed=args.seed,
             progress=not args.no_progress, provenance=args.provenance == "on")  # fmt: skip
    return 0

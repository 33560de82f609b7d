"""``mystyle-pl serve``: the browser app on a prior (the optional extra ``mystyle-pl[app]``)."""

from __future__ import annotations

import argparse

from ..app import serve
from ..errors import check_paths


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prior", required=True, metavar="PRIOR_DIR", help="the personal prior bundle folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 makes it public)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--share", action="store_true", help="also ask gradio for a public share link (opt-in)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="keep results (PNG + record.json per run) here; default: a temporary folder removed on exit")
    parser.add_argument("--preset", default=None, help="projection preset: quick, full, pplus, official (default: per task)")
    parser.add_argument("--steps", type=int, default=None, help="projection steps over the preset's")
    parser.add_argument("--faces", default="person", choices=["person", "all", "largest"],
                        help="which faces of a photo are processed (default: person, the prior's own)")


def _run_serve(args: argparse.Namespace) -> int:
    check_paths(inputs={"--prior": [args.prior]}, outputs={"--out": args.out})
    return serve(args.prior, host=args.host, port=args.port, device=args.device, share=args.share, out=args.out,
                 preset=args.preset, steps=args.steps, faces=args.faces)  # fmt: skip

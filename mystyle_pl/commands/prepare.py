"""``mystyle-pl prepare``: raw photos -> a curated, FFHQ-aligned album."""

from __future__ import annotations

import argparse
import json
import sys

from ..data.curate import CurationSettings
from ..data.faces import FaceModelsUnavailable
from ..data.prepare import PrepareError, prepare_album
from ..errors import UserError, describe_error


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    d = CurationSettings()
    parser.add_argument("--input", required=True, metavar="RAW_DIR", help="folder of photos (read only; sub-folders included)")
    parser.add_argument("--output", required=True, metavar="ALBUM_DIR", help="album folder: images/*.png + manifest.json")
    parser.add_argument("--resolution", type=int, default=1024, help="side of the aligned images in px (default: 1024)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count up to 8; 0 = none)")
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help=f"smallest face box accepted, px in the source photo (default: {d.min_face:.0f}); "
                             "lower it for small photos")  # fmt: skip
    parser.add_argument("--min-crop", type=float, default=None,
                        help="smallest crop region accepted, px in the source photo (default: 2.5 x --min-face)")
    parser.add_argument("--blur-threshold", type=float, default=d.blur_threshold,
                        help=f"reject faces whose variance of the Laplacian is below this (default: {d.blur_threshold:g}; 0 = off)")
    parser.add_argument("--identity-threshold", type=float, default=d.identity_threshold,
                        help=f"max descriptor distance to the album's identity (default: {d.identity_threshold:g})")
    parser.add_argument("--duplicate-threshold", type=float, default=d.duplicate_threshold,
                        help=f"descriptor distance below which photos are near-duplicates (default: {d.duplicate_threshold:g}; 0 = off)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the manifest's summary as JSON instead of text")


def _run_prepare(args: argparse.Namespace) -> int:
    curation = CurationSettings(
        min_face=args.min_face, min_crop=args.min_crop, blur_threshold=args.blur_threshold,
        identity_threshold=args.identity_threshold, duplicate_threshold=args.duplicate_threshold,
    )  # fmt: skip
    try:
        result = prepare_album(args.input, args.output, resolution=args.resolution, workers=args.workers,
                               curation=curation, progress=not args.no_progress)  # fmt: skip
    except (PrepareError, FaceModelsUnavailable) as e:
        raise UserError(describe_error(e)) from e
    if args.json:
        print(json.dumps({**result.manifest["summary"], "album": str(result.album_dir), "analysed": result.analysed,
                          "reused": result.reused, "written": result.aligned, "seconds": round(result.seconds, 2)}, indent=2))  # fmt: skip
    else:
        print(result.summary())
    if result.kept == 0:
        print(f"mystyle-pl: error: {result.album_dir}: no photo was kept; see the reasons in the manifest "
              "(e.g. lower --min-face for small photos)", file=sys.stderr)  # fmt: skip
        return 1
    return 0

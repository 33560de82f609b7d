"""``mystyle-pl verify IMAGE...``: what each image says about itself (Content Credentials, IPTC XMP,
the invisible watermark); see :mod:`mystyle_pl.provenance.verify`."""

from __future__ import annotations

import argparse
import json


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    parser.add_argument("--json", action="store_true", help="one JSON report per file (a JSON list) instead of one line each")
    parser.add_argument("--no-faces", action="store_true", help="read the watermark only as an aligned crop (no face search: faster)")
    parser.add_argument("--trust-anchors", default=None, metavar="PEM_FILE",
                        help="certificates to trust (PEM): a signer whose certificate chains to one of them is reported "
                             "trusted (default: $MYSTYLE_TRUST_ANCHORS, else none; the install key is never trusted "
                             "unless its own root is given)")  # fmt: skip


def _run_verify(args: argparse.Namespace) -> int:
    """One line (or JSON record) per file; a bad file is its own line and the next one is still checked.
    Exit status 0 when every file could be read, 1 when some could not."""
    from ..provenance.keys import trust_anchors  # lazy: c2pa, OpenCV and dlib load only for this command
    from ..provenance.verify import verify

    anchors = trust_anchors(args.trust_anchors)  # a bad file: one line naming it (a user error), before any image
    reports = []
    for path in args.images:
        report = verify(path, search_faces=not args.no_faces, trust_anchors=anchors)
        reports.append(report)
        if not args.json:
            print(report.verdict, flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    return 1 if any(r.error for r in reports) else 0

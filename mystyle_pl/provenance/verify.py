"""``mystyle-pl verify``: what a file says about itself, and whether it still says it truthfully.

For each file: the C2PA manifest (``absent`` / ``valid`` / ``altered`` after signing /
``invalid``), its signer and whether it is trusted (its certificate chains to one of the trust
anchors given: ``--trust-anchors`` / ``$MYSTYLE_TRUST_ANCHORS``; a mystyle-pl install key proves
that the file is unchanged since it was written, **not** who wrote it), its actions and digital
source type; the XMP ``DigitalSourceType``; the watermark (found or not, bits corrected, run id),
read from the pixels, so it answers even when the metadata was stripped, and when it is absent
from a file whose manifest says it was skipped (a crop under the minimum size), why. Every failure
(not a file, not an image, truncated, a forged manifest) is one line in the report, never an exception.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.io import ImageReadError, decode_image
from .keys import trust_anchors as read_trust_anchors
from .watermark import find_watermark
from .xmp import read_xmp, source_type_of

_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass
class VerifyReport:
    """The verdict on one file (``error``: why it could not be checked, None when it was)."""

    path: str
    error: str | None = None
    manifest: dict[str, Any] | None = None
    xmp_source_type: str | None = None
    watermark: dict[str, Any] | None = None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _short(uri: str | None) -> str | None:
    return uri.rsplit("/", 1)[-1] if uri else None


def verify(path: str | os.PathLike, search_faces: bool = True,
           trust_anchors: bytes | str | os.PathLike | None = None) -> VerifyReport:  # fmt: skip
    """Check one file (see the module docstring); ``trust_anchors``: PEM certificates, as bytes or a
    PEM file (None = ``$MYSTYLE_TRUST_ANCHORS``, else none). Never raises for a bad image file:
    ``report.error`` says why; a bad trust-anchor file raises ``ValueError`` / ``FileNotFoundError``
    naming it (:func:`~.keys.trust_anchors`)."""
    from . import manifest as c2pa_manifest  # lazy: c2pa's native library (see manifest's docstring)

    if not isinstance(trust_anchors, bytes):
        trust_anchors = read_trust_anchors(trust_anchors)

    report = VerifyReport(str(path))
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        report.error = "a folder, not an image file"
    except OSError as e:
        report.error = f"cannot read the file ({e.strerror or e})"
    if report.error is None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = _FORMATS.get(im.format or "", (im.format or "").lower())
                report.xmp_source_type = source_type_of(read_xmp(im))
            pixels = decode_image(data, name=str(path))
        except ImageReadError as e:
            report.error = e.reason
        except Exception as e:  # PIL's many ways of saying "not an image"
            report.error = f"not a readable image ({type(e).__name__}: {e})"
    if report.error is not None:
        report.verdict = f"{path}: cannot check: {report.error}"
        return report
    try:
        m = c2pa_manifest.read(data, fmt, trust_anchors=trust_anchors)
        report.manifest = asdict(m)
    except Exception as e:  # a forged structure the reader chokes on: still one line
        m = c2pa_manifest.ManifestReport("invalid", problems=[f"{type(e).__name__}: {e}"])
        report.manifest = asdict(m)
    try:
        report.watermark = find_watermark(pixels, search_faces=search_faces).to_dict()
    except Exception as e:  # the face models missing, ...: the rest of the report still stands
        report.watermark = {"found": False, "error": f"{type(e).__name__}: {e}"}
    written = (m.generation or {}).get("watermark") if m.state == "valid" else None
    if written and str(written).startswith("skipped") and not report.watermark.get("found"):
        report.watermark["skipped"] = str(written)  # the manifest says why the file carries no mark
    report.verdict = f"{path}: {_verdict(report, m)}"
    return report


def _verdict(report: VerifyReport, m) -> str:
    parts = []
    if m.state == "absent":
        parts.append("no Content Credentials")
    elif m.state == "valid":
        who = m.signer or "unknown signer"
        trust = "trusted (chains to a trust anchor)" if m.trusted else (
            "untrusted (install key: proves the file is unchanged since written, not who wrote it)"
            if m.install_key else "untrusted (chains to no trust anchor given: --trust-anchors)")  # fmt: skip
        parts.append(f"Content Credentials valid ({', '.join(a for a in m.actions if a)}; {_short(m.source_type)}; "
                     f"signed by {who}, {trust})")  # fmt: skip
    elif m.state == "altered":
        parts.append("Content Credentials ALTERED: the file was changed after it was signed")
    else:
        parts.append(f"Content Credentials INVALID ({m.problems[0] if m.problems else 'unreadable'})")
    parts.append(f"XMP source type {_short(report.xmp_source_type)}" if report.xmp_source_type else "no XMP source type")
    wm = report.watermark or {}
    if wm.get("found"):
        parts.append(f"mystyle-pl watermark found (run {wm['run_id']}, {wm['corrected_bits']} bit(s) corrected, in the {wm['where']})")
    elif wm.get("error"):
        parts.append(f"watermark not checked ({wm['error']})")
    elif wm.get("skipped"):
        parts.append(f"no mystyle-pl watermark (skipped when written: {wm['skipped'].removeprefix('skipped: ')})")
    else:
        parts.append("no mystyle-pl watermark")
    return "; ".join(parts)


def verify_paths(paths, search_faces: bool = True,
                 trust_anchors: bytes | str | os.PathLike | None = None) -> list[VerifyReport]:  # fmt: skip
    """:func:`verify` each path in turn (a bad one never stops the next)."""
    if not isinstance(trust_anchors, bytes):
        trust_anchors = read_trust_anchors(trust_anchors)  # read once, not per file
    return [verify(p, search_faces=search_faces, trust_anchors=trust_anchors) for p in paths]


__all__ = ["VerifyReport", "verify", "verify_paths"]

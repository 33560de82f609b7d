"""The numbers of an evaluation over many images: :func:`aggregate` (mean / spread of every metric of one
method on one condition) and :func:`input_dependence` (do results differ as their photos do?).

Records are the per-image dicts :meth:`~.session._Evaluation.records_for` makes (or ``metrics.json``
stores); keys starting with ``_`` stay in memory and are left out of files (:func:`_public`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..metrics.identity import IdentityScore, summarize
from ..metrics.identity import _stats as stats
from ..metrics.image import psnr


def _floats(values) -> list[float | None]:
    if values is None:
        return []
    return [None if v is None else float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def aggregate(records: list[dict]) -> dict:
    """Mean/std/min/max/n of LPIPS, PSNR, SSIM, consistency (dB), steps used, seconds per image, the
    watermark's PSNR cost (dB; n = 0 when nothing was marked) and the identity summary over a method's records (records as :meth:`_Evaluation.records_for` makes them,
    or as ``metrics.json`` stores them; files of version 1 have no consistency / steps / seconds)."""
    return {
        "n": len(records),
        "lpips": stats([r["lpips"] for r in records]),
        "psnr": stats([r["psnr"] for r in records]),
        "ssim": stats([r["ssim"] for r in records]),
        "consistency": stats([r.get("consistency") for r in records]),
        "steps_used": stats([r.get("steps_used") for r in records]),
        "seconds": stats([r.get("seconds") for r in records]),
        "mark_psnr": stats([r.get("mark_psnr") for r in records]),
        "identity": summarize([r["_score"] if "_score" in r else _score_of(r) for r in records]),
    }


def input_dependence(truths: torch.Tensor, results: dict[str, torch.Tensor]) -> dict | None:
    """Do results of different photos differ as the photos do? Over every pair of photos ``(i, j)``:
    the PSNR between their ground truths and, per method, between their results (all ``[N, 3, E, E]``).

    Returns ``None`` for fewer than 2 photos, else ``{"pairs", "truth_psnr", "methods": {method:
    {"psnr", "gap_db", "corr"}}}``: ``psnr`` the mean pairwise PSNR of the results, ``gap_db`` its excess
    over the truths' (near 0: the results differ as the photos do; large: they look alike whatever the
    input), ``corr`` the correlation over pairs of the two PSNRs (>= 3 pairs, else None).

    >>> t = torch.stack([torch.full((3, 4, 4), v) for v in (-0.5, 0.0, 0.5)])
    >>> d = input_dependence(t, {"copy": t, "same": torch.zeros_like(t)})
    >>> d["pairs"], d["methods"]["copy"]["gap_db"], d["methods"]["same"]["psnr"]
    (3, 0.0, None)
    """
    n = truths.shape[0]
    if n < 2:
        return None
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    a, b = [i for i, _ in pairs], [j for _, j in pairs]

    def pairwise(x: torch.Tensor) -> list[float]:
        return _floats(psnr(x[a].float(), x[b].float()))

    def mean(values: list[float]) -> float | None:
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if len(finite) == len(values) else None  # identical results: inf, no mean

    truth = pairwise(truths)
    out: dict[str, Any] = {"pairs": len(pairs), "truth_psnr": mean(truth), "methods": {}}
    for method, images in results.items():
        values = pairwise(images)
        m = mean(values)
        corr = None
        spread = len(pairs) >= 3 and np.std(values) > 0 and np.std(truth) > 0
        if spread and m is not None and out["truth_psnr"] is not None:
            corr = float(np.corrcoef(values, truth)[0, 1])
        gap = None if m is None or out["truth_psnr"] is None else round(m - out["truth_psnr"], 4)
        out["methods"][method] = {"psnr": m, "gap_db": gap, "corr": corr}
    return out


def _score_of(r: dict) -> IdentityScore:
    def value(key: str) -> float:
        return math.nan if r.get(key) is None else float(r[key])

    return IdentityScore(
        found=bool(r["id_found"]),
        cos_gt=value("id_cos_gt"),
        dist_gt=value("id_dist_gt"),
        cos_centre=value("id_cos_centre"),
        dist_centre=value("id_dist_centre"),
    )


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}

"""The evaluation on W&B: summary / per-image / input-dependence / beta-sweep tables, the sweep plot and the strips.

:func:`make_wandb_logger` makes an offline-unless-a-key-is-set logger; :func:`log_to_wandb` logs a
finished run (the content of ``metrics.json`` and the strips written) to any logger with
``log_table`` and ``log_image``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .report import _finite


def make_wandb_logger(out: Path, name: str, project: str = "mystyle-pl"):
    """An :class:`~mystyle_pl.tuning.loggers.AutoWandbLogger` writing under ``out`` (offline unless a key is set)."""
    # lazy: mystyle_pl.tuning imports Lightning (~1.5 s), which `mystyle-pl --help` and runs without W&B never need
    from ..tuning.loggers import AutoWandbLogger

    return AutoWandbLogger(project=project, name=name, save_dir=str(out), job_type="evaluate")


def log_to_wandb(logger, metrics: dict, strips: dict[str, list[tuple[str, Path]]], out: Path, max_strips: int) -> None:
    """The per-condition tables, the sweep and the strips as W&B tables and images."""
    columns = [
        "condition",
        "method",
        "n",
        "faces_found",
        "id_cos_gt",
        "id_dist_gt",
        "same_person_gt",
        "id_dist_centre",
        "same_person_centre",
        "lpips",
        "psnr",
        "ssim",
        "consistency",
        "steps_used",
        "seconds",
    ]
    rows = []
    for c, per in metrics["aggregates"].items():
        for m, a in per.items():
            i = a["identity"]
            rows.append(
                [
                    c,
                    m,
                    a["n"],
                    i["faces_found"],
                    i["cos_gt"]["mean"],
                    i["dist_gt"]["mean"],
                    i["same_person_gt"],
                    i["dist_centre"]["mean"],
                    i["same_person_centre"],
                    a["lpips"]["mean"],
                    a["psnr"]["mean"],
                    a["ssim"]["mean"],
                    (a.get("consistency") or {}).get("mean"),
                    (a.get("steps_used") or {}).get("mean"),
                    (a.get("seconds") or {}).get("mean"),
                ]
            )
    logger.log_table("evaluate/summary", columns=columns, data=_finite(rows))
    record_cols = [
        "condition",
        "method",
        "photo",
        "lpips",
        "psnr",
        "ssim",
        "id_found",
        "id_cos_gt",
        "id_dist_gt",
        "id_cos_centre",
        "id_dist_centre",
        "consistency",
        "steps_used",
        "seconds",
    ]
    logger.log_table(
        "evaluate/records",
        columns=record_cols,
        data=_finite([[r.get(k) for k in record_cols] for r in metrics["records"]]),
    )
    dependence = metrics.get("input_dependence") or {}
    if dependence:
        logger.log_table(
            "evaluate/input_dependence",
            columns=["condition", "method", "pairs", "truth_psnr", "psnr", "gap_db", "corr"],
            data=_finite([[c, m, d["pairs"], d["truth_psnr"], v["psnr"], v["gap_db"], v["corr"]]
                          for c, d in dependence.items() for m, v in d["methods"].items()]),
        )  # fmt: skip
    sweep = metrics.get("beta_sweep")
    if sweep and sweep.get("points"):
        logger.log_table(
            "evaluate/beta_sweep",
            columns=["beta", "id_cos_gt", "id_dist_gt", "lpips"],
            data=_finite([[p["beta"], p["id_cos_gt"], p["id_dist_gt"], p["lpips"]] for p in sweep["points"]]),
        )
        if sweep.get("plot"):
            logger.log_image(
                "evaluate/beta_sweep_plot", images=[np.asarray(Image.open(out / sweep["plot"]).convert("RGB"))]
            )
    for c, items in strips.items():
        items = items[:max_strips]
        if items:
            logger.log_image(
                f"evaluate/strips/{c}",
                images=[np.asarray(Image.open(p).convert("RGB")) for _, p in items],
                caption=[n for n, _ in items],
            )

"""The evaluation run: :func:`evaluate` checks the options, loads the prior, the photos and the models,
restores every condition with every method (:class:`_Evaluation`), measures, runs the beta sweep and
writes ``metrics.json``, ``report.md``, the strips and optionally a W&B run.

See :mod:`mystyle_pl.evaluate` (the public entry point) for the conditions, methods and metrics.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.io import to_uint8, write_bytes_atomic, write_image
from ..metrics.identity import IdentityScore, IdentityScorer, album_centre, summarize
from ..metrics.identity import _stats as stats
from ..metrics.image import lpips_distance, psnr, ssim
from ..space import DEFAULT_BETA
from ..tasks.colorize import luminance
from ..tasks.consistency import consistency_psnr
from ..tasks.generic import generic_task
from ..tasks.presets import DEFAULT_PRESET, task_settings
from ..tasks.projection import ProjectionSettings
from ..tasks.superres import Downsample, area_downsample
from .degradations import EYES_BOX, MOUTH_BOX, BlindDegradation, _nearest, bicubic, box_mask, fill_holes, irregular_mask
from .inputs import (
    CONDITION_TASKS,
    CONDITIONS,
    DEFAULT_BETAS,
    DEFAULT_TASKS,
    METHODS,
    Condition,
    Photo,
    _held_out_from_prior,
    _load_pairs,
    _load_photos,
    condition_kind,
    expand_tasks,
    list_photos,
    methods_for,
    parse_betas,
)
from .report import _beta_text, _finite, _method_label, _pm, _share, make_strip, plot_tradeoff, write_report
from .wandb_log import log_to_wandb, make_wandb_logger

log = logging.getLogger("mystyle_pl.evaluate")  # the public module's logger: the CLI sets its level

FORMAT = "mystyle_pl.evaluation"
VERSION = 2  # 2: personal-raw, the invert condition, consistency / steps_used / seconds, input dependence


@dataclass
class EvaluationResult:
    out: Path  # the output folder
    report: Path  # report.md
    metrics_path: Path  # metrics.json
    metrics: dict  # the content of metrics.json
    strips: list[Path]  # every strip written


@dataclass
class Restored:
    """What one method made of one condition (every photo), and what it cost."""

    images: torch.Tensor  # [N, 3, E, E] the result that is measured against the truth (CPU)
    consistency: list[float | None]  # per photo: PSNR (dB) of D(result) against the input at the input's size
    # (inpainting: G(ws) on the known pixels, before blending); None where it means nothing (inpainting baseline)
    steps_used: list[int]  # per photo: projection steps of its batch (0 for the baseline)
    seconds: list[float]  # per photo: wall seconds of its batch / the batch size
    raw: torch.Tensor | None = None  # super-resolution: the projection before back-projection [N, 3, E, E]
    raw_consistency: list[float | None] | None = None  # its consistency (dB)


def projection_settings(
    preset: str = DEFAULT_PRESET,  # a name of mystyle_pl.tasks.presets.PRESETS
    settings: ProjectionSettings | None = None,  # replaces the preset's values (the overrides still apply)
    progress: bool = False,  # each projection's bar (steps, loss)
    **overrides,  # ProjectionSettings fields; None = the preset's (or settings') value
) -> ProjectionSettings:
    """The projection settings ``evaluate`` runs with: :func:`~mystyle_pl.tasks.presets.task_settings` of
    ``preset`` (the budgets ``predict``, the demo and Python share) with the non-None ``overrides``."""
    base = task_settings(preset) if settings is None else settings
    task_settings(preset, **overrides)  # unknown fields fail here, with the list of known ones
    values = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **values, progress=bool(progress))


def _floats(values) -> list[float | None]:
    if values is None:
        return []
    return [None if v is None else float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square images to ``size`` px: area when shrinking, bicubic when growing, unchanged at ``size``."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return area_downsample(images, size)
    return bicubic(images, size)


class _Evaluation:
    """State of one run (kept internal: :func:`evaluate` is the interface)."""

    def __init__(
        self,
        prior,  # the PersonalPrior (on its device)
        generic,  # the untuned generator, or None (no generic column)
        out: Path,  # output folder
        resolution: int,  # E
        settings: ProjectionSettings,  # the projection budget of both priors
        lpips,  # LPIPS of the projection loss (None: lpips_weight is 0)
        metric_lpips,  # LPIPS of the metric
        lpips_net: str,  # its name, for the functional fallback
        identity: IdentityScorer,  # descriptors + scores
        batch_size: int,  # images projected at once
        seed: int,  # degradations, irregular mask, blind operator noise
        blind: BlindDegradation,  # the synthetic blind degradation
        blind_factor: int,  # blind/real observation down-sampling
        generic_lr: float | None,  # generic W+ learning rate (None: the settings' w_lr)
        generic_conditions: set[str] | None = None,  # conditions the generic prior runs on; None = all
    ) -> None:
        self.prior, self.generic, self.out, self.E, self.settings = prior, generic, out, resolution, settings
        self.lpips, self.metric_lpips, self.lpips_net, self.identity = lpips, metric_lpips, lpips_net, identity
        self.batch_size, self.seed, self.blind, self.blind_factor = batch_size, seed, blind, blind_factor
        self.generic_lr = generic_lr if generic_lr is not None else settings.w_lr
        self.generic_conditions = generic_conditions
        self.R = int(prior.generator.img_resolution)
        self.device = prior.generator.w_avg.device
        self.baseline_names: dict[str, str] = {}
        self.gt_descriptors: dict[tuple[str, str], np.ndarray | None] = {}
        # what the run accumulates
        self.built: dict[str, Condition] = {}
        self.cond_info: dict[str, dict] = {}
        self.records: list[dict] = []
        self.aggregates: dict[str, dict] = {}
        self.timing: dict[str, dict[str, float]] = {}
        self.strips: dict[str, list[tuple[str, Path]]] = {}
        self.personal: dict[str, tuple[float | None, list[dict]]] = {}  # condition -> (beta, records)
        self.dependence: dict[str, dict] = {}  # condition -> input dependence (see input_dependence)

    # ---------------------------------------------------------------- conditions

    def _at_eval(self, images: torch.Tensor) -> torch.Tensor:
        return _resize(images, self.E)

    def _at_gen(self, images: torch.Tensor) -> torch.Tensor:
        return _resize(images, self.R)

    def methods(self, name: str, methods: Sequence[str]) -> list[str]:
        """The methods run on condition ``name`` (:func:`~.inputs.methods_for`, generic where asked)."""
        out = methods_for(condition_kind(name), methods)
        if self.generic_conditions is not None and name not in self.generic_conditions:
            out = [m for m in out if m != "generic"]
        return out

    def build(self, name: str, photos: list[Photo]) -> Condition:
        names = [p.name for p in photos]
        full = torch.stack([p.image for p in photos])
        gt = self._at_eval(full)
        if name == "invert":  # D = identity: the truth itself at the generator's resolution
            return Condition(name, "invert", names, gt, self._at_gen(full), gt)
        if name == "colorize":  # D = RGB -> luminance, at the generator's resolution
            gray = luminance(self._at_gen(full))
            return Condition(name, "colorize", names, gt, gray, self._at_eval(gray))
        if name.startswith("superres-x"):
            factor = int(name.split("x")[-1])
            observed = area_downsample(gt, self.E // factor)
            return Condition(name, "superres", names, gt, observed, _nearest(observed, self.E), factor=factor)
        if name == "blind":
            degraded, params = [], {}
            for p, g in zip(photos, gt):
                d, params[p.name] = self.blind(g[None], self.seed, p.name)
                degraded.append(d)
            degraded = torch.cat(degraded)
            observed = area_downsample(degraded, self.E // self.blind_factor)
            return Condition(
                name, "blind", names, gt, observed, degraded, factor=self.blind_factor, extra={"degradation": params}
            )
        if name == "real":
            degraded = self._at_eval(torch.stack([p.degraded for p in photos]))
            observed = area_downsample(degraded, self.E // self.blind_factor)
            return Condition(name, "blind", names, gt, observed, degraded, factor=self.blind_factor)
        if name.startswith("inpaint-"):
            which = name.split("-", 1)[1]
            if which == "eyes":
                mask = box_mask(EYES_BOX, self.R)
            elif which == "mouth":
                mask = box_mask(MOUTH_BOX, self.R)
            else:
                mask = irregular_mask(self.R, seed=self.seed)
            full_r = self._at_gen(full)
            shown = self._at_eval(full_r * mask)
            hole = float(1 - mask.mean())
            return Condition(
                name,
                "inpaint",
                names,
                gt,
                full_r * mask,
                shown,
                full=full_r,
                mask=mask,
                extra={"hole_fraction": round(hole, 4)},
            )
        raise ValueError(f"unknown condition {name!r}")

    # ---------------------------------------------------------------- methods

    def _task(self, method: str, cond: Condition, beta: float | None):
        """The task object of ``cond`` (:data:`~.inputs.CONDITION_TASKS`), bound to the personal or the
        generic prior, with the run's projection settings."""
        kwargs: dict[str, Any] = {}
        if cond.kind in ("superres", "blind"):
            kwargs = {"blind": cond.kind == "blind", "seed": self.seed}
            if self.E != self.R:
                kwargs["output_resolution"] = self.E
        task = CONDITION_TASKS[cond.kind](projection=self.settings, beta=beta, **kwargs)
        if method == "personal":
            return task.bind(self.prior, lpips=self.lpips)
        return generic_task(task, self.generic, settings=self.settings, lpips=self.lpips, w_lr=self.generic_lr)

    def operator(self, cond: Condition):
        """``D`` of a super-resolution / blind condition at ``E`` without noise: what the tasks assume
        (:meth:`~mystyle_pl.tasks.superres.SuperResolve.operator`: blind = a Gaussian blur of
        ``0.5 x factor`` px, then area down-sampling to the input's size)."""
        size = cond.observed.shape[-1]
        return Downsample(size, blur_sigma=0.5 * cond.factor if cond.kind == "blind" else 0.0)

    def restore(self, method: str, cond: Condition, beta: float | None = None, bar=None) -> Restored:
        """What ``method`` makes of ``cond``: the results ``[N, 3, E, E]`` (CPU), their consistency with
        the input, steps and seconds per photo (the personal super-resolution also its raw projection)."""
        n = len(cond.photos)
        if method == "baseline":
            t0 = time.perf_counter()
            consistency: list[float | None]
            if cond.kind == "inpaint":  # the known pixels are the input's by construction: nothing to measure
                filled, self.baseline_names["inpaint"] = fill_holes(cond.full, cond.mask)
                out, consistency = self._at_eval(filled), [None] * n
            elif cond.kind == "invert":
                raise ValueError("inversion has no baseline (its input is the truth)")
            elif cond.kind == "colorize":  # no prior, no colour: the gray input itself (consistent by construction)
                self.baseline_names["colorize"] = "gray"
                out, consistency = self._at_eval(cond.observed), [None] * n
            else:
                self.baseline_names[cond.kind] = "bicubic"
                out = bicubic(cond.observed, self.E)
                consistency = _floats(consistency_psnr(out, cond.observed, self.operator(cond)))
            seconds = (time.perf_counter() - t0) / n
            if bar is not None:
                bar.update(n)
            return Restored(out.cpu(), consistency, [0] * n, [round(seconds, 4)] * n)
        task = self._task(method, cond, beta)
        outs, raws, cons, raw_cons, steps, seconds = [], [], [], [], [], []
        for i in range(0, n, self.batch_size):
            batch = cond.observed[i : i + self.batch_size].to(self.device)
            t0 = time.perf_counter()
            if cond.kind == "inpaint":
                full = cond.full[i : i + self.batch_size].to(self.device)
                result = task(full, cond.mask.to(self.device))
                images = result.blended
            else:
                result = task(batch)
                images = result.images
            dt = (time.perf_counter() - t0) / batch.shape[0]
            outs.append(self._at_eval(images.detach()).cpu())
            cons += _floats(result.consistency)
            if getattr(result, "raw", None) is not None:
                raws.append(self._at_eval(result.raw.detach()).cpu())
                raw_cons += _floats(result.raw_consistency)
            steps += [int(result.steps_used)] * batch.shape[0]
            seconds += [round(dt, 4)] * batch.shape[0]
            if bar is not None:
                bar.update(batch.shape[0])
        return Restored(
            torch.cat(outs), cons, steps, seconds,
            raw=torch.cat(raws) if raws else None, raw_consistency=raw_cons if raws else None,
        )  # fmt: skip

    # ---------------------------------------------------------------- metrics

    def gt_descriptor(self, cond: Condition, index: int):
        key = ("pairs" if cond.name == "real" else "photos", cond.photos[index])
        if key not in self.gt_descriptors:
            self.gt_descriptors[key] = self.identity.describe(to_uint8(cond.gt[index : index + 1])[0])
        return self.gt_descriptors[key]

    def measure(self, cond: Condition, images: torch.Tensor) -> list[dict]:
        """One record per image: LPIPS, PSNR, SSIM and the identity scores."""
        gt = cond.gt.to(images)
        lp = []
        for i in range(0, images.shape[0], self.batch_size):
            x, y = images[i : i + self.batch_size].to(self.device), gt[i : i + self.batch_size].to(self.device)
            lp.append(lpips_distance(x, y, self.metric_lpips, self.lpips_net).cpu())
        lp = torch.cat(lp)
        ps, ss = psnr(images, gt), ssim(images, gt)
        records = []
        for i, name in enumerate(cond.photos):
            score = self.identity.score(to_uint8(images[i : i + 1])[0], self.gt_descriptor(cond, i))
            records.append(
                {
                    "condition": cond.name,
                    "method": None,
                    "photo": name,
                    "lpips": float(lp[i]),
                    "psnr": float(ps[i]),
                    "ssim": float(ss[i]),
                    **{f"id_{k}": v for k, v in score.to_dict().items() if k != "threshold"},
                    "_score": score,
                }
            )
        return records

    def records_for(self, cond: Condition, method: str, restored: Restored) -> list[dict]:
        """:meth:`measure` of ``restored`` plus its consistency, steps and seconds per photo."""
        records = self.measure(cond, restored.images)
        for r, c, k, t in zip(records, restored.consistency, restored.steps_used, restored.seconds):
            r.update(method=method, consistency=c, steps_used=k, seconds=t)
        return records

    # ---------------------------------------------------------------- the run

    def condition(self, name: str, photos: list[Photo]) -> Condition:
        """The condition ``name`` over ``photos``, built once."""
        if name not in self.built:
            cond = self.build(name, photos)
            self.built[name] = cond
            self.cond_info[name] = {
                "kind": cond.kind,
                "description": CONDITIONS[name],
                "photos": cond.photos,
                "factor": cond.factor,
                **cond.extra,
            }
        return self.built[name]

    def run_condition(self, name: str, photos: list[Photo], methods: list[str], beta: float | None, bar) -> None:
        """Restore ``name`` with every method that applies, measure, aggregate, write the strips.
        ``personal-raw`` is the personal projection's raw result: taken from the same projection."""
        cond = self.condition(name, photos)
        methods = self.methods(name, methods)
        results: dict[str, torch.Tensor] = {}
        done: dict[str, Restored] = {}
        self.aggregates[name], self.timing[name] = {}, {}
        for method in methods:
            bar.set_description(f"{name} · {method}")
            t0 = time.time()
            if method == "personal-raw":  # the same projection as "personal" (projected once)
                src = done.get("personal") or self.restore("personal", cond, beta=beta, bar=bar)
                restored = Restored(src.raw, src.raw_consistency, src.steps_used, src.seconds)
            else:
                restored = done[method] = self.restore(method, cond, beta=beta, bar=bar)
            self.timing[name][method] = round(time.time() - t0, 2)
            t0 = time.time()
            records = self.records_for(cond, method, restored)
            self.timing[name][f"{method}_metrics"] = round(time.time() - t0, 2)
            results[method] = restored.images
            self.records.extend(records)
            a = self.aggregates[name][method] = aggregate(records)
            if method == "personal":
                self.personal[name] = (beta, records)
            log.info(
                "%s · %-12s  ID dist %s  same %s  faces %d/%d  LPIPS %s  PSNR %s  SSIM %s  consistency %s dB  "
                "%s steps  %s s/img  (%.1fs + %.1fs metrics)",
                name,
                method,
                _pm(a["identity"]["dist_gt"]),
                _share(a["identity"]["same_person_gt"]),
                a["identity"]["faces_found"],
                a["n"],
                _pm(a["lpips"]),
                _pm(a["psnr"], 2),
                _pm(a["ssim"]),
                _pm(a["consistency"], 1),
                _pm(a["steps_used"], 0),
                _pm(a["seconds"], 1),
                self.timing[name][method],
                self.timing[name][f"{method}_metrics"],
            )
        self.dependence[name] = input_dependence(cond.gt, results)
        first = {"superres": f"input x{cond.factor}", "blind": "degraded", "inpaint": "masked", "invert": "input",
                 "colorize": "gray"}[
            cond.kind
        ]
        labels = [first, *[_method_label(m, self.baseline_names, cond.kind) for m in methods], "ground truth"]
        self.strips[name] = []
        for i, photo in enumerate(cond.photos):
            tiles = [cond.shown[i : i + 1], *[results[m][i : i + 1] for m in methods], cond.gt[i : i + 1]]
            path = write_image(self.out / "strips" / name / f"{photo}.png", make_strip(tiles, labels))
            self.strips[name].append((photo, path))

    def sweep(self, name: str, photos: list[Photo], betas: list, beta: float | None, progress: bool) -> dict:
        """The personal prior on condition ``name`` at each beta; the plot and its points."""
        cond = self.condition(name, photos)
        points = []
        for b in tqdm(betas, desc=f"beta sweep ({name})", disable=not progress):
            cached = self.personal.get(name)
            if cached is not None and cached[0] == b:
                records = cached[1]
            else:
                records = self.records_for(cond, "personal", self.restore("personal", cond, beta=b))
            a = aggregate(records)
            points.append(
                {
                    "beta": b,
                    "lpips": a["lpips"]["mean"],
                    "id_cos_gt": a["identity"]["cos_gt"]["mean"],
                    "id_dist_gt": a["identity"]["dist_gt"]["mean"],
                    "aggregate": a,
                    "records": [{**_public(r), "beta": b} for r in records],
                }
            )
            log.info("beta %s: ID cos %s  LPIPS %s", _beta_text(b), _pm(a["identity"]["cos_gt"]), _pm(a["lpips"]))
        reference = None
        generic = self.aggregates.get(name, {}).get("generic")
        if generic is not None:
            reference = {
                "lpips": generic["lpips"]["mean"],
                "id_cos_gt": generic["identity"]["cos_gt"]["mean"],
                "label": "generic (W+)",
            }
        plot = plot_tradeoff(points, self.out / "beta_sweep.png", reference)
        return {
            "condition": name,
            "points": points,
            "plot": plot.relative_to(self.out).as_posix(),
            "generic": reference,
        }

    def ground_truth_identity(self) -> dict[str, dict]:
        """Each ground truth's identity against the album centre (held-out photos, then pairs)."""
        out = {}
        held = next((c for n, c in self.built.items() if n != "real"), None)
        for cond, suffix in ((held, ""), (self.built.get("real"), " (pair)")):
            if cond is not None:
                for i, name in enumerate(cond.photos):
                    out[name + suffix] = self.identity.score_descriptor(self.gt_descriptor(cond, i)).to_dict()
        return out


def aggregate(records: list[dict]) -> dict:
    """Mean/std/min/max/n of LPIPS, PSNR, SSIM, consistency (dB), steps used, seconds per image and the
    identity summary over a method's records (records as :meth:`_Evaluation.records_for` makes them,
    or as ``metrics.json`` stores them; files of version 1 have no consistency / steps / seconds)."""
    return {
        "n": len(records),
        "lpips": stats([r["lpips"] for r in records]),
        "psnr": stats([r["psnr"] for r in records]),
        "ssim": stats([r["ssim"] for r in records]),
        "consistency": stats([r.get("consistency") for r in records]),
        "steps_used": stats([r.get("steps_used") for r in records]),
        "seconds": stats([r.get("seconds") for r in records]),
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


def _resolve_generic(prior, generic, device):
    """(generator or None, a note for the report)."""
    from ..generators import Generator

    if isinstance(generic, Generator):
        return _compatible(generic.to(device).eval(), prior, "the given generator")
    source = generic if generic is not None else prior.info.get("generator_source")
    if not source:
        return None, "none (the prior names no generator_source; pass --generic GENERATOR)"
    from .. import load_generator

    try:
        g = load_generator(source).to(device).eval()
    except Exception as e:  # noqa: BLE001 - any failure leaves the column out, with the reason in the report
        log.warning("generic prior %s unavailable: %s", source, e)
        return None, f"none ({source} could not be loaded: {str(e).splitlines()[0]})"
    return _compatible(g, prior, f"`{source}` (untuned)")


def _compatible(g, prior, note: str):
    p = prior.generator
    if (g.num_ws, g.w_dim, int(g.img_resolution)) != (p.num_ws, p.w_dim, int(p.img_resolution)):
        return None, (
            f"none (the generic generator is {g.img_resolution} px, num_ws={g.num_ws}, w_dim={g.w_dim}; "
            f"the prior's is {p.img_resolution} px, num_ws={p.num_ws}, w_dim={p.w_dim})"
        )
    return g, note


def evaluate(
    prior,  # a PersonalPrior or the path of a prior folder
    photos=None,  # held-out photos: a folder, a file, or a list of them (aligned crops or raw photos)
    tasks=DEFAULT_TASKS,  # conditions or groups (invert, superres, inpaint, blind), list or "a,b"
    out: str | os.PathLike = "evaluation",  # output folder (report.md, metrics.json, strips/, beta_sweep.png)
    pairs: Sequence = (),  # real degraded photos with a ground truth: "DEGRADED:GT", (degraded, gt) or a folder
    methods: Sequence[str] | str = METHODS,  # any of personal, personal-raw, generic, baseline (list or "a,b")
    generic=None,  # the untuned generator (Generator, asset name or path); None = prior.info["generator_source"]
    resolution: int | None = None,  # evaluation resolution E (px): ground truth, metrics, SR factors; must divide
    # the generator's resolution R; None = min(256, R)
    preset: str = DEFAULT_PRESET,  # projection budget of both priors (mystyle_pl.tasks.presets: quick, full, pplus,
    # official), the one shared with predict, the demo and Python; the options below left None keep its values
    steps: int | None = None,  # projection steps (both priors)
    patience: int | None = None,  # early stopping patience in steps (both priors)
    lr: float | None = None,  # personal P+ learning rate on the anchors' coefficients (method "pplus")
    generic_lr: float | None = None,  # generic W+ learning rate; None = the settings' w_lr
    lr_rampdown: float | None = None,  # cosine lr decay over this final fraction of the steps (both priors)
    delta_prox: bool | None = None,  # personal P+: the offsets' penalty by a proximal step (False = official optimiser)
    loss_resolution: int | None = None,  # projection loss resolution (px); 0 = the observation's
    generic_tasks=None,  # conditions (or groups) the generic prior runs on; None = every condition
    beta: float | None = DEFAULT_BETA,  # the personal space's dilation for the main comparison
    betas=DEFAULT_BETAS,  # beta sweep values (None/empty = no sweep)
    sweep_task: str = "superres-x16",  # the condition the sweep runs on
    seed: int = 0,  # seeds the blind degradations, the irregular mask and the blind operator's noise
    blind: BlindDegradation | None = None,  # the synthetic blind degradation; None = BlindDegradation()
    blind_factor: int = 8,  # blind/real inputs are restored from a copy area-down-sampled by this factor
    batch_size: int | None = None,  # images projected at once; None = 4 on a GPU, 1 on a CPU (faster per image there)
    max_photos: int | None = None,  # use at most this many held-out photos (sorted by name)
    album_refs=None,  # reference photos for the identity centre when the prior's album manifest is unreachable
    identity: IdentityScorer | None = None,  # face descriptor + scoring; None = dlib through FaceAnalyzer
    lpips=None,  # LPIPS module of the projection loss; None = LPIPS("alex") (official)
    metric_lpips=None,  # LPIPS module of the metric; None = the pretrained lpips_net
    lpips_net: str = "vgg",  # the metric's LPIPS trunk when metric_lpips is None (the loss uses AlexNet)
    align: str = "auto",  # held-out photos: "auto" (square = aligned crop), "always", "never"
    settings: ProjectionSettings | None = None,  # replaces the preset's values (the options above still override)
    device: str | torch.device | None = None,  # None = CUDA when available, else CPU
    logger=None,  # W&B-like logger (log_table, log_image); "wandb" = an offline-unless-key AutoWandbLogger
    progress: bool = True,  # progress bars: the run's (images) and each projection's (steps, loss)
    max_strips: int = 6,  # strips shown per condition in report.md (all are written)
) -> EvaluationResult:
    """Run the evaluation and write ``report.md``, ``metrics.json``, ``strips/`` and the sweep plot into ``out``."""
    from ..prior import PersonalPrior

    t_start = time.time()
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if batch_size is None:  # measured: on a 2-core CPU one image per step is the fastest per image
        batch_size = 4 if torch.device(device).type == "cuda" else 1
    batch_size = max(1, int(batch_size))
    prior_dir = None
    if not isinstance(prior, PersonalPrior):
        prior_dir = Path(prior)
        prior = PersonalPrior.load(prior_dir, device=device)
    else:
        prior.to(device)
    R = int(prior.generator.img_resolution)
    E = int(resolution) if resolution else min(256, R)
    methods, conditions, betas = _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor)
    generic_conditions = set(expand_tasks(generic_tasks)) if generic_tasks is not None else None
    out = Path(out)
    files, pair_specs = list_photos(photos), list(pairs or [])
    if not files and not pair_specs and prior_dir is not None:
        files = _held_out_from_prior(prior)
    _check_out(out, files, prior_dir)
    files = files[: int(max_photos)] if max_photos is not None else files

    settings = projection_settings(
        preset, settings, progress=progress, steps=steps, patience=patience, lr=lr, lr_rampdown=lr_rampdown,
        delta_prox=delta_prox, resolution=loss_resolution,
    )  # fmt: skip
    projecting = {"personal", "personal-raw", "generic"} & set(methods)
    if lpips is None and settings.lpips_weight > 0 and projecting:
        from ..losses import LPIPS

        lpips = LPIPS("alex")
    lpips = lpips.to(device) if lpips is not None else None
    if metric_lpips is None:
        from ..losses import LPIPS

        metric_lpips = LPIPS(lpips_net)
    metric_lpips = metric_lpips.to(device)
    min_size = int(getattr(metric_lpips, "min_input_size", 1))
    if min_size > E:
        raise ValueError(f"resolution {E} is below the LPIPS metric's smallest input ({min_size} px)")
    identity = identity if identity is not None else IdentityScorer()
    notes: list[str] = []
    centre_note = "given"
    if identity.centre is None:
        identity.centre, centre_note = album_centre(prior, refs=album_refs, scorer=identity, prior_dir=prior_dir)
    log.info("identity centre: %s", centre_note)

    generic_g, generic_note = None, "not evaluated"
    if "generic" in methods:
        generic_g, generic_note = _resolve_generic(prior, generic, device)
        if generic_g is None:
            methods = [m for m in methods if m != "generic"]
            notes.append(f"The generic prior is left out: {generic_note}.")

    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    held = _load_photos(files, max(R, E), align, skipped)
    pair_photos = _load_pairs(pair_specs, max(R, E), skipped)
    # Per-input failures, as predict records them: each file and why; the run goes on without them.
    failed = [{"source": source, "error": error} for source, error in skipped.items()]
    write_bytes_atomic(out / "failed.json", (json.dumps(failed, indent=1) + "\n").encode())
    if not held and not pair_photos:
        raise ValueError("nothing to evaluate: no usable held-out photo (--photos) and no pair (--pairs)")
    trained = {Path(n).stem for n in prior.names}
    overlap = [p.name for p in held if p.name in trained]
    if overlap:
        notes.append(
            f"{len(overlap)} 'held-out' photo(s) share a name with the prior's training photos "
            f"({', '.join(overlap[:5])}): they may not be held out."
        )
        log.warning(notes[-1])
    if not held:
        conditions, betas = [], []

    run = _Evaluation(
        prior=prior,
        generic=generic_g,
        out=out,
        resolution=E,
        settings=settings,
        lpips=lpips,
        metric_lpips=metric_lpips,
        lpips_net=lpips_net,
        identity=identity,
        batch_size=batch_size,
        seed=int(seed),
        blind=blind if blind is not None else BlindDegradation(),
        blind_factor=int(blind_factor),
        generic_lr=generic_lr,
        generic_conditions=generic_conditions,
    )
    plan = [(c, held) for c in conditions] + ([("real", pair_photos)] if pair_photos else [])
    log.info(
        "evaluating %d photo(s)%s on %s with %s (E=%d px, preset %s: %s, %d steps, device %s)",
        len(held),
        f" + {len(pair_photos)} pair(s)" if pair_photos else "",
        ", ".join(c for c, _ in plan),
        ", ".join(methods),
        E,
        preset,
        settings.method,
        settings.steps,
        device,
    )
    # one unit per image restored (personal-raw comes with the personal projection)
    total = sum(len(ph) * len([m for m in run.methods(c, methods) if m != "personal-raw"]) for c, ph in plan)
    bar = tqdm(total=total, desc="evaluating", unit="img", disable=not progress)
    for name, ph in plan:
        run.run_condition(name, ph, methods, beta, bar)
    bar.close()
    sweep = run.sweep(sweep_task, held, betas, beta, progress) if betas and held else None

    gt_identity = run.ground_truth_identity()
    missing_gt = [n for n, g in gt_identity.items() if not g["found"]]
    if missing_gt:
        notes.append(
            f"No face found in the ground truth of {', '.join(missing_gt)}: identity to the ground truth "
            "is unavailable there and counts as a failure for every method."
        )
    metrics = {
        "format": FORMAT,
        "version": VERSION,
        "settings": {
            "prior": str(prior_dir) if prior_dir is not None else "(in memory)",
            "photos": len(held),
            "pairs": len(pair_photos),
            "resolution": E,
            "generator_resolution": R,
            "preset": preset,
            "method": settings.method,
            "projection": asdict(settings),
            "steps": settings.steps,
            "patience": settings.patience,
            "lr_rampdown": settings.lr_rampdown,
            "delta_prox": settings.delta_prox,
            "lr": settings.lr,
            "generic_lr": run.generic_lr,
            "generic_tasks": sorted(generic_conditions) if generic_conditions is not None else None,
            "loss_resolution": settings.resolution,
            "beta": beta,
            "betas": betas,
            "sweep_task": sweep_task if betas else None,
            "seed": int(seed),
            "blind": run.blind.__dict__,
            "blind_factor": int(blind_factor),
            "batch_size": batch_size,
            "lpips_net": getattr(metric_lpips, "net", lpips_net),
            "device": str(device),
            "align": align,
            "conditions": [c for c, _ in plan],
            "methods": methods,
            "eye_box": EYES_BOX,
            "mouth_box": MOUTH_BOX,
        },
        "methods": methods,
        "generic_note": generic_note,
        "baselines": dict(run.baseline_names),
        "identity": {
            "scorer": identity.name,
            "threshold": identity.threshold,
            "centre": None if identity.centre is None else [round(float(v), 6) for v in identity.centre],
            "centre_note": centre_note,
        },
        "conditions": run.cond_info,
        "aggregates": run.aggregates,
        "input_dependence": {c: d for c, d in run.dependence.items() if d is not None},
        "records": [_public(r) for r in run.records],
        "ground_truth_identity": gt_identity,
        "beta_sweep": sweep,
        "skipped_photos": skipped,
        "notes": notes,
        "timing_s": {**run.timing, "total": round(time.time() - t_start, 2)},
    }
    metrics = _finite(metrics)
    metrics_path = write_bytes_atomic(out / "metrics.json", (json.dumps(metrics, indent=1) + "\n").encode())
    report = write_report(out, metrics, run.strips, max_strips)
    if logger is not None:
        own = isinstance(logger, str)
        if own:
            if logger != "wandb":
                raise ValueError(f"logger must be a logger object or 'wandb', got {logger!r}")
            logger = make_wandb_logger(out, name=f"evaluate-{prior_dir.name if prior_dir else 'prior'}")
        log_to_wandb(logger, metrics, run.strips, out, max_strips)
        if own:
            logger.experiment.finish()
    log.info("report: %s (%.0fs)", report, time.time() - t_start)
    strips = [p for items in run.strips.values() for _, p in items]
    return EvaluationResult(out=out, report=report, metrics_path=metrics_path, metrics=metrics, strips=strips)


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _check_options(R, E, methods, tasks, betas, sweep_task, blind_factor):
    """Validated ``(methods, conditions, betas)``; a ``ValueError`` naming the option otherwise."""
    if E > R or R % E != 0:
        raise ValueError(f"resolution {E} must divide the generator's resolution {R} (e.g. {min(256, R)})")
    requested = [m for m in methods.replace(" ", "").split(",") if m] if isinstance(methods, str) else list(methods)
    bad = [m for m in requested if m not in METHODS]
    if bad or not requested:
        raise ValueError(f"unknown method(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METHODS)}")
    conditions = expand_tasks(tasks)
    betas = parse_betas(betas)
    if betas and (sweep_task not in CONDITIONS or sweep_task == "real"):
        raise ValueError(f"sweep_task must be one of {', '.join(c for c in CONDITIONS if c != 'real')}")
    for name in [*conditions, sweep_task if betas else ""]:
        if name.startswith("superres-x") and E % int(name.split("x")[-1]):
            raise ValueError(f"{name}: the evaluation resolution {E} is not divisible by {name.split('x')[-1]}")
    if blind_factor < 2 or E % blind_factor:
        raise ValueError(f"blind_factor {blind_factor} must be >= 2 and divide the evaluation resolution {E}")
    return [m for m in METHODS if m in requested], conditions, betas


def _check_out(out: Path, files: list[Path], prior_dir: Path | None) -> None:
    """The output folder must lie outside the photos' folders and the prior (never write into inputs)."""
    target = out.resolve()
    for folder in sorted({f.parent.resolve() for f in files}):
        if target == folder or folder in target.parents:
            raise ValueError(f"--out {out} is inside the photos' folder {folder}; choose another output folder")
    if prior_dir is not None and (target == prior_dir.resolve() or prior_dir.resolve() in target.parents):
        raise ValueError(f"--out {out} is inside the prior folder {prior_dir}; choose another output folder")

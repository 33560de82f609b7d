"""One evaluation run's state (:class:`_Evaluation`): builds each condition from the held-out photos,
restores it with every method, measures the results, aggregates them and writes the strips; also the
beta sweep. :func:`~.runner.evaluate` drives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.io import to_uint8
from ..metrics.identity import IdentityScorer
from ..metrics.image import lpips_distance, psnr, ssim
from ..provenance.writing import OFF, Provenance
from ..tasks.colorize import luminance
from ..tasks.consistency import consistency_psnr
from ..tasks.generic import generic_task
from ..tasks.projection import ProjectionSettings
from ..imaging import area_downsample, resize_square
from ..tasks.superres import Downsample
from .aggregates import _floats, _public, aggregate, input_dependence
from .degradations import EYES_BOX, MOUTH_BOX, BlindDegradation, _nearest, bicubic, box_mask, fill_holes, irregular_mask
from .inputs import CONDITION_TASKS, CONDITIONS, Condition, Photo, condition_kind, methods_for
from .report import _beta_text, _method_label, _pm, _share, make_strip, plot_tradeoff

log = logging.getLogger(__name__)  # under "mystyle_pl.evaluation", whose level the CLI sets

MARKED_METHODS = ("personal", "personal-raw", "generic")  # the methods whose results are a prior's, labelled when written


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
        provenance: bool = True,  # measure the mark's cost on the prior results and label the strips
    ) -> None:
        self.prior, self.generic, self.out, self.E, self.settings = prior, generic, out, resolution, settings
        self.lpips, self.metric_lpips, self.lpips_net, self.identity = lpips, metric_lpips, lpips_net, identity
        self.batch_size, self.seed, self.blind, self.blind_factor = batch_size, seed, blind, blind_factor
        self.generic_lr = generic_lr if generic_lr is not None else settings.w_lr
        self.generic_conditions = generic_conditions
        self.labels = Provenance(enabled=provenance, prior=prior)
        self.watermark = "skipped: no prior result" if provenance else OFF  # its state in the results at E px
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
        self.sources: dict[str, Path] = {}  # photo name -> its file (the strips' ingredient)

    # ---------------------------------------------------------------- conditions

    def _at_eval(self, images: torch.Tensor) -> torch.Tensor:
        return resize_square(images, self.E)

    def _at_gen(self, images: torch.Tensor) -> torch.Tensor:
        return resize_square(images, self.R)

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
        """:meth:`measure` of ``restored`` (the unmarked results) plus its consistency, steps and seconds
        per photo, and with provenance on the mark's PSNR cost on a prior's results (``mark_psnr``, dB:
        each result marked vs unmarked in the face's mark box; None when it is too small to mark)."""
        records = self.measure(cond, restored.images)
        for r, c, k, t in zip(records, restored.consistency, restored.steps_used, restored.seconds):
            r.update(method=method, consistency=c, steps_used=k, seconds=t)
        if self.labels.enabled and method in MARKED_METHODS:
            for i, r in enumerate(records):
                r["mark_psnr"], self.watermark = self.labels.mark_cost(restored.images[i : i + 1])
        return records

    # ---------------------------------------------------------------- the run

    def condition(self, name: str, photos: list[Photo]) -> Condition:
        """The condition ``name`` over ``photos``, built once."""
        self.sources.update({p.name: p.path for p in photos if p.path is not None})
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
            # the prior results' tiles marked (after the metrics, which are on the unmarked results)
            made = [self.labels.mark(results[m][i : i + 1])[0] if m in MARKED_METHODS else results[m][i : i + 1]
                    for m in methods]  # fmt: skip
            tiles = [cond.shown[i : i + 1], *made, cond.gt[i : i + 1]]
            label = self.labels.label(f"evaluate {name}", kind="edited", source=self.sources.get(photo),
                                      fallback=cond.gt[i : i + 1], watermark=self.watermark)  # fmt: skip
            path = self.labels.write(self.out / "strips" / name / f"{photo}.png", make_strip(tiles, labels), label)
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

"""The evaluation's outputs for people: image strips, the beta-sweep plot and ``report.md``.

* :func:`make_strip`: degraded input | each method | ground truth, under a label band;
* :func:`plot_tradeoff`: the beta sweep's identity-vs-LPIPS plot (matplotlib, else ``_pil_plot``);
* :func:`write_report`: ``report.md`` from the content of ``metrics.json`` (tables via
  ``_condition_table`` and ``_dependence_lines``, cells via ``_pm`` / ``_share`` / ``_method_label`` /
  ``_beta_text``);
* ``_finite``: NaN/inf -> ``None`` for ``metrics.json`` and the W&B tables.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.io import to_uint8, write_bytes_atomic, write_image


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def make_strip(tiles: list[torch.Tensor], labels: list[str], min_tile: int = 128) -> np.ndarray:
    """Tiles ``[1, 3, S, S]`` side by side under a label band -> uint8 ``[H, W, 3]`` (tiles below
    ``min_tile`` px are enlarged with nearest-neighbour)."""
    size = tiles[0].shape[-1]
    scale = max(1, -(-min_tile // size))
    side = size * scale
    band, pad = max(14, side // 12), 2
    canvas = Image.new("RGB", (len(tiles) * (side + pad) + pad, side + band + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, band - 4))
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        img = Image.fromarray(to_uint8(tile)[0])
        if scale > 1:
            img = img.resize((side, side), Image.Resampling.NEAREST)
        x = pad + k * (side + pad)
        canvas.paste(img, (x, band + pad))
        draw.text((x + 2, 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def plot_tradeoff(points: list[dict], path: Path, reference: dict | None = None) -> Path:
    """The beta sweep: identity (cosine similarity to the ground truth, up = better) against LPIPS
    (left = better), one point per beta in order. matplotlib when it imports, else a PIL drawing."""
    xs = [p["lpips"] for p in points]
    ys = [p["id_cos_gt"] for p in points]
    labels = [f"beta={_beta_text(p['beta'])}" for p in points]
    ref = None
    if reference is not None and reference.get("lpips") is not None and reference.get("id_cos_gt") is not None:
        ref = (reference["lpips"], reference["id_cos_gt"], reference.get("label", "generic"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
        ok = [(x, y, lab) for x, y, lab in zip(xs, ys, labels) if x is not None and y is not None]
        ax.plot([p[0] for p in ok], [p[1] for p in ok], "o-", color="tab:blue", label="personal prior")
        for x, y, lab in ok:
            ax.annotate(lab, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if ref is not None:
            ax.plot([ref[0]], [ref[1]], "s", color="tab:red", label=ref[2])
        ax.set_xlabel("LPIPS to ground truth (lower is better)")
        ax.set_ylabel("identity: cosine similarity to ground truth")
        ax.set_title("beta sweep: identity vs. LPIPS")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return write_bytes_atomic(path, buffer.getvalue())
    return write_image(path, _pil_plot(xs, ys, labels, ref))


def _pil_plot(xs, ys, labels, ref, width: int = 680, height: int = 500) -> np.ndarray:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    left, right, top, bottom = 95, 110, 45, 60
    pts = [(x, y, lab) for x, y, lab in zip(xs, ys, labels) if x is not None and y is not None]
    allx = [p[0] for p in pts] + ([ref[0]] if ref else [])
    ally = [p[1] for p in pts] + ([ref[1]] if ref else [])
    draw.text((left, 12), "beta sweep: identity vs. LPIPS", fill=(0, 0, 0), font=font)
    draw.rectangle((left, top, width - right, height - bottom), outline=(0, 0, 0))
    ylabel = "identity: cosine similarity to ground truth (higher is better)"
    text = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4, 16), (255, 255, 255))
    ImageDraw.Draw(text).text((2, 1), ylabel, fill=(0, 0, 0), font=small)
    text = text.rotate(90, expand=True)
    img.paste(text, (4, max(0, top + (height - top - bottom - text.height) // 2)))
    draw.text((left + 60, height - 24), "LPIPS to ground truth (lower is better)", fill=(0, 0, 0), font=small)
    if not allx:
        draw.text((left + 10, top + 10), "no data (no face found)", fill=(200, 0, 0), font=font)
        return np.asarray(img)

    def span(values):
        lo, hi = min(values), max(values)
        margin = (hi - lo) * 0.1 or max(abs(hi) * 0.01, 1e-3)
        return lo - margin, hi + margin

    def digits(lo, hi):
        return max(2, math.ceil(-math.log10((hi - lo) / 4)) + 1)

    (x0, x1), (y0, y1) = span(allx), span(ally)
    dx, dy = digits(x0, x1), digits(y0, y1)

    def to_px(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (width - left - right),
            height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom),
        )

    for k in range(5):  # ticks
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, _ = to_px(xv, y0)
        _, py = to_px(x0, yv)
        draw.line((px, height - bottom, px, height - bottom + 5), fill=(0, 0, 0))
        draw.text((px - 18, height - bottom + 8), f"{xv:.{dx}f}", fill=(0, 0, 0), font=small)
        draw.line((left - 5, py, left, py), fill=(0, 0, 0))
        label = f"{yv:.{dy}f}"
        draw.text((left - 8 - draw.textlength(label, font=small), py - 7), label, fill=(0, 0, 0), font=small)
    line = [to_px(x, y) for x, y, _ in pts]
    if len(line) > 1:
        draw.line(line, fill=(31, 119, 180), width=2)
    placed: list[tuple[float, float]] = []
    for (px, py), (_, _, lab) in zip(line, pts):
        draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=(31, 119, 180))
        ty = py - 16
        while any(abs(px - qx) < 60 and abs(ty - qy) < 14 for qx, qy in placed):  # coinciding points: stack labels
            ty += 14
        placed.append((px, ty))
        draw.text((px + 6, ty), lab, fill=(0, 0, 0), font=small)
    if ref is not None:
        px, py = to_px(ref[0], ref[1])
        draw.rectangle((px - 4, py - 4, px + 4, py + 4), fill=(214, 39, 40))
        draw.text((px + 6, py + 2), ref[2], fill=(214, 39, 40), font=small)
    return np.asarray(img)


def _beta_text(beta) -> str:
    return "none (affine)" if beta is None else f"{beta:g}"


def _pm(s: dict, digits: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "–"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _share(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def _method_label(method: str, baseline_names: dict, kind: str) -> str:
    if method == "personal":
        return "personal"
    if method == "personal-raw":
        return "personal (raw)"
    if method == "generic":
        return "generic (W+)"
    return f"baseline ({baseline_names.get(kind, 'bicubic' if kind != 'inpaint' else 'fill')})"


def _short(method: str) -> str:
    """A method's column heading: ``personal``, ``personal (raw)``, ``generic``, ``baseline``."""
    return "personal (raw)" if method == "personal-raw" else method


def _mean(s: dict | None, digits: int) -> str:
    return "–" if not s or s.get("mean") is None else f"{s['mean']:.{digits}f}"


def _settings_line(s: dict) -> str:
    """The projection settings in one line (``metrics.json`` settings; version 1 files lack preset/method)."""
    p = s.get("projection") or {}
    method = s.get("method") or p.get("method")
    what = {"wplus": "W+ anchored to the person's space", "pplus": "P+ (anchors' coefficients)"}.get(method, method)
    text = f"projection: preset `{s['preset']}` ({what}), " if s.get("preset") else "projection: "
    text += f"{s['steps']} steps" + (f" (patience {s['patience']})" if s["patience"] else "")
    if method == "wplus":
        text += f", w lr {p.get('w_lr', 0):g}"
    else:
        text += f", lr {s['lr']:g}"
    return text + f", loss at {s['loss_resolution'] or 'input'} px"


_READING = (
    "personal: the personal projection made consistent with the input (super-resolution: back-projected so that "
    "D(result) reproduces the input; inpainting: blended into the known pixels); personal (raw): the same projection "
    "before back-projection. Consistency: PSNR of D(result) against the input at the input's size (inpainting: "
    "G(ws) on the known pixels, before blending; inversion: G(ws) against the photo); steps: projection steps used; "
    "s / image: wall seconds per image."
)


def _dependence_lines(dep: dict, methods: list[str]) -> list[str]:
    if not dep:
        return []
    lines = [
        "## Input dependence: do results of different photos differ as the photos do?",
        "",
        "Mean PSNR (dB) between the results of every pair of held-out photos, next to the same between their "
        "ground truths. Gap = results − truths: near 0, the results differ as the photos do; large and positive, "
        "they look alike whatever the input (the prior's face replaces the photo's). corr: correlation over the "
        "pairs (>= 3 pairs).",
        "",
        "| condition | pairs | truths | " + " | ".join(_short(m) for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for c, d in dep.items():
        cells = []
        for m in methods:
            v = d["methods"].get(m)
            if v is None or v.get("psnr") is None:
                cells.append("–")
            else:
                cell = f"{v['psnr']:.2f}"
                if v.get("gap_db") is not None:
                    cell += f" (gap {v['gap_db']:+.2f})"
                cells.append(cell + (f", corr {v['corr']:.2f}" if v.get("corr") is not None else ""))
        truth = "–" if d.get("truth_psnr") is None else f"{d['truth_psnr']:.2f}"
        lines.append(f"| {c} | {d['pairs']} | {truth} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _condition_table(agg: dict, methods: list[str], baseline_names: dict, kind: str, has_centre: bool,
                     mark: bool = False) -> list[str]:  # fmt: skip
    """One condition's table; ``mark``: with the watermark's PSNR cost column (provenance on)."""
    head = ["method", "ID cos ↑ (gt)", "ID dist ↓ (gt)", "same person (gt)"]
    if has_centre:
        head += ["ID dist ↓ (centre)", "same person (centre)"]
    head += ["LPIPS ↓", "PSNR ↑ (dB)", "SSIM ↑", "consistency ↑ (dB)"]
    head += ["mark PSNR ↑ (dB)"] if mark else []
    head += ["steps", "s / image", "faces found", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        a = agg.get(m)
        if a is None:
            continue
        i = a["identity"]
        row = [_method_label(m, baseline_names, kind), _pm(i["cos_gt"]), _pm(i["dist_gt"]), _share(i["same_person_gt"])]
        if has_centre:
            row += [_pm(i["dist_centre"]), _share(i["same_person_centre"])]
        row += [_pm(a["lpips"]), _pm(a["psnr"], 2), _pm(a["ssim"]), _pm(a.get("consistency"), 1)]
        row += [_pm(a.get("mark_psnr"), 1)] if mark else []
        row += [_mean(a.get("steps_used"), 0), _mean(a.get("seconds"), 1), f"{i['faces_found']}/{i['n']}", str(a["n"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines



def _summary_table(title: str, metrics: dict, conds: list[str], methods: list[str], cell) -> list[str]:
    """A condition x method summary table: ``cell(aggregate)`` per cell, "–" where a method did not run."""
    lines = [f"## Summary: {title}", "", "| condition | " + " | ".join(_short(m) for m in methods) + " |"]
    lines.append("|---|" + "---|" * len(methods))
    for c in conds:
        cells = [(lambda a: "–" if a is None else cell(a))(metrics["aggregates"][c].get(m)) for m in methods]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines + [""]

def write_report(out: Path, metrics: dict, strips: dict[str, list[tuple[str, Path]]], max_strips: int) -> Path:
    s = metrics["settings"]
    methods = metrics["methods"]
    has_centre = metrics["identity"]["centre"] is not None
    baseline_names = metrics.get("baselines", {})
    lines = [
        "# MyStyle evaluation",
        "",
        f"Prior: `{s['prior']}` · generic prior: {metrics['generic_note']} · {s['photos']} held-out photo(s)"
        + (f", {s['pairs']} real pair(s)" if s["pairs"] else ""),
        "",
        f"Evaluation resolution {s['resolution']} px · {_settings_line(s)} · personal beta {_beta_text(s['beta'])}"
        + f" · metric LPIPS: {s['lpips_net']} · seed {s['seed']} · device {s['device']}",
        "",
        _READING,
        "",
        (
            f"Identity: {metrics['identity']['scorer']}; same person = distance < {metrics['identity']['threshold']}; "
            "a result without a detected face is a failure (counted as not the same person). "
            f"Centre: {metrics['identity']['centre_note']}."
        ),
        "",
        (
            "Values are mean ± std (sample) over the photos; identity similarities/distances are over the results "
            "with a face (see 'faces found')."
        ),
        "",
    ]
    if metrics.get("skipped_photos"):
        lines += ["Skipped inputs: " + "; ".join(f"`{k}` ({v})" for k, v in metrics["skipped_photos"].items()), ""]
    for note in metrics.get("notes", []):
        lines += [f"> {note}", ""]
    if metrics.get("provenance") == "on":
        lines += [f"Provenance on: every metric is computed on the unmarked results; 'mark PSNR' is what the "
                  f"watermark costs each prior result (marked vs unmarked, in the face's mark box; watermark: "
                  f"{metrics.get('watermark')}). The strips are labelled (mystyle-pl verify).", ""]  # fmt: skip
    elif metrics.get("provenance") == "off":
        lines += ["Provenance off (a research run): nothing was marked or labelled.", ""]
    # summary
    conds = list(metrics["aggregates"])
    if conds:
        lines += _summary_table(
            "identity distance to the ground truth ↓ · LPIPS ↓", metrics, conds, methods,
            lambda a: f"{_pm(a['identity']['dist_gt'])} · {_pm(a['lpips'])}",
        )  # fmt: skip
        lines += _summary_table(
            "fidelity · PSNR to the truth ↑ · consistency with the input ↑ (dB)", metrics, conds, methods,
            lambda a: f"{_mean(a['psnr'], 2)} · {_mean(a.get('consistency'), 1)}",
        )  # fmt: skip
    lines += _dependence_lines(metrics.get("input_dependence") or {}, methods)
    for c in conds:
        kind = metrics["conditions"][c]["kind"]
        lines += [f"## {c}", "", metrics["conditions"][c]["description"] + ".", ""]
        lines += _condition_table(metrics["aggregates"][c], methods, baseline_names, kind, has_centre,
                                  mark=metrics.get("provenance") == "on")  # fmt: skip
        lines.append("")
        shown = strips.get(c, [])[:max_strips]
        if shown:
            shown_methods = [m for m in methods if m in metrics["aggregates"][c]]
            order = ["degraded", *[_method_label(m, baseline_names, kind) for m in shown_methods], "ground truth"]
            lines += [f"Strips: {' | '.join(order)}", ""]
            for name, path in shown:
                lines += [f"![{c} {name}]({path.relative_to(out).as_posix()})", ""]
            if len(strips.get(c, [])) > max_strips:
                lines += [f"({len(strips[c]) - max_strips} more in `strips/{c}/`)", ""]
    gts = metrics.get("ground_truth_identity")
    if gts and has_centre:
        lines += [
            "## Held-out ground truths against the album centre",
            "",
            "How far the person's own unseen photos lie from the centre (a reference for the 'centre' columns).",
            "",
            "| photo | face found | ID dist (centre) | same person |",
            "|---|---|---|---|",
        ]
        for name, g in gts.items():
            d = g.get("dist_centre")
            lines.append(
                f"| {name} | {'yes' if g['found'] else 'no'} | {'–' if d is None else f'{d:.3f}'} | "
                f"{'yes' if g.get('same_centre') else 'no'} |"
            )
        lines.append("")
    sweep = metrics.get("beta_sweep")
    if sweep and sweep.get("points"):
        lines += [
            f"## Beta sweep ({sweep['condition']}, personal prior)",
            "",
            "A larger beta dilates the person's space: closer to the input (LPIPS) at the cost of identity.",
            "",
            "| beta | ID cos ↑ (gt) | ID dist ↓ (gt) | same person (gt) | LPIPS ↓ | PSNR ↑ | SSIM ↑ | faces found |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in sweep["points"]:
            a = p["aggregate"]
            i = a["identity"]
            lines.append(
                f"| {_beta_text(p['beta'])} | {_pm(i['cos_gt'])} | {_pm(i['dist_gt'])} | {_share(i['same_person_gt'])} | "
                f"{_pm(a['lpips'])} | {_pm(a['psnr'], 2)} | {_pm(a['ssim'])} | {i['faces_found']}/{i['n']} |"
            )
        lines.append("")
        if sweep.get("plot"):
            lines += [f"![beta sweep]({sweep['plot']})", ""]
    lines += ["Every per-image number and the settings are in `metrics.json`.", ""]
    return write_bytes_atomic(out / "report.md", "\n".join(lines).encode())

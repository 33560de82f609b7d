"""``evaluate`` end to end on a tiny seeded prior (no dlib: a stub identity descriptor), its
degradations and baselines, and the ``mystyle-pl evaluate`` command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mystyle_pl.data.anchors_io import Anchors
from mystyle_pl.data.io import write_image
from mystyle_pl.evaluation import (
    EYES_BOX,
    BlindDegradation,
    box_mask,
    evaluate,
    expand_tasks,
    fill_holes,
    irregular_mask,
    parse_betas,
    parse_pair,
)
from mystyle_pl.losses import LPIPS
from mystyle_pl.metrics import IdentityScorer
from mystyle_pl.prior import PersonalPrior

from .helpers import make_tiny_stylegan2

R = 32


def _render(generator, n: int, seed: int) -> torch.Tensor:
    with torch.no_grad():
        z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
        return generator.synthesis(generator.broadcast_w(generator.mapping(z)), noise_mode="const")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved tiny prior, a folder of 3 held-out photos (renders of its generator) and one real-style pair."""
    root = tmp_path_factory.mktemp("evaluate")
    generator = make_tiny_stylegan2(resolution=R, seed=0)
    with torch.no_grad():
        w = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    PersonalPrior(generator, Anchors(w=w, names=[f"{i}.png" for i in range(4)])).save(root / "prior")
    photos = _render(generator, 3, seed=1)
    for i, img in enumerate(photos):
        write_image(root / "photos" / f"held{i}.png", img)
    pair = root / "pair"
    write_image(pair / "gt.png", photos[0])
    write_image(
        pair / "degraded.png",
        torch.nn.functional.avg_pool2d(photos[:1], 4).repeat_interleave(4, -1).repeat_interleave(4, -2),
    )
    return root


def stub_descriptor(image: np.ndarray):
    """A 4-d "identity": the mean colour and 1; no face when the image is almost white."""
    if image.mean() > 250:
        return None
    return np.concatenate([image.reshape(-1, 3).mean(0) / 255.0, [1.0]])


class RecordingLogger:
    def __init__(self):
        self.tables, self.images = {}, {}

    def log_table(self, key, columns=None, data=None, **kwargs):
        self.tables[key] = (columns, data)

    def log_image(self, key, images, **kwargs):
        self.images[key] = images


def test_evaluate_end_to_end(tiny, tmp_path):
    lp = LPIPS("alex", pretrained=False)
    logger = RecordingLogger()
    out = tmp_path / "eval"
    result = evaluate(
        tiny / "prior",
        tiny / "photos",
        tasks="superres-x8,inpaint-eyes,blind,invert",
        out=out,
        pairs=[tiny / "pair"],
        generic=make_tiny_stylegan2(resolution=R, seed=1),
        resolution=R,
        steps=3,
        pivotal_steps=5,  # the inversion's pivotal tuning (quick: 50 steps per photo and method) runs, briefly
        betas="0,0.1",
        sweep_task="superres-x16",
        identity=IdentityScorer(descriptor_fn=stub_descriptor, centre=[0.5, 0.5, 0.5, 1.0]),
        lpips=lp,
        metric_lpips=lp,
        device="cpu",
        logger=logger,
        progress=False,
    )
    assert result.report == out / "report.md" and result.metrics_path == out / "metrics.json"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["format"] == "mystyle_pl.evaluation"
    assert metrics["methods"] == ["personal", "personal-raw", "generic", "baseline"]
    conditions = ["superres-x8", "inpaint-eyes", "blind", "invert", "real"]
    assert list(metrics["aggregates"]) == conditions
    assert metrics["settings"]["steps"] == 3 and metrics["settings"]["resolution"] == R
    assert metrics["settings"]["preset"] == "quick" and metrics["settings"]["method"] == "wplus"
    from dataclasses import asdict

    from mystyle_pl.tasks.presets import task_settings

    expected = task_settings("quick", steps=3, pivotal_steps=5)
    assert expected.for_task("invert").pivotal_steps == 5  # the option reaches the inversion (not the preset's 50)
    assert metrics["settings"]["projection"] == json.loads(json.dumps(asdict(expected)))
    # every per-image number: conditions x methods x photos (the pair is one photo); personal-raw only where a
    # back-projection exists (super-resolution, blind), no baseline for the inversion
    methods = {c: ["personal", "personal-raw", "generic", "baseline"] for c in ("superres-x8", "blind", "real")}
    methods |= {"inpaint-eyes": ["personal", "generic", "baseline"], "invert": ["personal", "generic"]}
    assert {c: list(a) for c, a in metrics["aggregates"].items()} == methods
    assert len(metrics["records"]) == (4 + 3 + 4 + 2) * 3 + 4 * 1
    rec = metrics["records"][0]
    for key in (
        "condition",
        "method",
        "photo",
        "lpips",
        "psnr",
        "ssim",
        "consistency",
        "steps_used",
        "seconds",
        "id_found",
        "id_cos_gt",
        "id_dist_gt",
        "id_cos_centre",
        "id_dist_centre",
        "id_same_gt",
        "id_same_centre",
    ):
        assert key in rec, key
    for c in conditions:
        for m in methods[c]:
            a = metrics["aggregates"][c][m]
            assert a["n"] == (1 if c == "real" else 3)
            for k in ("lpips", "psnr", "ssim", "steps_used", "seconds"):
                assert set(a[k]) == {"mean", "std", "min", "max", "n"} and a[k]["mean"] is not None
            # consistency with the input: every method but the inpainting baseline (its known pixels are the input's)
            assert (a["consistency"]["mean"] is None) == (c == "inpaint-eyes" and m == "baseline")
            assert a["steps_used"]["mean"] == (0 if m == "baseline" else 3)
            assert a["identity"]["faces_found"] == a["n"] and 0.0 <= a["identity"]["same_person_gt"] <= 1.0
    # the inversion (D = identity) is the upper bound of the projecting tasks
    assert metrics["conditions"]["invert"]["kind"] == "invert"
    invert = metrics["aggregates"]["invert"]["personal"]
    assert invert["psnr"]["mean"] > metrics["aggregates"]["superres-x8"]["personal-raw"]["psnr"]["mean"] - 1.0
    # input dependence: pairwise PSNR of the results of the 3 photos against their truths'
    dep = metrics["input_dependence"]
    assert set(dep) == {"superres-x8", "inpaint-eyes", "blind", "invert"}  # the single pair has no partner
    assert dep["superres-x8"]["pairs"] == 3 and set(dep["superres-x8"]["methods"]) == set(methods["superres-x8"])
    assert all(v["psnr"] is not None and v["gap_db"] is not None for v in dep["superres-x8"]["methods"].values())
    # the baseline of super-resolution is bicubic, of inpainting OpenCV Telea or the mean fill
    assert metrics["baselines"]["superres"] == "bicubic" and metrics["baselines"]["inpaint"] in (
        "OpenCV Telea",
        "mean fill",
    )
    # inpainting keeps the known pixels: its PSNR beats the x8 super-resolution's for every method
    assert (
        metrics["aggregates"]["inpaint-eyes"]["baseline"]["psnr"]["mean"]
        > metrics["aggregates"]["superres-x8"]["baseline"]["psnr"]["mean"]
    )
    # blind degradations are recorded per photo
    assert set(metrics["conditions"]["blind"]["degradation"]) == {"held0", "held1", "held2"}
    # beta sweep
    sweep = metrics["beta_sweep"]
    assert sweep["condition"] == "superres-x16" and [p["beta"] for p in sweep["points"]] == [0.0, 0.1]
    assert all(p["lpips"] is not None for p in sweep["points"]) and (out / sweep["plot"]).is_file()
    # strips: one per condition and photo, a tile per method between the degraded input and the truth
    for c in conditions:
        names = ["pair"] if c == "real" else ["held0", "held1", "held2"]
        for n in names:
            strip = out / "strips" / c / f"{n}.png"
            assert strip.is_file()
            width, height = Image.open(strip).size
            assert width > (len(methods[c]) + 2) * 128 and height > 128  # tiles enlarged to 128 px
    assert len(result.strips) == 13
    report = (out / "report.md").read_text()
    for text in (
        "# MyStyle evaluation",
        "## superres-x8",
        "## inpaint-eyes",
        "## blind",
        "## real",
        "## invert",
        "## Beta sweep",
        "## Input dependence",
        "## Summary: fidelity",
        "preset `quick`",
        "consistency ↑ (dB)",
        "s / image",
        "| personal (raw) |",
        "generic (W+)",
        "baseline (bicubic)",
        "ID dist ↓ (centre)",
        "LPIPS ↓",
        "PSNR ↑",
        "SSIM ↑",
        "](strips/superres-x8/held0.png)",
        "](beta_sweep.png)",
    ):
        assert text in report, text
    # nothing written into the input folders
    assert sorted(p.name for p in (tiny / "photos").iterdir()) == ["held0.png", "held1.png", "held2.png"]
    # the logger got the tables and images
    tables = {"evaluate/summary", "evaluate/records", "evaluate/beta_sweep", "evaluate/input_dependence"}
    assert tables <= set(logger.tables)
    assert "consistency" in logger.tables["evaluate/records"][0]
    assert "evaluate/strips/blind" in logger.images and "evaluate/beta_sweep_plot" in logger.images


def test_fidelity_figures_come_from_one_projection(tiny, tmp_path, monkeypatch):
    """personal and personal-raw are the two outputs of ONE projection per photo; consistency, steps and
    seconds per record; the bicubic baseline's consistency and PSNR match a computation by hand."""
    from mystyle_pl.data.io import read_image, to_tensor
    from mystyle_pl.evaluation import bicubic
    from mystyle_pl.metrics.image import psnr
    from mystyle_pl.tasks.consistency import consistency_psnr
    from mystyle_pl.tasks.superres import SuperResolve, area_downsample

    results = []
    run = SuperResolve.__call__

    def recording(self, images, factor=None):
        results.append(run(self, images, factor))
        return results[-1]

    monkeypatch.setattr(SuperResolve, "__call__", recording)
    lp = LPIPS("alex", pretrained=False)
    out = evaluate(
        tiny / "prior", tiny / "photos", tasks="superres-x8", methods="personal-raw,baseline,personal",
        out=tmp_path / "e", resolution=R, steps=4, betas=None, identity=IdentityScorer(descriptor_fn=stub_descriptor),
        lpips=lp, metric_lpips=lp, device="cpu", progress=False, batch_size=1,
    )  # fmt: skip
    assert len(results) == 3  # one projection per photo (batch 1) gives both personal rows
    assert list(out.metrics["aggregates"]["superres-x8"]) == ["personal", "personal-raw", "baseline"]
    records = {(r["method"], r["photo"]): r for r in out.metrics["records"]}
    down = lambda img: area_downsample(img, R // 8)  # noqa: E731 - D of x8 super-resolution at E = R
    for i, name in enumerate(["held0", "held1", "held2"]):
        gt = to_tensor(read_image(tiny / "photos" / f"{name}.png"))
        lo = down(gt)
        up = bicubic(lo, R)
        base = records[("baseline", name)]
        assert base["consistency"] == pytest.approx(float(consistency_psnr(up, lo, down)[0]), abs=1e-3)
        assert base["psnr"] == pytest.approx(float(psnr(up, gt)[0]), abs=1e-3)
        assert base["steps_used"] == 0 and base["seconds"] >= 0
        result = results[i]
        personal, raw = records[("personal", name)], records[("personal-raw", name)]
        assert personal["consistency"] == pytest.approx(float(result.consistency[0]), abs=1e-4)
        assert raw["consistency"] == pytest.approx(float(result.raw_consistency[0]), abs=1e-4)
        assert raw["consistency"] == pytest.approx(float(consistency_psnr(result.raw, lo, down)[0]), abs=1e-3)
        assert personal["consistency"] > raw["consistency"] + 5  # back-projection: D(result) reproduces the input
        assert raw["psnr"] == pytest.approx(float(psnr(result.raw, gt)[0]), abs=1e-3)
        assert personal["psnr"] == pytest.approx(float(psnr(result.images, gt)[0]), abs=1e-3)
        assert personal["steps_used"] == raw["steps_used"] == result.steps_used == 4
        assert personal["seconds"] == raw["seconds"] > 0
    agg = out.metrics["aggregates"]["superres-x8"]
    assert agg["personal"]["consistency"]["mean"] > agg["personal-raw"]["consistency"]["mean"]
    assert agg["personal"]["steps_used"]["mean"] == 4 and agg["baseline"]["steps_used"]["mean"] == 0


def test_input_dependence():
    from mystyle_pl.evaluation import input_dependence

    g = torch.Generator().manual_seed(0)
    truths = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    alike = truths.mean(0, keepdim=True).expand(4, -1, -1, -1) + 0.01 * truths  # one face whatever the input
    d = input_dependence(truths, {"follows": truths + 0.0, "alike": alike})
    assert d["pairs"] == 6
    assert d["methods"]["follows"]["gap_db"] == pytest.approx(0.0, abs=1e-3)
    assert d["methods"]["follows"]["corr"] == pytest.approx(1.0, abs=1e-4)
    assert d["methods"]["alike"]["gap_db"] > 20
    assert input_dependence(truths[:1], {"x": truths[:1]}) is None


def test_evaluate_counts_faceless_results_as_failures(tiny, tmp_path):
    """A stub that finds no face in anything but the ground truths: every result is a failure."""
    gts = set()

    def only_ground_truths(image):
        key = image.tobytes()
        return np.ones(4) if key in gts else None

    from mystyle_pl.data.io import read_image, to_tensor, to_uint8

    for f in sorted((tiny / "photos").iterdir()):
        gts.add(to_uint8(to_tensor(read_image(f)))[0].tobytes())
    lp = LPIPS("alex", pretrained=False)
    result = evaluate(
        tiny / "prior",
        tiny / "photos",
        tasks=["superres-x8"],
        out=tmp_path / "e",
        methods=["baseline", "personal"],
        resolution=R,
        steps=1,
        betas=None,
        identity=IdentityScorer(descriptor_fn=only_ground_truths),
        lpips=lp,
        metric_lpips=lp,
        device="cpu",
        progress=False,
    )
    agg = result.metrics["aggregates"]["superres-x8"]
    assert list(agg) == ["personal", "baseline"]
    for a in agg.values():
        assert a["identity"]["failures"] == 3 and a["identity"]["same_person_gt"] == 0.0
        assert a["identity"]["dist_gt"]["mean"] is None
    assert result.metrics["beta_sweep"] is None
    assert "0/3" in result.report.read_text()


def test_evaluate_below_the_generator_resolution(tmp_path):
    """E = 32 with a 64 px generator: results are down-sampled, super-resolution factors are relative to E."""
    generator = make_tiny_stylegan2(resolution=64, seed=3)
    with torch.no_grad():
        w = generator.mapping(torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    prior = PersonalPrior(generator, Anchors(w=w, names=["a.png", "b.png", "c.png"]))
    photos = _render(generator, 2, seed=5)
    for i, img in enumerate(photos):
        write_image(tmp_path / "photos" / f"p{i}.png", img)
    lp = LPIPS("alex", pretrained=False)
    result = evaluate(
        prior,
        tmp_path / "photos",
        tasks="superres-x16,inpaint-mouth",
        out=tmp_path / "out",
        generic=generator,
        resolution=32,
        steps=2,
        betas=[],
        identity=IdentityScorer(descriptor_fn=stub_descriptor),
        lpips=lp,
        metric_lpips=lp,
        device="cpu",
        progress=False,
        batch_size=1,
    )
    m = result.metrics
    assert m["settings"]["generator_resolution"] == 64 and m["conditions"]["superres-x16"]["factor"] == 16
    assert m["identity"]["centre"] is None and "no identity centre" in m["identity"]["centre_note"]
    assert Image.open(tmp_path / "out" / "strips" / "superres-x16" / "p0.png").size[1] > 128


def test_evaluate_input_checks(tiny, tmp_path):
    lp = LPIPS("alex", pretrained=False)
    kw = {"identity": IdentityScorer(descriptor_fn=stub_descriptor), "lpips": lp, "metric_lpips": lp}
    kw.update(device="cpu", progress=False)
    with pytest.raises(ValueError, match="unknown task 'superres-x3'"):
        evaluate(tiny / "prior", tiny / "photos", tasks="superres-x3", out=tmp_path / "a", **kw)
    with pytest.raises(ValueError, match="must divide the generator's resolution"):
        evaluate(tiny / "prior", tiny / "photos", resolution=48, out=tmp_path / "a", **kw)
    with pytest.raises(ValueError, match="inside the photos' folder"):
        evaluate(tiny / "prior", tiny / "photos", out=tiny / "photos" / "eval", resolution=R, **kw)
    with pytest.raises(ValueError, match="unknown method"):
        evaluate(tiny / "prior", tiny / "photos", methods=["personal", "gan"], out=tmp_path / "a", **kw)


# ------------------------------------------------------------------ degradations and baselines


def test_masks():
    eyes = box_mask(EYES_BOX, 64)
    assert eyes.shape == (1, 1, 64, 64) and eyes[0, 0, 29, 32] == 0 and eyes[0, 0, 5, 5] == 1
    a, b = irregular_mask(64, seed=3), irregular_mask(64, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, irregular_mask(64, seed=4))
    hole = 1 - a.mean().item()
    assert 0.2 <= hole < 0.5 and set(a.unique().tolist()) == {0.0, 1.0}
    assert a[0, 0, :4].min() == 1  # the border rows stay known


def test_blind_degradation_is_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    d = BlindDegradation()
    y1, p1 = d(x, seed=0, key="a")
    y2, p2 = d(x, seed=0, key="a")
    _, p3 = d(x, seed=1, key="a")
    assert torch.equal(y1, y2) and p1 == p2 and p1 != p3
    assert y1.shape == x.shape and y1.abs().max() <= 1
    assert 20 <= p1["jpeg_quality"] <= 60 and 1.5 <= p1["blur_sigma"] <= 4.0
    assert (y1 - x).abs().mean() > 0.05  # it does degrade


def test_fill_holes_keeps_known_pixels():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:5, 3:6] = 0
    filled, name = fill_holes(x, mask)
    known = mask.expand_as(x).bool()
    assert name in ("OpenCV Telea", "mean fill")
    assert torch.allclose(filled[known], x[known], atol=1 / 127.5)
    if name == "mean fill":
        mean = (x * mask).sum(dim=(2, 3)) / mask.sum()
        assert torch.allclose(filled[0, :, 3, 4], mean[0])


def test_argument_parsing(tmp_path):
    assert expand_tasks("superres,blind") == ["superres-x8", "superres-x16", "blind"]
    assert expand_tasks(["inpaint-mouth", "inpaint"]) == ["inpaint-mouth", "inpaint-eyes", "inpaint-irregular"]
    assert parse_betas("0,0.03, none") == [0.0, 0.03, None]
    with pytest.raises(ValueError, match=">= 0"):
        parse_betas("-1")
    (tmp_path / "degraded.png").touch()
    (tmp_path / "gt.png").touch()
    assert parse_pair(tmp_path) == (tmp_path / "degraded.png", tmp_path / "gt.png")
    assert parse_pair(f"{tmp_path}/degraded.png:{tmp_path}/gt.png") == (tmp_path / "degraded.png", tmp_path / "gt.png")
    with pytest.raises(FileNotFoundError):
        parse_pair(f"{tmp_path}/nope.png:{tmp_path}/gt.png")


# ------------------------------------------------------------------ command line


def test_cli_help_and_arguments(monkeypatch, capsys, tmp_path):
    import mystyle_pl.evaluation as module
    from mystyle_pl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    words_shown = ("superres-x8", "inpaint-irregular", "blind", "invert", "--pairs", "--betas", "--preset", "personal-raw",
                   "quick (default)", "consistency", "report.md")
    for words in words_shown:
        assert words in text, words

    seen = {}

    def fake_evaluate(prior, photos, **kwargs):
        seen.update(prior=prior, photos=photos, **kwargs)
        return module.EvaluationResult(tmp_path, tmp_path / "report.md", tmp_path / "metrics.json", {}, [])

    monkeypatch.setattr(module, "evaluate", fake_evaluate)
    monkeypatch.chdir(tmp_path)  # the command checks that its inputs exist
    for folder in ("P", "D"):
        (tmp_path / folder).mkdir()
    code = main(
        [
            "evaluate",
            "--prior",
            "P",
            "--photos",
            "D",
            "--tasks",
            "superres,inpaint",
            "--pairs",
            "a.png:b.png",
            "--pairs",
            "F",
            "--steps",
            "7",
            "--preset",
            "pplus",
            "--generic-tasks",
            "superres-x8",
            "--betas",
            "0,0.1",
            "--generic",
            "g.safetensors",
            "--out",
            str(tmp_path / "out"),
            "--methods",
            "personal,baseline",
            "--no-progress",
        ]
    )
    assert code == 0
    assert seen["prior"] == "P" and seen["photos"] == ["D"] and seen["tasks"] == "superres,inpaint"
    assert seen["pairs"] == ["a.png:b.png", "F"] and seen["steps"] == 7 and seen["betas"] == "0,0.1"
    assert seen["generic"] == "g.safetensors" and seen["methods"] == "personal,baseline" and seen["logger"] is None
    assert seen["progress"] is False and seen["preset"] == "pplus" and seen["generic_tasks"] == "superres-x8"
    # unset options keep the preset's values
    assert seen["patience"] is None and seen["lr_rampdown"] is None and seen["delta_prox"] is None


def test_colorize_is_a_condition(tiny, tmp_path):
    """The proof task reaches evaluate: the colorize condition runs the same Colorize object as predict and
    Python; its result keeps the input's luminance (consistency far above the raw projection's), the
    baseline is the gray input itself."""
    lp = LPIPS("alex", pretrained=False)
    out = evaluate(
        tiny / "prior", tiny / "photos", tasks="colorize", methods="personal,personal-raw,baseline",
        out=tmp_path / "e", resolution=R, steps=2, betas=None, identity=IdentityScorer(descriptor_fn=stub_descriptor),
        lpips=lp, metric_lpips=lp, device="cpu", progress=False, batch_size=1, max_photos=1,
    )  # fmt: skip
    agg = out.metrics["aggregates"]["colorize"]
    assert list(agg) == ["personal", "personal-raw", "baseline"]
    assert agg["personal"]["consistency"]["mean"] > agg["personal-raw"]["consistency"]["mean"] + 10
    assert out.metrics["conditions"]["colorize"]["kind"] == "colorize" and out.metrics["baselines"]["colorize"] == "gray"
    assert (tmp_path / "e" / "report.md").read_text().count("colorize") >= 1

"""Labels in the app's downloads (always), the demo's gallery and evaluate's strips; evaluate measures
the unmarked results and reports what the mark costs. On the 256 px tiny prior (its results carry
the mark) with one projection step. Pivotal tuning (50 generator steps per photo at 256 px in the
quick preset: ~5 s each on a CPU) is not what these tests are about: it is off here and tested in
tests/tasks/test_pivotal.py and through predict in tests/test_predict.py."""

from __future__ import annotations

import inspect
import io
import json

import numpy as np
from PIL import Image

from mystyle_pl.app.engine import AppEngine
from mystyle_pl.data.io import read_image, write_image
from mystyle_pl.demo import run_tasks
from mystyle_pl.evaluation import evaluate
from mystyle_pl.losses import LPIPS
from mystyle_pl.metrics import IdentityScorer
from mystyle_pl.provenance import manifest
from mystyle_pl.provenance.watermark import find_watermark

from .conftest import BIG, OneFace, face_like, face_photo

PAD = 2  # make_grid's padding between the demo's cells


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    y, x = PAD + row * (BIG + PAD), PAD + col * (BIG + PAD)
    return grid[y : y + BIG, x : x + BIG]


def test_app_downloads_are_always_labelled(big_prior_dir, tmp_path):
    assert "provenance" not in inspect.signature(AppEngine).parameters  # the app has no way to turn it off
    upload = write_image(tmp_path / "upload.png", face_photo(seed=12))
    # preset official: a projection without pivotal tuning (the app has no switch for it); labels are the same
    engine = AppEngine(big_prior_dir, device="cpu", out_dir=tmp_path / "app", preset="official", steps=1,
                       lpips_weight=0.0, analyzer=OneFace(), edit_directions=0)  # fmt: skip
    up = engine.read_upload(upload)
    out = engine.run("invert", up, tqdm_progress=False)
    record = json.loads(out.record_path.read_text())
    found = find_watermark(read_image(out.png), analyzer=OneFace())
    assert found.found and record["provenance"] == "on" and record["watermark"] == f"marked (run {found.run_id})"
    report = manifest.read(out.png.read_bytes(), "png")
    assert report.state == "valid" and report.actions == ["c2pa.opened", "c2pa.edited"]
    buffer = io.BytesIO()
    Image.fromarray(up.photo).save(buffer, format="PNG")  # uploads are read into memory: their pixels are the ingredient
    assert report.ingredient_sha256 == manifest.sha256_bytes(buffer.getvalue())

    _, png, rec = engine.sample(2, seed=0)
    samples = manifest.read(png.read_bytes(), "png")
    assert samples.state == "valid" and samples.actions == ["c2pa.created"]
    assert json.loads(rec.read_text())["watermark"].startswith("marked")
    strip = read_image(png)  # the samples side by side: each carries the mark
    assert all(find_watermark(strip[:, i * BIG : (i + 1) * BIG], search_faces=False).found for i in range(2))


def test_demo_gallery_is_labelled(big_prior_dir, tmp_path):
    held = write_image(tmp_path / "held" / "p.png", face_like(BIG, seed=13))
    out = tmp_path / "results"
    overrides = {"steps": 1, "lpips_weight": 0.0, "pivotal_steps": 0}
    run_tasks(big_prior_dir, held.parent, out, device="cpu", overrides=overrides, log=None)
    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks["provenance"] == "on" and tasks["watermark"].startswith("marked (run ")
    for name in ("gallery", "superres", "inpaint", "invert", "colorize", "edit", "samples"):
        report = manifest.read((out / f"{name}.png").read_bytes(), "png")
        assert report.state == "valid", name
        if name == "samples":
            assert report.actions == ["c2pa.created"] and report.ingredient_sha256 is None
        else:
            assert report.actions[-1] == "c2pa.edited" and report.ingredient_sha256 == manifest.sha256_bytes(held.read_bytes())
    superres = read_image(out / "superres.png")  # input (nearest) | result | original: only the result is marked
    found = [find_watermark(cell(superres, 0, j), search_faces=False) for j in range(3)]
    assert [f.found for f in found] == [False, True, False]
    assert tasks["watermark"] == f"marked (run {found[1].run_id})"


def stub_descriptor(image: np.ndarray):
    """A 4-d "identity" (the mean colour and 1): no dlib."""
    return np.concatenate([image.reshape(-1, 3).mean(0) / 255.0, [1.0]])


def test_evaluate_measures_unmarked_results_and_reports_the_marks_cost(big_prior_dir, tmp_path):
    write_image(tmp_path / "photos" / "p.png", face_like(BIG, seed=14))
    lp = LPIPS("alex", pretrained=False)
    common = dict(tasks="invert", methods="personal", resolution=BIG, steps=1, betas=[], lpips=lp, metric_lpips=lp,
                  identity=IdentityScorer(descriptor_fn=stub_descriptor), device="cpu", progress=False, batch_size=1,
                  pivotal_steps=0)  # fmt: skip
    on = evaluate(big_prior_dir, tmp_path / "photos", out=tmp_path / "on", **common)
    off = evaluate(big_prior_dir, tmp_path / "photos", out=tmp_path / "off", provenance="off", **common)
    (r_on,), (r_off,) = on.metrics["records"], off.metrics["records"]
    # The same projection measured with and without labels: identical metrics (they are on the unmarked result).
    assert {k: r_on[k] for k in ("psnr", "ssim", "lpips")} == {k: r_off[k] for k in ("psnr", "ssim", "lpips")}
    # The mark's cost: invisible (over 30 dB; 38-41 dB measured on real faces) but there (finite).
    assert 30 < r_on["mark_psnr"] < 60 and "mark_psnr" not in r_off
    assert on.metrics["aggregates"]["invert"]["personal"]["mark_psnr"]["mean"] == r_on["mark_psnr"]
    assert (on.metrics["provenance"], off.metrics["provenance"]) == ("on", "off")
    assert on.metrics["watermark"].startswith("marked (run ") and off.metrics["watermark"] == "off"
    assert "mark PSNR ↑ (dB)" in on.report.read_text() and "mark PSNR" not in off.report.read_text()
    assert manifest.read((tmp_path / "on" / "strips" / "invert" / "p.png").read_bytes(), "png").state == "valid"
    assert manifest.read((tmp_path / "off" / "strips" / "invert" / "p.png").read_bytes(), "png").state == "absent"

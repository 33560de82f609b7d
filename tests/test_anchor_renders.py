"""The anchors' renders a prior bundle caches for the projections' start scan (mystyle_pl.anchor_renders)."""

from __future__ import annotations

import pytest
import torch

from mystyle_pl.anchor_renders import RENDERS_FILE, load_anchor_renders, render_anchors
from mystyle_pl.data.anchors_io import save_anchors
from mystyle_pl.prior import ANCHORS_FILE, PersonalPrior, PriorError
from mystyle_pl.space import PersonalSpace
from mystyle_pl.tasks import Invert
from mystyle_pl.tasks.anchored import AnchoredWPlusProjector

from .tasks.conftest import FAST, prior  # noqa: F401  (the fixture)

WPLUS = {**FAST, "preset": "quick"}


def _no_render(*args, **kwargs):
    raise AssertionError("the generator rendered, though the bundle caches the anchors' renders")


def test_a_saved_bundle_caches_the_renders_and_the_scan_uses_them_without_rendering(tmp_path, prior, monkeypatch):
    fresh = render_anchors(prior.generator, prior.w)
    assert fresh.shape == (4, 3, 16, 16)  # the tiny generator (16 px) is below RENDER_SIZE: kept at its size
    prior.save(tmp_path / "p")
    assert prior.anchor_renders is None  # saving leaves the object as it was
    loaded = PersonalPrior.load(tmp_path / "p")
    assert loaded.anchor_renders is not None
    assert torch.equal(loaded.anchor_renders, fresh.half().float())  # stored as float16, nothing else lost
    assert loaded.describe()["anchor_renders"] == "cached"
    task = Invert(**WPLUS).bind(loaded)
    monkeypatch.setattr(loaded.generator.synthesis, "forward", _no_render)
    assert torch.equal(task.projector.anchor_renders(torch.device("cpu")), loaded.anchor_renders)


def test_a_cache_of_other_anchors_or_a_broken_file_is_ignored_and_the_anchors_are_rendered(tmp_path, prior):
    prior.save(tmp_path / "p")
    save_anchors(tmp_path / "p" / ANCHORS_FILE, prior.w.flip(0), list(prior.names))  # anchors changed after export
    renders, note = load_anchor_renders(tmp_path / "p" / RENDERS_FILE, prior.w.flip(0))
    assert renders is None and "other anchors" in note
    stale = PersonalPrior.load(tmp_path / "p")
    assert stale.anchor_renders is None
    task = Invert(**WPLUS).bind(stale)
    expected = render_anchors(stale.generator, stale.w)
    assert torch.equal(task.projector.anchor_renders(torch.device("cpu")), expected)

    (tmp_path / "p" / RENDERS_FILE).write_bytes(b"not a safetensors file")
    assert PersonalPrior.load(tmp_path / "p").anchor_renders is None  # loads, renders when needed
    (tmp_path / "p" / RENDERS_FILE).unlink()  # a bundle from before the cache
    old = PersonalPrior.load(tmp_path / "p")
    assert old.anchor_renders is None and old.describe()["anchor_renders"].startswith("not cached")


def test_a_projection_with_random_noise_renders_its_own(tmp_path, prior, monkeypatch):
    prior.save(tmp_path / "p")
    loaded = PersonalPrior.load(tmp_path / "p")
    task = Invert(**WPLUS, noise_mode="random").bind(loaded)
    calls = []
    real = loaded.generator.synthesis.forward
    monkeypatch.setattr(loaded.generator.synthesis, "forward", lambda *a, **k: calls.append(k.get("noise_mode")) or real(*a, **k))
    task.projector.anchor_renders(torch.device("cpu"))
    assert calls == ["random"] * 4


def test_renders_that_do_not_match_the_anchors_are_refused(prior):
    three = torch.zeros(3, 3, 16, 16)  # the prior has 4 anchors
    with pytest.raises(ValueError, match=r"renders must be \[N=4, 3, S, S\] \(one per anchor\), got \(3, 3, 16, 16\)"):
        AnchoredWPlusProjector(prior.generator, PersonalSpace.from_prior(prior), renders=three)
    with pytest.raises(PriorError, match="3 anchor renders for 4 anchors"):
        PersonalPrior(prior.generator, prior.anchors, anchor_renders=three)

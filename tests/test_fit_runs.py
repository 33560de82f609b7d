"""``mystyle-pl fit`` with the shipped configs: one run, one folder; epoch-end checkpoints; nothing overwritten.

The fits run the real LightningCLI (``MyStyleLightningCLI``) on the shipped ``configs/fit/*.yaml``
with a tiny seeded generator, a six-photo album at 32 px and budgets of a few steps.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from mystyle_pl.data.io import write_image
from mystyle_pl.generators import save_generator
from mystyle_pl.lightning_cli import RUN_DIR_ENV, MyStyleLightningCLI, new_run_dir
from mystyle_pl.prior import PersonalPrior
from mystyle_pl.tuning import ExportPrior, export_prior

from .helpers import REPO_ROOT, make_tiny_stylegan2

RES = 32
NUM_PHOTOS = 6


class KillAtEpoch(Callback):
    """Simulates a job killed at the start of ``epoch`` (nothing of that epoch is saved)."""

    def __init__(self, epoch: int = 3):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated kill at epoch {self.epoch}")


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny generator file and an album of six photos of 'a person' (another tiny generator's faces)."""
    root = tmp_path_factory.mktemp("fit_inputs")
    generator = save_generator(make_tiny_stylegan2(RES), root / "tiny32.safetensors")
    person = make_tiny_stylegan2(RES, seed=7)
    with torch.no_grad():
        photos = person(torch.randn(NUM_PHOTOS, person.z_dim, generator=torch.Generator().manual_seed(3)))
    for i, img in enumerate(photos):
        write_image(root / "album" / "images" / f"{i:04d}.png", img)
    return {"generator": generator, "album": root / "album"}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline and silent, with no ~/.netrc or ~/.config/wandb of this machine in the way."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    yield
    import wandb

    wandb.finish()


def fit_args(inputs, config="configs/fit/cpu_quick.yaml", *extra: str, trainer_config: str | None = None) -> list[str]:
    """``fit`` with a shipped config, shrunk to the tiny inputs (a few seconds per epoch on a CPU)."""
    args = ["fit"]
    if trainer_config:
        args += ["--config", str(REPO_ROOT / trainer_config)]
    args += ["--config", str(REPO_ROOT / config)]
    return [
        *args,
        "--data.album", str(inputs["album"]), "--data.resolution", str(RES), "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--model.generator", str(inputs["generator"]), "--model.loss_resolution", str(RES),
        "--model.anchor_steps", "2", "--model.anchor_resolution", str(RES), "--model.anchor_batch_size", "3",
        "--model.anchor_lpips_net", "alex", "--model.val_inversion_steps", "1",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def run_fit(argv: list[str]) -> MyStyleLightningCLI:
    saved, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees both args and sys.argv
    try:
        return MyStyleLightningCLI(args=argv)
    finally:
        sys.argv = saved


def synthesis(path: Path) -> dict[str, torch.Tensor]:
    return PersonalPrior.load(path).generator.synthesis.state_dict()


# ------------------------------------------------------------------ the run folder of the shipped configs


@pytest.mark.slow
@pytest.mark.parametrize(
    "config,trainer_config",
    [
        ("configs/fit/cpu_quick.yaml", None),
        ("configs/fit/mystyle.yaml", "configs/trainer/cpu.yaml"),
        ("configs/fit/official.yaml", "configs/trainer/cpu.yaml"),
        ("configs/fit/demo.yaml", None),
    ],
)
def test_every_fit_config_writes_under_its_run_folder(tiny_inputs, tmp_path, monkeypatch, offline_wandb, config, trainer_config):
    """Logger, checkpoints and prior of each shipped config resolve under --trainer.default_root_dir; the
    checkpoint is written at every epoch end whatever the validation schedule."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "alice"
    argv = fit_args(tiny_inputs, config, "--trainer.default_root_dir", str(run), trainer_config=trainer_config)
    cli = MyStyleLightningCLI(args=argv[1:], run=False)
    trainer = cli.trainer
    assert Path(trainer.default_root_dir) == run
    assert Path(trainer.logger.save_dir) == run, type(trainer.logger).__name__
    [export] = [c for c in trainer.callbacks if isinstance(c, ExportPrior)]
    assert export.target(trainer) == run / "prior"
    [checkpoint] = trainer.checkpoint_callbacks
    assert Path(checkpoint.dirpath) == run / "checkpoints"
    assert checkpoint.save_last and checkpoint._every_n_epochs == 1
    assert checkpoint._save_on_train_epoch_end is True  # not deferred to validation (every 10 / 50 epochs, or never)
    assert not (tmp_path / "outputs").exists()


def test_a_new_folder_per_run_when_none_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    first, second = new_run_dir(tmp_path / "fit"), new_run_dir(tmp_path / "fit")
    assert first != second and first.is_dir() and second.is_dir() and first.parent == second.parent == tmp_path / "fit"
    # A DDP process started by rank 0's launcher (LOCAL_RANK > 0) takes rank 0's folder ...
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert new_run_dir(tmp_path / "fit") == second
    # ... and every rank of a SLURM job agrees without talking to each other.
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert new_run_dir(tmp_path / "fit") == new_run_dir(tmp_path / "fit") == tmp_path / "fit" / "slurm-4242"


# ------------------------------------------------------------------ killed, resumed, never overwritten


@pytest.mark.slow
def test_killed_fit_resumes_and_no_run_overwrites_another(tiny_inputs, tmp_path, monkeypatch, offline_wandb):
    """The case of ../shared/cases/fit-no-epoch-checkpoints: cpu_quick (validation every 10 epochs), killed
    at epoch 3 of 5. Then: resumed to the end; a fit into the same folder refused; a second fit gets its own
    folder; only --overwrite true replaces a prior."""
    monkeypatch.chdir(tmp_path)
    # 1. No folder named: a new run folder under ./outputs/fit; killed at the start of epoch 3.
    with pytest.raises(RuntimeError, match="simulated kill at epoch 3"):
        run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.max_epochs", "5",
                         "--trainer.callbacks+=tests.test_fit_runs.KillAtEpoch", "--trainer.callbacks.epoch=3"))  # fmt: skip
    [run] = list((tmp_path / "outputs" / "fit").iterdir())
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["fit"]  # nothing beside the run folder
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file(), f"no checkpoint to resume from: {sorted(p.name for p in run.rglob('*'))}"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["global_step"] == 3 * 3  # epochs 0-2 done, 3 batches of 2 photos each
    assert (run / "wandb").is_dir() and (run / "config.yaml").is_file() and not (run / "prior").exists()

    # 2. Resumed in its folder: finishes epochs 3 and 4 and writes the prior there.
    cli = run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.max_epochs", "5",
                           "--trainer.default_root_dir", str(run), "--ckpt_path", str(last)))  # fmt: skip
    assert cli.trainer.global_step == 5 * 3 and cli.trainer.current_epoch == 5
    prior = run / "prior"
    assert (prior / "prior.json").is_file()
    stamp = (prior / "prior.json").stat().st_mtime_ns

    # 3. A new fit into that folder is refused before anything runs (its checkpoints would be mixed in) ...
    with pytest.raises(FileExistsError, match=rf"checkpoints of an earlier run.*--ckpt_path {re.escape(str(last))}.*--overwrite true"):
        run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.default_root_dir", str(run)))
    # ... and so is resuming it again, which would replace its prior.
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(prior))} already holds a personal prior.*--overwrite true"):
        run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.max_epochs", "6",
                         "--trainer.default_root_dir", str(run), "--ckpt_path", str(last)))  # fmt: skip
    assert (prior / "prior.json").stat().st_mtime_ns == stamp

    # 4. A second person fitted from the same folder gets a new run folder; the first prior is untouched.
    cli = run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.max_epochs", "1"))
    second = Path(cli.trainer.default_root_dir)
    assert second != run and second.parent == run.parent and (second / "prior" / "prior.json").is_file()
    assert (prior / "prior.json").stat().st_mtime_ns == stamp
    assert not (tmp_path / "outputs" / "prior").exists()

    # 5. Asked for: --overwrite true replaces the prior of a resumed run.
    before = synthesis(prior)
    run_fit(fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.max_epochs", "6",
                     "--trainer.default_root_dir", str(run), "--ckpt_path", str(last), "--overwrite", "true"))  # fmt: skip
    after = synthesis(prior)
    assert any(not torch.equal(before[k], after[k]) for k in before), "the prior was not replaced"


def test_empty_held_out_split_still_checkpoints_every_epoch(tiny_inputs, tmp_path, monkeypatch, offline_wandb):
    """official.yaml: no held-out photos and no validation loop at all; a kill after epoch 1 leaves last.ckpt."""
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill at epoch 1"):
        run_fit(fit_args(tiny_inputs, "configs/fit/official.yaml", "--trainer.max_epochs", "3",
                         "--trainer.default_root_dir", str(run), "--trainer.logger", "mystyle_pl.tuning.RunCSVLogger",
                         "--trainer.callbacks+=tests.test_fit_runs.KillAtEpoch", "--trainer.callbacks.epoch=1"),
                )  # fmt: skip
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 3
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "lightning_logs"]  # the CSV logs too


def test_user_checkpoint_without_epoch_end_setting_is_made_a_resume_point(tiny_inputs, tmp_path, offline_wandb):
    """A ModelCheckpoint added from the command line (no dirpath, no save_on_train_epoch_end, no monitor) lands in
    RUN/checkpoints and saves at epoch end; one that monitors a validation metric is left to validation."""
    run = tmp_path / "run"
    argv = fit_args(tiny_inputs, "configs/fit/cpu_quick.yaml", "--trainer.default_root_dir", str(run),
                    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                    "--trainer.callbacks.filename=extra", "--trainer.callbacks.every_n_epochs=2",
                    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                    "--trainer.callbacks.monitor=val/lpips")  # fmt: skip
    cli = MyStyleLightningCLI(args=argv[1:], run=False)
    shipped, extra, monitored = cli.trainer.checkpoint_callbacks
    assert isinstance(extra, ModelCheckpoint) and extra.filename == "extra"
    assert Path(extra.dirpath) == run / "checkpoints" and extra._save_on_train_epoch_end is True
    assert monitored.monitor == "val/lpips" and monitored._save_on_train_epoch_end is None


# ------------------------------------------------------------------ the Python API refuses too


def test_export_prior_never_replaces_a_prior_unless_asked(tiny_inputs, tmp_path):
    from types import SimpleNamespace

    existing = tmp_path / "run" / "prior"
    existing.mkdir(parents=True)
    (existing / "prior.json").write_text("{}")
    trainer = SimpleNamespace(default_root_dir=str(tmp_path / "run"))
    with pytest.raises(FileExistsError, match=r"run/prior already holds a personal prior.*overwrite=True"):
        ExportPrior().setup(trainer, None, "fit")
    ExportPrior(overwrite=True).setup(trainer, None, "fit")  # asked for: no refusal
    ExportPrior(dirpath=str(tmp_path / "elsewhere")).setup(trainer, None, "fit")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_prior(SimpleNamespace(anchors=None), existing)
    assert (existing / "prior.json").read_text() == "{}"


def test_cli_fit_help_documents_overwrite(capsys, monkeypatch):
    """``fit --help`` through ``main`` (the real program's ``fit --help`` runs in tests/test_cli.py)."""
    from mystyle_pl.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps the help at the terminal's width
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    assert "--overwrite" in out.out and "replace an existing prior" in out.out

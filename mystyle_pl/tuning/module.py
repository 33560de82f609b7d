"""``PersonalTuner``: the LightningModule that tunes a generator into a personal prior.

MyStyle's tuning: train every synthesis parameter on (anchor ``w``, photo) pairs with
``LPIPS + l2_weight * MSE``; the mapping network stays frozen. The official recipe is
batch 1, Adam lr 3e-4, AlexNet LPIPS at full resolution, 1000 passes over the album, fp32
(``configs/fit/official.yaml``). This module adds batching, DDP, mixed precision, a loss
resolution, held-out validation, logging and exact resume.

At ``setup("fit")`` the module computes the anchors of the training photos (cached; see
``mystyle_pl.anchors``) unless the data module already has an anchors file, and hands them
to the data module.

``tune_anchors_lr > 0`` departs from the paper on measurement: the anchors' ``w`` are optimised
with the generator (their own Adam group at that learning rate), so that a short CPU fit need not
bend the generator toward a 25-step inversion's code. The tuned anchors are the ones checkpointed,
measured and exported (docs/fidelity.md, "Session 13").
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn

from .. import load_generator
from ..anchors import InversionSettings, compute_anchors, invert_w
from ..data.anchors_io import Anchors
from ..data.dataset import load_photo
from ..distributed import destroy_process_group_at_exit
from ..generators import Generator
from ..imaging import downsample_to
from ..losses import LPIPS
from ..metrics.image import psnr
from ..precision import emulated_bf16_warning

log = logging.getLogger(__name__)


class PersonalTuner(LightningModule):
    """Tune a generator's synthesis network on one person's photos.

    Args:
        generator: a checkpoint path (native ``.safetensors``, NVIDIA ``.pkl``, rosinality or pSp / e4e / ReStyle
            ``.pt``) or an asset name such as ``mobilestylegan-ffhq`` or ``stylegan2-ffhq-1024``.
        lpips_net: LPIPS backbone of the tuning loss: ``alex`` (official) or ``vgg``.
        l2_weight: weight of the pixel MSE next to LPIPS (official: 1.0).
        loss_resolution: compute the loss on images area-downsampled to this size; None = full resolution
            (official). 256 is several times cheaper at 1024 px with little difference in LPIPS.
        optimizer: optimizer factory for the synthesis parameters; None = ``Adam(lr=3e-4)`` (official).
        scheduler: optional learning-rate scheduler factory (stepped every optimizer step).
        anchor_steps: W-inversion steps per anchor (see ``mystyle_pl.anchors.InversionSettings``).
        anchor_lr: W-inversion learning rate.
        anchor_lpips_net: LPIPS trunk of the W inversion (``vgg``, StyleGAN2's projector; ``alex`` costs
            about half on a CPU).
        anchor_resolution: W-inversion loss resolution.
        anchor_batch_size: photos inverted at once.
        anchor_noise_reg: > 0 also optimises per-photo noise maps during the anchors' inversion, with
            this weight on StyleGAN2's noise regulariser (1e5 there); 0 = fixed noise (default).
        anchor_precision: the render inside the anchors' inversion steps: ``32`` (default), ``bf16-mixed`` or
            ``auto`` (bf16-mixed where the device has native bfloat16; ``mystyle_pl.precision``). The tuning
            itself follows ``trainer.precision``.
        anchors_cache: folder for cached anchors; None = ``$MYSTYLE_HOME/anchors``. The cache holds the anchors
            as inverted, before any tuning.
        tune_anchors_lr: > 0 optimises the anchors' ``w [N, w_dim]`` together with the generator (Adam, this
            learning rate, in W's units); 0 = anchors fixed (the paper). Needs ``data.hflip`` false (a mirrored
            photo has its own anchor). The prior exports the tuned anchors.
        val_inversion_steps: W-inversion steps per held-out photo at each validation.
        num_hull_samples: samples from the anchors' convex hull in the image grids.
        noise_mode: the generator's noise inputs during tuning: ``const`` (deterministic) or ``random``.
        compile: wrap the synthesis network in ``torch.compile``.
    """

    def __init__(
        self,
        generator: str = "mobilestylegan-ffhq",
        lpips_net: str = "alex",
        l2_weight: float = 1.0,
        loss_resolution: int | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        anchor_steps: int = 300,
        anchor_lr: float = 0.05,
        anchor_lpips_net: str = "vgg",
        anchor_resolution: int = 256,
        anchor_batch_size: int = 8,
        anchor_noise_reg: float = 0.0,
        anchor_precision: str = "32",
        anchors_cache: str | None = None,
        tune_anchors_lr: float = 0.0,
        val_inversion_steps: int = 100,
        num_hull_samples: int = 4,
        noise_mode: str = "const",
        compile: bool = False,
    ):
        super().__init__()
        if not tune_anchors_lr >= 0:
            raise ValueError(f"tune_anchors_lr must be >= 0 (0 = anchors fixed), got {tune_anchors_lr}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.generator: Generator = load_generator(generator)
        self.generator.mapping.requires_grad_(False)
        self.lpips = LPIPS(lpips_net)  # frozen; its weights are non-persistent buffers (not checkpointed)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.anchor_settings = InversionSettings(
            steps=anchor_steps, lr=anchor_lr, resolution=anchor_resolution, batch_size=anchor_batch_size,
            noise_reg=anchor_noise_reg, lpips_net=anchor_lpips_net, precision=anchor_precision,
        )
        # The anchors' w as a parameter when they are tuned (tune_anchors_lr > 0), created at setup("fit").
        self.anchor_w: torch.nn.Parameter | None = None
        self.anchors = None  # as inverted or loaded; the property below reads the tuned w from anchor_w
        self._batch_start: float | None = None
        # The compiled synthesis (model.compile) is kept out of the module tree, so that its
        # weights are not registered (and checkpointed) a second time.
        self.__dict__["_compiled_synthesis"] = None

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str) -> None:
        if self._trainer is not None and self._trainer.world_size > 1:
            destroy_process_group_at_exit()
        if self.hparams.compile and self.__dict__["_compiled_synthesis"] is None:
            self.__dict__["_compiled_synthesis"] = torch.compile(self.generator.synthesis)
        if stage != "fit":
            return
        slow = emulated_bf16_warning(self.trainer.precision, self.device)
        if slow is not None:
            rank_zero_warn(slow)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "attach_anchors"):
            raise RuntimeError("PersonalTuner needs a PersonalPhotosDataModule (data.class_path) to find its photos")
        if self.hparams.tune_anchors_lr > 0 and getattr(datamodule, "hflip", False):
            raise ValueError(  # checked before the anchors' inversions, which take minutes
                "model.tune_anchors_lr > 0 tunes one anchor per photo, and data.hflip pairs mirrored photos with "
                "other anchors: set data.hflip false or model.tune_anchors_lr 0"
            )
        if datamodule.anchor_set is not None:
            self.anchors = datamodule.anchor_set
        else:
            self.anchors = self.compute_anchors(datamodule)
            datamodule.attach_anchors(self.anchors)
        if self.hparams.tune_anchors_lr > 0:
            self.anchor_w = torch.nn.Parameter(self.anchors.w.detach().clone().float().to(self.device))

    @property
    def anchors(self) -> Anchors | None:
        """The training photos' anchors (what callbacks measure, grids show, checkpoints hold and the prior
        exports): as inverted or loaded, or, while ``tune_anchors_lr > 0``, with the tuned ``w`` (a CPU copy)."""
        base = self.__dict__.get("_anchors")
        if base is None or self.anchor_w is None:
            return base
        metadata = {**base.metadata, "tuned_with_generator": {"lr": self.hparams.tune_anchors_lr}}
        return Anchors(w=self.anchor_w.detach().float().cpu(), names=list(base.names), metadata=metadata)

    @anchors.setter
    def anchors(self, value: Anchors | None) -> None:
        self.__dict__["_anchors"] = value

    def compute_anchors(self, datamodule) -> Anchors:
        """Invert the training photos into W (each rank its shard; gathered; cached)."""
        photos = {p.name: p for p in datamodule.photos}
        names = datamodule.train_names
        resolution = self.generator.img_resolution
        anchors = compute_anchors(
            self.generator,
            names,
            lambda i: load_photo(photos[names[i]].path, resolution),
            settings=self.anchor_settings,
            cache_dir=self.hparams.anchors_cache,
            device=self.device,
            rank=self.global_rank,
            world_size=self.trainer.world_size,
            progress=self.global_rank == 0,
        )
        log.info("anchors: %d photos, mean reconstruction LPIPS %.4f", len(names), anchors.metadata.get("lpips_mean", float("nan")))
        return anchors

    def on_fit_start(self) -> None:
        # Lightning (>= 2.2) keeps the modes modules were left in, and the anchors' inversion in setup() leaves
        # the generator in eval mode. Tuning is training: StyleGAN2's modulated convolutions take the official
        # training path for batches (activations scaled around one shared convolution, not a grouped convolution
        # of per-sample weights: stylegan2.py, fused_modconv), and Lightning no longer warns that
        # "N module(s) [are] in eval mode at the start of training" on every fit.
        self.train()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.generator.synthesis.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.Adam(params, lr=3e-4)
        if self.anchor_w is not None:
            optimizer.add_param_group({"params": [self.anchor_w], "lr": self.hparams.tune_anchors_lr})
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    # ------------------------------------------------------------------ training

    def render(self, w: torch.Tensor) -> torch.Tensor:
        """``w [B, w_dim]`` (or ``ws [B, num_ws, w_dim]``) -> images at the generator's resolution."""
        ws = self.generator.broadcast_w(w) if w.ndim == 2 else w
        synthesis = self.__dict__["_compiled_synthesis"] or self.generator.synthesis
        return synthesis(ws, noise_mode=self.hparams.noise_mode)

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image ``lpips``, ``mse`` and their weighted sum ``loss`` (each ``[B]``)."""
        res = self.hparams.loss_resolution or min(fake.shape[-1], real.shape[-1])
        fake, real = downsample_to(fake, res), downsample_to(real.to(fake.dtype), res)
        if fake.shape != real.shape:
            raise ValueError(
                f"rendered {tuple(fake.shape)} and photos {tuple(real.shape)} differ after resizing to {res}: "
                "set model.loss_resolution to at most the smaller size"
            )
        lp = self.lpips(fake, real)
        mse = (fake.float() - real.float()).square().mean(dim=(1, 2, 3))
        return {"loss": lp + self.hparams.l2_weight * mse, "lpips": lp, "mse": mse}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "w" not in batch:
            raise RuntimeError("training batches carry no anchors 'w': the data module has no anchors attached")
        fake = self.render(self.batch_w(batch))
        losses = self.reconstruction_loss(fake, batch["image"])
        loss = losses["loss"].mean()
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/lpips", losses["lpips"].mean(), batch_size=bs)
        self.log("train/mse", losses["mse"].mean(), batch_size=bs)
        self.log("train/psnr", psnr(fake.detach(), batch["image"], clamp=False).mean(), batch_size=bs)
        return loss

    def batch_w(self, batch: dict[str, Any]) -> torch.Tensor:
        """The anchors ``w [B, w_dim]`` of a batch: the data module's, or the tuned rows (``tune_anchors_lr > 0``)."""
        if self.anchor_w is None:
            return batch["w"]
        rows_of = {name: i for i, name in enumerate(self.__dict__["_anchors"].names)}
        try:
            rows = [rows_of[name] for name in batch["name"]]
        except KeyError as e:
            raise RuntimeError(f"training photo {e.args[0]!r} has no tuned anchor (anchors: {len(rows_of)} photos)") from None
        return self.anchor_w[rows]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        if self._batch_start is not None:
            seconds = time.perf_counter() - self._batch_start
            images = batch["image"].shape[0] * self.trainer.world_size
            self.log("train/images_per_sec", images / max(seconds, 1e-9), batch_size=batch["image"].shape[0])
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=1)

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Invert each held-out photo into W under the current generator; log LPIPS and PSNR."""
        # Inversion needs gradients; Lightning validates under no_grad (and inference mode unless
        # trainer.inference_mode is false). Clone the batch out of inference mode first.
        with torch.inference_mode(False), torch.enable_grad():
            real = batch["image"].clone()
            settings = InversionSettings(
                steps=self.hparams.val_inversion_steps,
                lr=self.anchor_settings.lr,
                resolution=self.anchor_settings.resolution,
                lpips_net=self.anchor_settings.lpips_net,
            )
            was_training = self.generator.training
            result = invert_w(self.generator.eval(), real, settings, lpips=self._inversion_lpips())
            self.generator.train(was_training)
        with torch.no_grad():
            fake = self.render(result.w)
            losses = self.reconstruction_loss(fake, real)
        bs = real.shape[0]
        self.log("val/lpips", losses["lpips"].mean(), prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/psnr", psnr(fake, real, clamp=False).mean(), batch_size=bs, sync_dist=True)

    def _inversion_lpips(self) -> LPIPS:
        if self.anchor_settings.lpips_net == self.hparams.lpips_net:
            return self.lpips
        if not hasattr(self, "_val_lpips"):
            object.__setattr__(self, "_val_lpips", LPIPS(self.anchor_settings.lpips_net).to(self.device))
        return self._val_lpips

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen mapping network travels with the source generator, not with every checkpoint.
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("generator.mapping.") or k == "anchor_w"]:
            del state[key]  # the tuned anchors travel in checkpoint["anchors"]
        # Plain tensors/ints only, so the checkpoint loads with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
        }
        if self.anchors is not None:
            checkpoint["anchors"] = {"w": self.anchors.w.cpu(), "names": list(self.anchors.names)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.generator.mapping.state_dict().items():
            state.setdefault(f"generator.mapping.{key}", value)
        rng = checkpoint.get("rng_states")
        if rng:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])
        saved = checkpoint.get("anchors")
        state.pop("anchor_w", None)  # written by no release, but never let it clash with the anchors below
        if saved is not None:
            self.anchors = Anchors(w=saved["w"], names=list(saved["names"]), metadata={"source": "checkpoint"})
            if self.anchor_w is not None:  # resuming a fit that tunes its anchors: start from the saved ones
                state["anchor_w"] = saved["w"].to(self.anchor_w.dtype)

"""The evaluation of a personal prior, one job per module (the public API is :mod:`mystyle_pl.evaluate`).

* :mod:`.degradations`: the synthetic degradations (blind, super-resolution, inpainting holes) and the
  no-prior baselines (bicubic, hole filling);
* :mod:`.inputs`: the options' vocabulary (conditions, methods, betas), the held-out photos and the real pairs;
* :mod:`.runner`: the run: :func:`~.runner.evaluate` restores, measures and writes the outputs;
* :mod:`.report`: image strips, the beta-sweep plot and ``report.md``;
* :mod:`.wandb_log`: the same results as W&B tables and images.
"""

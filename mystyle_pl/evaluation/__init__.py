"""The evaluation of a personal prior, one job per module (the public API is :mod:`mystyle_pl.evaluate`).

* :mod:`.degradations`: the synthetic degradations (blind, super-resolution, inpainting holes) and the
  no-prior baselines (bicubic, hole filling);
* :mod:`.inputs`: the options' vocabulary (conditions, methods, betas), the held-out photos and the real pairs;
* :mod:`.runner`: the run: :func:`~.runner.evaluate` checks the options, loads the prior, photos and models,
  and writes ``metrics.json`` and the report;
* :mod:`.session`: one run's state: builds the conditions, restores them with every method, measures, the beta sweep;
* :mod:`.aggregates`: mean / spread of the per-image records and the input dependence;
* :mod:`.generic_prior`: the untuned generator of the ``generic`` method (or why it is left out);
* :mod:`.report`: image strips, the beta-sweep plot and ``report.md``;
* :mod:`.wandb_log`: the same results as W&B tables and images.
"""

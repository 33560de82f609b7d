"""The untuned generator the ``generic`` method projects with: loaded from the prior's
``generator_source`` (or a given generator / asset / checkpoint) and checked against the prior's shape;
when it is unavailable the column is left out with the reason (:func:`_resolve_generic`)."""

from __future__ import annotations

import logging

from .. import load_generator  # the package's: asset names too (generators.load_generator takes files only)
from ..generators import Generator

log = logging.getLogger(__name__)  # under "mystyle_pl.evaluation", whose level the CLI sets


def _resolve_generic(prior, generic, device):
    """(generator or None, a note for the report)."""
    if isinstance(generic, Generator):
        return _compatible(generic.to(device).eval(), prior, "the given generator")
    source = generic if generic is not None else prior.info.get("generator_source")
    if not source:
        return None, "none (the prior names no generator_source; pass --generic GENERATOR)"
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

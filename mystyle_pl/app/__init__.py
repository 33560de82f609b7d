"""The browser app: ``mystyle-pl serve --prior PRIOR_DIR`` (Gradio, the optional extra ``mystyle-pl[app]``).

* :class:`~.engine.AppEngine`: the work (no gradio): read an upload, find and mark the faces,
  run a task on the person's face(s) only (:mod:`mystyle_pl.group`), write ``result.png`` and
  ``record.json``.
* :func:`build_app`: the Gradio page on an engine (``ui.py``).
* :func:`serve`: both, launched on ``127.0.0.1`` unless a public host or ``share`` is asked for.

gradio is imported lazily, in :func:`require_gradio` only: the core install does not need it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from .engine import AppEngine, AppError, RunOutput, Upload, resolve_device

INSTALL_HINT = "pip install 'mystyle-pl[app]'"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 7860


def require_gradio():
    """Import and return ``gradio``; a :class:`~mystyle_pl.errors.UserError` naming the extra when it is
    missing. gradio is imported here and not at the top of the module: the app is optional."""
    try:
        import gradio  # noqa: PLC0415 (optional extra)
    except ImportError as e:
        raise UserError(f"the app needs gradio, which is not installed ({e}): {INSTALL_HINT}") from None
    return gradio


def prepare_environment(out_dir: str | os.PathLike) -> Path:
    """Point gradio's upload cache into ``out_dir/cache`` (so uploads and served copies stay inside
    the app's output folder) and turn its analytics off. Call before :func:`build_app`."""
    cache = Path(out_dir) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return cache


def build_app(engine: AppEngine, title: str = "mystyle-pl"):
    """The Gradio page (a ``gradio.Blocks``) on ``engine``; see :mod:`.ui`. Raises ``UserError``
    without gradio."""
    require_gradio()
    prepare_environment(engine.out_dir)
    from .ui import build_app as _build  # noqa: PLC0415  # lazy: ui imports gradio (optional dependency)

    return _build(engine, title=title)


def is_public(host: str, share: bool) -> bool:
    """Whether the app is reachable from other machines (a non-loopback host or a share link)."""
    return bool(share) or host not in LOCAL_HOSTS


def launch(
    engine: AppEngine,
    host: str = "127.0.0.1",  # the address to bind; 127.0.0.1 = this machine only
    port: int | None = DEFAULT_PORT,  # None = the first free port from 7860
    share: bool = False,  # a public gradio.live link (opt-in)
    block: bool = True,  # False: return at once, the server running in a thread (tests)
    max_file_size: str = "60mb",  # uploads above this are refused by the server
    quiet: bool = False,
) -> Any:
    """Build the page on ``engine``, start its queue (one projection at a time: every submission
    waits its turn and completes) and serve it. Returns the ``gradio.Blocks`` (running)."""
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=1, max_size=64)
    if not quiet:
        where = "PUBLIC: reachable from other machines" if is_public(host, share) else "local only (this machine)"
        print(f"mystyle-pl serve: prior {engine.prior_dir}, device {engine.device}, outputs in {engine.out_dir}\n"
              f"mystyle-pl serve: binding {host}:{port or 'auto'} ({where})"
              + ("; --share asks gradio for a public link" if share else ""), flush=True)  # fmt: skip
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
                max_file_size=max_file_size, show_error=False, footer_links=[],
                css="#status, #message {min-height: 2em}")  # fmt: skip
    return demo


def serve(
    prior: str | os.PathLike,  # the personal prior bundle folder
    host: str = "127.0.0.1",
    port: int | None = DEFAULT_PORT,
    device: str = "auto",
    share: bool = False,
    out: str | os.PathLike | None = None,  # results folder; None = a temporary folder removed on exit
    preset: str | None = None,  # projection preset (tasks.presets); None = the Python API's per-task default
    steps: int | None = None,  # projection steps over the preset's
    faces: str = "person",  # person | all | largest
) -> int:
    """``mystyle-pl serve``: load the prior, serve the app until interrupted, clean up. Returns 0."""
    require_gradio()
    if not Path(prior).is_dir():
        raise UserError(f"{prior}: prior bundle not found (--prior: a folder written by fit's ExportPrior or `mystyle-pl export`)")
    try:
        engine = AppEngine(prior, device=device, out_dir=out, preset=preset, steps=steps, faces=faces)
    except AppError as e:
        raise UserError(str(e)) from None
    demo = None
    try:
        demo = launch(engine, host=host, port=port, share=share, block=False)
        print(f"mystyle-pl serve: open {demo.local_url}" + (f" (public link: {demo.share_url})" if demo.share_url else "")
              + "; Ctrl-C stops", flush=True)  # fmt: skip
        demo.block_thread()
    except KeyboardInterrupt:
        print("mystyle-pl serve: stopped", file=sys.stderr)
    finally:
        if demo is not None:
            demo.close()
        engine.close()
    return 0


__all__ = ["AppEngine", "AppError", "RunOutput", "Upload", "build_app", "is_public", "launch", "require_gradio",
           "resolve_device", "serve"]  # fmt: skip

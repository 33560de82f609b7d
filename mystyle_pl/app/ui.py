"""The Gradio page on top of :class:`~mystyle_pl.app.engine.AppEngine`.

Imported only through :func:`mystyle_pl.app.build_app` / :func:`mystyle_pl.app.serve`, after
:func:`mystyle_pl.app.require_gradio` has checked that the optional extra is installed (gradio is
imported at the top of this module on purpose: the package never imports it eagerly).

Element ids (the browser tests find the page's parts by them): ``upload``, ``faces``, ``message``;
tabs ``tab-restore``, ``tab-superres``, ``tab-inpaint``, ``tab-edit``, ``tab-samples`` with buttons
``run-restore``, ``run-superres``, ``run-inpaint``, ``run-edit``, ``run-samples``; the inpainting
editor ``inpaint-editor``; results ``before``, ``after``, ``result``, ``downloads``, ``status``;
new photos ``samples``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from .engine import AppEngine, AppError, Upload

log = logging.getLogger(__name__)

EDITOR_SIDE = 1024  # the inpainting canvas shows the photo reduced to at most this side (px)


def _warn(text: str) -> str:
    return f"**Problem:** {text}"


def _factors(resolution: int) -> list[int]:
    """Super-resolution factors offered: powers of two leaving at least a 4 px input crop."""
    return [f for f in (2, 4, 8, 16, 32) if resolution // f >= 4 and resolution % f == 0] or [2]


def _hole_from_editor(value, photo_shape: tuple[int, int]) -> np.ndarray | None:
    """The painted strokes of a gr.ImageEditor value -> bool ``[H, W]`` at the photo's size (True =
    hole), or None when nothing was painted. Strokes are the layers' opaque pixels."""
    if not isinstance(value, dict):
        return None
    layers = [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    if not layers:
        return None
    painted = np.zeros(layers[0].shape[:2], bool)
    for layer in layers:
        if layer.ndim == 3 and layer.shape[2] == 4:
            painted |= layer[..., 3] > 0
        elif layer.ndim == 3:
            painted |= layer.max(axis=2) > 0
    if not painted.any():
        return None
    h, w = photo_shape
    if painted.shape != (h, w):
        painted = np.asarray(Image.fromarray(painted.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    return painted


def _editor_background(photo: np.ndarray) -> np.ndarray:
    h, w = photo.shape[:2]
    scale = min(1.0, EDITOR_SIDE / max(h, w))
    if scale >= 1:
        return photo
    return np.asarray(Image.fromarray(photo).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS))


def build_app(engine: AppEngine, title: str = "mystyle-pl") -> gr.Blocks:
    """The page: one upload shared by the tabs Restore, Super-resolve, Inpaint, Edit, New photos;
    before / after and the whole photo below; downloads of the PNG and the run's record."""
    sessions: dict[str, set[str]] = {}  # session hash -> uploaded files to delete when it closes
    r = engine.resolution
    n_dirs = engine.edit_directions

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 1800)) as demo:
        gr.Markdown(f"# {title}: restore your own photos with your personal prior\n{engine.describe()}")
        upload_state = gr.State(None)
        with gr.Row():
            upload = gr.File(label="Photo (JPEG, PNG, WebP, HEIC where supported; any size)", type="filepath",
                             elem_id="upload")  # fmt: skip
            faces = gr.Image(label="Faces found (green: processed, with the distance to the person)", type="numpy",
                             interactive=False, elem_id="faces")  # fmt: skip
        message = gr.Markdown("Upload a photo of the person.", elem_id="message")

        with gr.Tabs():
            with gr.Tab("Restore", elem_id="tab-restore"):
                gr.Markdown("Blind restoration of a blurry, low-resolution or compressed photo: the person's face is "
                            "re-synthesised from the prior and pasted back; the rest of the photo is untouched.")  # fmt: skip
                run_restore = gr.Button("Restore", variant="primary", elem_id="run-restore")
            with gr.Tab("Super-resolve", elem_id="tab-superres"):
                factors = _factors(r)
                factor = gr.Radio(factors, value=factors[0], label="Factor (the whole photo is enlarged by it)",
                                  elem_id="factor")  # fmt: skip
                run_superres = gr.Button("Super-resolve", variant="primary", elem_id="run-superres")
            with gr.Tab("Inpaint", elem_id="tab-inpaint"):
                gr.Markdown("Paint over the hole or the occluder with the brush, then run.")
                editor = gr.ImageEditor(label="Paint the hole", type="numpy", image_mode="RGBA", sources=(),
                                        brush=gr.Brush(colors=["#ff00ff"], default_size=24), layers=False,
                                        transforms=(), elem_id="inpaint-editor")  # fmt: skip
                run_inpaint = gr.Button("Inpaint", variant="primary", elem_id="run-inpaint")
            with gr.Tab("Edit", elem_id="tab-edit"):
                gr.Markdown("Move the face along the generator's principal directions (in standard deviations of "
                            "W), or along a direction file (.pt / .npy, one W vector).")  # fmt: skip
                sliders = [gr.Slider(-3, 3, value=0, step=0.25, label=f"Principal direction {i}", elem_id=f"direction-{i}")
                           for i in range(n_dirs)]  # fmt: skip
                with gr.Row():
                    direction_file = gr.File(label="Direction file (.pt / .npy)", type="filepath",
                                             elem_id="direction-file")  # fmt: skip
                    direction_strength = gr.Slider(-5, 5, value=0, step=0.25, label="Strength along the file's direction",
                                                   elem_id="direction-strength")  # fmt: skip
                run_edit = gr.Button("Edit", variant="primary", elem_id="run-edit")
            with gr.Tab("New photos", elem_id="tab-samples"):
                with gr.Row():
                    n_samples = gr.Slider(1, 8, value=4, step=1, label="How many", elem_id="n-samples")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                run_samples = gr.Button("New photos of the person", variant="primary", elem_id="run-samples")
                samples = gr.Gallery(label="New photos", columns=4, elem_id="samples")

        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            before = gr.Image(label="Before (the face as the task got it)", type="numpy", interactive=False, elem_id="before")
            after = gr.Image(label="After", type="numpy", interactive=False, elem_id="after")
        result = gr.Image(label="Result: the whole photo", type="numpy", interactive=False, elem_id="result", format="png")
        downloads = gr.File(label="Downloads: the PNG and the run's record (JSON)", file_count="multiple",
                            interactive=False, elem_id="downloads")  # fmt: skip

        def on_upload(path, request: gr.Request):
            if request is not None and path:
                sessions.setdefault(request.session_hash, set()).add(str(path))
            try:
                up = engine.read_upload(path)
            except AppError as e:
                return None, None, _warn(str(e)), None
            except Exception as e:  # never crash the page
                log.exception("reading an upload failed")
                return None, None, _warn(f"the photo could not be analysed ({type(e).__name__}: {e})"), None
            background = _editor_background(up.photo)
            editor_value = {"background": background, "layers": [], "composite": background}
            text = up.message if up.person_found else _warn(up.message)
            return up, up.marked, text, editor_value

        upload.change(on_upload, inputs=[upload], outputs=[upload_state, faces, message, editor], concurrency_limit=2)

        def run_task(task: str, up: Upload | None, progress: gr.Progress, **kw):
            if up is None:
                raise AppError("Upload a photo of the person first (and wait for its faces to be marked).")
            progress(0, desc="starting")
            out = engine.run(task, up, status=lambda s: progress(None, desc=s), **kw)
            return (out.before, out.after, out.photo, [str(out.png), str(out.record_path)], out.message)

        def guarded(work):
            """The task's outputs, or a message in the page for any failure (the page never crashes)."""
            try:
                return work()
            except AppError as e:
                return None, None, None, None, _warn(str(e))
            except Exception as e:
                log.exception("a task failed")
                return None, None, None, None, _warn(f"the task failed ({type(e).__name__}: {e})")

        outputs = [before, after, result, downloads, status]

        def do_restore(up, progress=gr.Progress(track_tqdm=True)):
            return guarded(lambda: run_task("restore", up, progress))

        def do_superres(up, f, progress=gr.Progress(track_tqdm=True)):
            return guarded(lambda: run_task("super_resolve", up, progress, factor=int(f)))

        def do_inpaint(up, value, progress=gr.Progress(track_tqdm=True)):
            def work():
                if up is None:
                    raise AppError("Upload a photo of the person first.")
                return run_task("inpaint", up, progress, hole=_hole_from_editor(value, up.photo.shape[:2]))
            return guarded(work)

        def do_edit(data, progress=gr.Progress(track_tqdm=True)):  # data: {component: value} (a set of inputs)
            return guarded(lambda: run_task(
                "edit", data[upload_state], progress, sliders=[data[s] for s in sliders],
                direction_file=data[direction_file], direction_strength=float(data[direction_strength] or 0)))

        clear = dict(fn=lambda: "Working...", outputs=[status], queue=False)
        run_restore.click(**clear).then(do_restore, [upload_state], outputs)
        run_superres.click(**clear).then(do_superres, [upload_state, factor], outputs)
        run_inpaint.click(**clear).then(do_inpaint, [upload_state, editor], outputs)
        run_edit.click(**clear).then(do_edit, {upload_state, direction_file, direction_strength, *sliders}, outputs)

        def do_samples(n, s):
            try:
                images, png, rec = engine.sample(int(n), seed=None if s is None else int(s))
            except AppError as e:
                return None, None, _warn(str(e))
            except Exception as e:
                log.exception("sampling failed")
                return None, None, _warn(f"sampling failed ({type(e).__name__}: {e})")
            return images, [str(png), str(rec)], f"{len(images)} new photo(s) of the person (seed {s})."

        run_samples.click(do_samples, [n_samples, seed], [samples, downloads, status])

        def on_close(request: gr.Request):
            for p in sessions.pop(getattr(request, "session_hash", None), set()):
                try:
                    Path(p).unlink(missing_ok=True)
                except OSError:
                    pass

        demo.unload(on_close)
    return demo

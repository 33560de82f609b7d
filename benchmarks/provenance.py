"""Provenance benchmark: what labelling costs and how well the watermark survives.

Over the shared albums (``../shared/data/albums/*``, never committed): each album's first
``--refs`` reference photos (FFHQ-aligned 512 px) stand in for generated crops, and ``gt.png``
padded into a larger canvas stands in for a photo aligned here and pasted back (the crop is
marked, then pasted back by the project's own paste-back). Prints one table:

- seconds per image for marking + XMP + signing (install key), the mark's PSNR in the mark box
  (crops) and over the pasted face (photos);
- detection rate and bit accuracy after: PNG as written, JPEG 90 / 75 / 50, a half-size resize,
  a 5% crop of the border, metadata stripped (pixels re-encoded without any metadata);
- false detections on the albums' original (unmarked) photos.

``--crop-sizes 64,128,170,256``: instead, the smallest crop that carries the mark: each album's
reference photos resized to each side, marked whatever their size (the minimum is what this
measures), and read back as crops after PNG, JPEG 90 / 75 and a half-size resize; the mark's PSNR
in the mark box; false detections on the same crops unmarked. The minimum
(:data:`~mystyle_pl.provenance.watermark.MIN_CROP_PX`) is the smallest side detected 100% through
JPEG 75 and the resize.

Run: ``python benchmarks/provenance.py [--data ../shared/data] [--refs 2] [--crop-sizes 64,128,170,256]``
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mystyle_pl.data.io import read_image, to_tensor  # noqa: E402
from mystyle_pl.provenance.keys import signing_key  # noqa: E402
from mystyle_pl.provenance.label import labelled_bytes  # noqa: E402
from mystyle_pl.provenance.manifest import Label, sha256_bytes  # noqa: E402
from mystyle_pl.provenance.watermark import MARK_BOX, find_watermark, mark_crop, payload_bits, read_crop  # noqa: E402
from mystyle_pl.tasks.pasteback import load_task_photo, paste_into_photo  # noqa: E402

RUN_ID = 0x2F17A5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def jpeg(a, q):
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="JPEG", quality=q)
    return np.asarray(Image.open(buffer).convert("RGB"))


def half(a):
    return np.asarray(Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2), Image.Resampling.BICUBIC))


def border(a):
    h, w = a.shape[:2]
    return a[h // 20: h - h // 20, w // 20: w - w // 20]


def stripped(data: bytes) -> np.ndarray:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="PNG")  # no iTXt, no caBX
    return read_image(buffer.getvalue())


ATTACKS = {"PNG as written": lambda a: a, "JPEG 90": lambda a: jpeg(a, 90), "JPEG 75": lambda a: jpeg(a, 75),
           "JPEG 50": lambda a: jpeg(a, 50), "half-size resize": half, "5% border crop": border}  # fmt: skip


def bit_accuracy(image: np.ndarray, where: str) -> float:
    """Bits read right (without error correction) in the crop reading, or in the found face."""
    from mystyle_pl.data.align import align_face
    from mystyle_pl.data.faces import default_analyzer

    truth = payload_bits(RUN_ID).astype(bool)
    best = float(np.mean((read_crop(image)[1] > 0.5) == truth))
    if where == "photo" or best < 1:
        for face in default_analyzer().analyze(image, describe=False)[:1]:
            aligned, _ = align_face(image, face.landmarks, resolution=512)
            best = max(best, float(np.mean((read_crop(aligned)[1] > 0.5) == truth)))
    return best


SIZE_ATTACKS = ("PNG as written", "JPEG 90", "JPEG 75", "half-size resize")


def crop_sizes(albums: list[Path], refs: int, sizes: list[int]) -> None:
    """The size sweep (see the module docstring): one table row per crop side."""
    print(f"\nwatermark by crop size: {len(albums)} albums, {refs} reference crop(s) each, read as crops\n")
    print("| crop side | mark box | " + " | ".join(SIZE_ATTACKS) + " | PSNR (mark box) | false detections |")
    print("| --- | --- | " + " | ".join("---" for _ in SIZE_ATTACKS) + " | --- | --- |")
    for size in sizes:
        found, psnrs, false, n = dict.fromkeys(SIZE_ATTACKS, 0), [], 0, 0
        x0, y0, x1, y1 = (round(f * size) for f in MARK_BOX)
        for album in albums:
            for ref in sorted((album / "refs").glob("*.png"))[:refs]:
                crop = np.asarray(Image.open(ref).convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
                marked = mark_crop(crop, RUN_ID, check_size=False)
                psnrs.append(psnr(marked[y0:y1, x0:x1], crop[y0:y1, x0:x1]))
                for name in SIZE_ATTACKS:
                    got = find_watermark(ATTACKS[name](marked), search_faces=False)
                    found[name] += got.found and got.run_id == f"{RUN_ID:06x}"
                false += find_watermark(crop, search_faces=False).found
                n += 1
        cells = [f"{found[name]}/{n}" for name in SIZE_ATTACKS]
        print(f"| {size} px | {x1 - x0} px | " + " | ".join(cells) + f" | {np.mean(psnrs):.1f} dB | {false}/{n} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MYSTYLE_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--refs", type=int, default=2, help="reference photos per album used as crops")
    parser.add_argument("--crop-sizes", default=None, metavar="SIDES",
                        help="comma-separated crop sides in px (e.g. 64,128,170,256): measure the smallest crop that "
                             "carries the mark instead of the main table")  # fmt: skip
    args = parser.parse_args()
    albums = sorted(p for p in (Path(args.data) / "albums").iterdir() if p.is_dir())
    if args.crop_sizes:
        crop_sizes(albums, args.refs, [int(v) for v in args.crop_sizes.split(",")])
        return
    os.environ.setdefault("MYSTYLE_HOME", tempfile.mkdtemp(prefix="mystyle-bench-"))
    key = signing_key()
    warm = mark_crop(np.full((256, 256, 3), 128, np.uint8), RUN_ID)  # loads OpenCV and c2pa: not a per-image cost
    labelled_bytes(warm, "png", Label("created", "bench"), key, "warm.png")
    rows: dict[str, dict[str, list]] = {}
    cost, psnrs, originals = [], {"crop": [], "photo": []}, []  # cost: (wall s, CPU s) of marking + XMP + signing
    for album in albums:
        refs = sorted((album / "refs").glob("*.png"))[: args.refs]
        photo = np.pad(read_image(album / "gt.png"), ((100, 60), (180, 40), (0, 0)), mode="reflect")
        originals += [read_image(r) for r in refs] + [photo]
        items = []
        for ref in refs:
            crop = read_image(ref)
            t, c = time.perf_counter(), time.process_time()
            marked = mark_crop(crop, RUN_ID)
            original = ref.read_bytes()
            data = labelled_bytes(marked, "png", Label("edited", "bench", ingredient_sha256=sha256_bytes(original)), key,
                                  "crop.png", ingredient=original)  # fmt: skip
            cost.append((time.perf_counter() - t, time.process_time() - c))
            x0, y0, x1, y1 = (round(f * crop.shape[0]) for f in MARK_BOX)
            psnrs["crop"].append(psnr(marked[y0:y1, x0:x1], crop[y0:y1, x0:x1]))
            items.append(("crop", marked, data))
        task_photo = load_task_photo(photo, size=512, align="always", name=album.name)
        crop8 = (task_photo.image.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy())
        t, c = time.perf_counter(), time.process_time()
        marked_crop = mark_crop(crop8, RUN_ID)
        spent = (time.perf_counter() - t, time.process_time() - c)
        pasted = paste_into_photo(task_photo, to_tensor(marked_crop)[0])  # paste-back: not a labelling cost
        original = (album / "gt.png").read_bytes()
        t, c = time.perf_counter(), time.process_time()
        data = labelled_bytes(pasted, "png", Label("edited", "bench", ingredient_sha256=sha256_bytes(original)), key,
                              "photo.png", ingredient=original)  # fmt: skip
        cost.append((spent[0] + time.perf_counter() - t, spent[1] + time.process_time() - c))
        plain = paste_into_photo(task_photo, to_tensor(crop8)[0])
        face = np.abs(plain.astype(int) - photo).max(axis=2) > 0
        psnrs["photo"].append(psnr(pasted[face], plain[face]))
        items.append(("photo", pasted, data))
        for kind, image, data in items:
            for name, attack in [*ATTACKS.items(), ("metadata stripped", None)]:
                attacked = stripped(data) if attack is None else attack(image)
                found = find_watermark(attacked)
                rows.setdefault(name, {"crop": [], "photo": []})[kind].append(
                    (found.found and found.run_id == f"{RUN_ID:06x}", bit_accuracy(attacked, kind)))
                print(f"{album.name} {kind} {name}: {found.found}", file=sys.stderr, flush=True)
    false = sum(find_watermark(o).found for o in originals)
    print(f"\nmystyle-pl provenance benchmark: {len(albums)} albums, {args.refs} crop(s) + 1 pasted-back photo each\n")
    wall, cpu = np.mean(cost, axis=0)
    print(f"marking + XMP + signing: {wall:.2f} s wall, {cpu:.2f} s CPU per image (mean of {len(cost)}; PNG encoding "
          "included, paste-back not)")  # fmt: skip
    print(f"mark PSNR: {np.mean(psnrs['crop']):.1f} dB in the crops' mark box, {np.mean(psnrs['photo']):.1f} dB over the pasted face\n")
    print("| after | crops detected | crops bit acc. | photos detected | photos bit acc. |")
    print("| --- | --- | --- | --- | --- |")
    for name, by in rows.items():
        cells = []
        for kind in ("crop", "photo"):
            r = by[kind]
            cells += [f"{sum(d for d, _ in r)}/{len(r)}", f"{np.mean([b for _, b in r]) * 100:.1f}%"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nfalse detections on original photos: {false}/{len(originals)}")


if __name__ == "__main__":
    main()

"""Only the person's face changes, on a real prior: compose a photo of three real people (shared albums
00027, 00001, 00049 side by side, each the album's real ``degraded.png`` or held-out ``gt.png``), run a
task through ``mystyle_pl.run_photo`` with ``faces="person"`` on the person's prior, and print what a
user would check: every face found with its distance to the person and what was done, the seconds,
how many pixels changed inside the pasted region, and how many changed outside it and in the other
faces (both must be 0).

    PYTHONPATH=. python scripts/group_photo_check.py --prior outputs/albums/00001/fit/prior \
        --person 00001 --task restore --out outputs/group_check
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mystyle_pl import PersonalPrior, run_photo
from mystyle_pl.data.io import write_image

ALBUMS = ("00027", "00001", "00049")


def compose(shared: Path, albums: tuple[str, ...], source: str, size: int) -> np.ndarray:
    """The albums' ``source`` photos (``degraded.png`` or ``gt.png``) side by side: uint8 ``[size, size * n, 3]``."""
    tiles = []
    for album in albums:
        path = shared / "albums" / album / source
        if not path.is_file():
            raise SystemExit(f"{path} not found: point --shared at the shared data folder (holding albums/)")
        tiles.append(np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)))
    return np.concatenate(tiles, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", required=True, help="the person's prior bundle folder")
    ap.add_argument("--person", default="00001", help=f"the prior's album (one of {', '.join(ALBUMS)})")
    ap.add_argument("--shared", default="../shared/data", help="the shared data folder (holding albums/)")
    ap.add_argument("--source", default="degraded.png", choices=["degraded.png", "gt.png"], help="each album's photo")
    ap.add_argument("--task", default="restore", help="run_photo's task (restore, invert, super_resolve, ...)")
    ap.add_argument("--size", type=int, default=320, help="each person's tile side in px")
    ap.add_argument("--out", default="outputs/group_check", help="folder for input.png, result.png, check.json")
    args = ap.parse_args()
    if args.person not in ALBUMS:
        raise SystemExit(f"--person must be one of {', '.join(ALBUMS)}")

    photo = compose(Path(args.shared), ALBUMS, args.source, args.size)
    prior = PersonalPrior.load(args.prior)
    start = time.time()
    result = run_photo(prior, photo, args.task, faces="person", progress=True)
    seconds = time.time() - start
    changed = np.any(result.photo != photo, axis=-1)
    region = np.zeros_like(changed)
    for face in result.faces:
        if face.region is not None:
            x0, y0, x1, y1 = face.region
            region[y0:y1, x0:x1] = True
    person_tile = ALBUMS.index(args.person)
    others = np.ones_like(changed)
    others[:, person_tile * args.size : (person_tile + 1) * args.size] = False
    check = {
        "task": args.task, "source": args.source, "photo_size": [photo.shape[1], photo.shape[0]],
        "seconds": round(seconds, 1),
        "faces": [{"index": f.index, "distance": None if f.distance is None else round(f.distance, 3),
                   "selected": f.selected, "action": f.action} for f in result.faces],
        "changed_inside_region": int(changed[region].sum()), "region_pixels": int(region.sum()),
        "changed_outside_region": int(changed[~region].sum()),
        "changed_in_other_people": int(changed[others].sum()),
    }  # fmt: skip
    out = Path(args.out)
    write_image(out / "input.png", photo)
    write_image(out / "result.png", result.photo)
    (out / "check.json").write_text(json.dumps(check, indent=2))
    print(json.dumps(check, indent=2))


if __name__ == "__main__":
    main()

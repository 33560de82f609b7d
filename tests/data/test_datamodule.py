"""PersonalPhotosDataModule, AlbumDataset, anchors files and the balanced DDP batch sampler.

Albums are written into ``tmp_path`` by the tests: photo ``i`` is a flat colour that encodes ``i``
(red = 5 * i + 2) with a white marker in its left column, so identity and mirroring can be read
back from the served tensors.
"""

from __future__ import annotations

import json
import math
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from mystyle_pl.data import (
    AlbumError,
    Anchors,
    AnchorsError,
    BalancedDistributedBatchSampler,
    PersonalPhotosDataModule,
    load_anchors,
    save_anchors,
)
from mystyle_pl.data.datamodule import hash_fraction

W_DIM = 8


# ---------------------------------------------------------------------------- helpers


def photo_array(i: int, size: int = 32) -> np.ndarray:
    """Photo ``i``: flat colour (5 i + 2, 250 - 5 i, 37 i mod 256), i < 51, with a white left column."""
    img = np.empty((size, size, 3), np.uint8)
    img[...] = (5 * i + 2, 250 - 5 * i, (37 * i) % 256)
    img[:, 0] = 255
    return img


def write_album(folder: Path, count: int = 7, size: int = 32, start: int = 0, order=None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(range(start, start + count)) if order is None else list(order)
    names = []
    for i in ids:
        name = f"{i:04d}.png"
        Image.fromarray(photo_array(i, size)).save(folder / name)
        names.append(name)
    return sorted(names)


def identity(image: torch.Tensor) -> int:
    """Decode the photo number from one served image ``[3, R, R]`` (centre pixel's red)."""
    r = image.shape[-1]
    red = (float(image[0, r // 2, r // 2]) + 1) * 127.5
    return round((red - 2) / 5)


def marker_on_left(image: torch.Tensor) -> bool:
    """True when the white marker column is on the left (not mirrored)."""
    return bool(image[1, :, 0].mean() > image[1, :, -1].mean())


def anchor_rows(ids) -> torch.Tensor:
    """A recognisable anchor per photo id: ``w[k] = id`` everywhere."""
    return torch.tensor([[float(i)] * W_DIM for i in ids])


def make_dm(album: Path, **kw) -> PersonalPhotosDataModule:
    kw.setdefault("resolution", 32)
    kw.setdefault("batch_size", 3)
    kw.setdefault("num_workers", 0)
    return PersonalPhotosDataModule(str(album), **kw)


def all_batches(loader) -> list[dict]:
    return list(loader)


# ---------------------------------------------------------------------------- batches


def test_batches_shapes_range_and_identity(tmp_path):
    names = write_album(tmp_path / "album" / "images")
    dm = make_dm(tmp_path / "album")
    dm.setup("fit")
    assert dm.album_names == names
    loader = dm.train_dataloader()
    assert len(loader) == math.ceil(7 / 3)
    seen = []
    for batch in all_batches(loader):
        image = batch["image"]
        assert image.dtype == torch.float32 and image.shape[1:] == (3, 32, 32)
        assert image.min() >= -1 and image.max() <= 1
        assert batch["index"].dtype == torch.long
        assert isinstance(batch["name"], list) and all(isinstance(n, str) for n in batch["name"])
        assert "w" not in batch
        for img, idx, name in zip(image, batch["index"].tolist(), batch["name"]):
            assert identity(img) == idx == int(Path(name).stem)
            assert names[idx] == name
            assert marker_on_left(img)
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(7))
    assert dm.val_dataloader() == []  # no held-out photos -> no validation


def test_flat_folder_album(tmp_path):
    """A plain folder of aligned square photos (no images/ subfolder) is an album too."""
    write_album(tmp_path / "flat", count=4)
    (tmp_path / "flat" / "notes.txt").write_text("not a photo")
    dm = make_dm(tmp_path / "flat", batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["index"].tolist()) == [0, 1, 2, 3]


def test_resize_64_to_32_is_antialiased(tmp_path):
    folder = tmp_path / "album"
    write_album(folder, count=2, size=64)
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([checker] * 3, -1)).save(folder / "0009.png")
    dm = make_dm(folder, resolution=32)
    dm.setup("fit")
    items = {item["name"]: item for item in (dm.train_dataset[i] for i in range(3))}
    for name in ("0000.png", "0001.png"):
        assert items[name]["image"].shape == (3, 32, 32)
        assert identity(items[name]["image"]) == int(name[:4])
    # A 1-pixel checkerboard averages to mid-grey; without antialiasing it would alias to black or white.
    grey = items["0009.png"]["image"]
    assert grey.abs().mean() < 0.1 and grey.std() < 0.1


def test_upsampling_warns(tmp_path):
    write_album(tmp_path / "album", count=2, size=16)
    dm = make_dm(tmp_path / "album", resolution=32)
    with pytest.warns(UserWarning, match="upsampled"):
        dm.setup("fit")
    assert dm.train_dataset[0]["image"].shape == (3, 32, 32)


def test_non_square_photo_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "album"
    write_album(folder, count=3)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(folder / "0005.png")
    dm = make_dm(folder)
    with pytest.raises(AlbumError, match=r"0005\.png.*40x32.*square"):
        dm.setup("fit")


def test_unreadable_photos_are_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "album"
    write_album(folder, count=5)
    (folder / "0002.png").write_bytes(b"definitely not a png")
    data = (folder / "0003.png").read_bytes()
    (folder / "0003.png").write_bytes(data[: len(data) // 2])  # truncated
    dm = make_dm(folder, batch_size=8)
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    messages = " ".join(str(w.message) for w in record)
    assert "0002.png" in messages and "0003.png" in messages
    assert dm.album_names == ["0000.png", "0001.png", "0004.png"]
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["name"]) == dm.album_names
    assert [identity(img) for img in batch["image"]] == [int(n[:4]) for n in batch["name"]]


def test_empty_album_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlbumError, match="no photos"):
        make_dm(tmp_path / "empty").setup("fit")


def test_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        make_dm(tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError, match="not both"):
        make_dm(tmp_path, val_fraction=0.2, val_names=["0001.png"])
    with pytest.raises(ValueError, match="batch_size"):
        make_dm(tmp_path, batch_size=0)


# ---------------------------------------------------------------------------- split


def test_hash_split_is_deterministic_order_free_and_stable_when_adding(tmp_path):
    write_album(tmp_path / "a", count=40, size=8)
    write_album(tmp_path / "b", count=40, size=8, order=reversed(range(40)))  # files created in another order
    records = []
    for folder in ("a", "a", "b"):
        dm = make_dm(tmp_path / folder, resolution=8, val_fraction=0.25, seed=3)
        dm.setup("fit")
        records.append(dm.split_record())
    assert records[0] == records[1] == records[2]
    rec = records[0]
    assert set(rec) == {"train", "val", "seed", "rule"} and rec["seed"] == 3 and "hash" in rec["rule"]
    assert sorted(rec["train"] + rec["val"]) == [f"{i:04d}.png" for i in range(40)]
    assert 3 <= len(rec["val"]) <= 18  # about a quarter
    assert rec["val"] == sorted(n for n in rec["train"] + rec["val"] if hash_fraction(n, 3) < 0.25)

    write_album(tmp_path / "a", count=10, size=8, start=40)  # add photos
    dm = make_dm(tmp_path / "a", resolution=8, val_fraction=0.25, seed=3)
    dm.setup("fit")
    grown = dm.split_record()
    assert set(rec["val"]) <= set(grown["val"]) and set(rec["train"]) <= set(grown["train"])

    other_seed = make_dm(tmp_path / "b", resolution=8, val_fraction=0.25, seed=4)
    other_seed.setup("fit")
    assert other_seed.split_record()["val"] != rec["val"]


def test_val_loader_serves_the_held_out_photos(tmp_path):
    write_album(tmp_path / "album", count=7)
    dm = make_dm(tmp_path / "album", val_names=["0002.png", "0005", "0006.png"], batch_size=2)
    dm.setup("fit")
    record = dm.split_record()
    assert record["val"] == ["0002.png", "0005.png", "0006.png"] and record["rule"].startswith("val_names")
    assert record["train"] == ["0000.png", "0001.png", "0003.png", "0004.png"]
    val = [(idx, identity(img)) for b in dm.val_dataloader() for idx, img in zip(b["index"].tolist(), b["image"])]
    assert val == [(2, 2), (5, 5), (6, 6)]  # album order, no shuffling, album indices
    train = sorted(i for b in dm.train_dataloader() for i in b["index"].tolist())
    assert train == [0, 1, 3, 4]
    assert dm.hparams["split"] == record


def test_unknown_val_names_are_listed(tmp_path):
    write_album(tmp_path / "album", count=4)
    dm = make_dm(tmp_path / "album", val_names=["0001.png", "nope.png", "0099"])
    with pytest.raises(AlbumError, match=r"'nope\.png'.*'0099'"):
        dm.setup("fit")


def test_split_json_written_to_the_trainer_log_dir(tmp_path):
    write_album(tmp_path / "album", count=5)
    dm = make_dm(tmp_path / "album", val_names=["0003.png"])
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=CSVLogger(tmp_path / "logs"), default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    dm.trainer = trainer
    dm.setup("fit")
    written = json.loads((Path(trainer.log_dir) / "split.json").read_text())
    assert written == dm.split_record()
    assert written["val"] == ["0003.png"]
    assert not list((tmp_path / "album").glob("split*"))  # never into the album


# ---------------------------------------------------------------------------- anchors


def test_anchors_file_roundtrip(tmp_path):
    w, w_flip = torch.randn(3, W_DIM), torch.randn(3, W_DIM)
    path = save_anchors(
        tmp_path / "sub" / "a.safetensors", w, ["b.png", "a.png", "c.png"], {"gen": "ffhq", "n": 2}, w_flip
    )
    anchors = load_anchors(path)
    assert anchors.names == ["b.png", "a.png", "c.png"] and anchors.metadata == {"gen": "ffhq", "n": 2}
    assert torch.equal(anchors.w, w) and torch.equal(anchors.w_flip, w_flip) and anchors.w_dim == W_DIM
    sel, sel_flip = anchors.select(["c.png", "b.png"])
    assert torch.equal(sel, w[[2, 0]]) and torch.equal(sel_flip, w_flip[[2, 0]])
    assert [p.name for p in path.parent.iterdir()] == ["a.safetensors"]  # no temp file left
    with pytest.raises(AnchorsError, match="names"):
        save_anchors(tmp_path / "bad.safetensors", w, ["a.png", "b.png"])
    with pytest.raises(AnchorsError, match="not found"):
        load_anchors(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(AnchorsError, match="junk.safetensors"):
        load_anchors(tmp_path / "junk.safetensors")
    with pytest.raises(AnchorsError, match="duplicate"):
        Anchors(w=torch.zeros(2, 2), names=["x.png", "x.png"])


def test_anchors_are_matched_by_name_not_order(tmp_path):
    write_album(tmp_path / "album" / "images", count=7)
    order = [4, 0, 6, 2, 5, 1, 3]
    path = save_anchors(tmp_path / "anchors.safetensors", anchor_rows(order), [f"{i:04d}.png" for i in order])
    dm = make_dm(tmp_path / "album", anchors=str(path), val_names=["0001.png"])
    dm.setup("fit")
    assert dm.w_dim == W_DIM
    for batch in dm.train_dataloader():
        assert batch["w"].shape == (len(batch["name"]), W_DIM) and batch["w"].dtype == torch.float32
        assert batch["w"][:, 0].long().tolist() == batch["index"].tolist()
        assert [identity(img) for img in batch["image"]] == batch["index"].tolist()
    # Held-out photos are never part of the personal space: they carry no anchor.
    for batch in dm.val_dataloader():
        assert "w" not in batch and batch["name"] == ["0001.png"]


def test_anchors_for_training_photos_suffice_and_can_be_attached_later(tmp_path):
    write_album(tmp_path / "album", count=5)
    dm = make_dm(tmp_path / "album", val_names=["0002.png"])
    dm.setup("fit")
    assert "w" not in next(iter(dm.train_dataloader()))
    train = [0, 1, 3, 4]
    path = save_anchors(tmp_path / "a.safetensors", anchor_rows(train), [f"{i:04d}.png" for i in train])
    dm.attach_anchors(load_anchors(path))
    seen = [i for batch in dm.train_dataloader() for i in batch["w"][:, 0].long().tolist()]
    assert sorted(seen) == train


def test_photo_without_anchor_is_an_error_naming_it_and_the_file(tmp_path):
    write_album(tmp_path / "album", count=4)
    path = save_anchors(tmp_path / "anchors.safetensors", anchor_rows([0, 1, 3]), ["0000.png", "0001.png", "0003.png"])
    dm = make_dm(tmp_path / "album", anchors=str(path))
    with pytest.raises(AnchorsError, match=r"'0002\.png'") as info:
        dm.setup("fit")
    assert "anchors.safetensors" in str(info.value)


def test_album_anchors_file_is_not_loaded_implicitly(tmp_path):
    write_album(tmp_path / "album" / "images", count=3)
    save_anchors(
        tmp_path / "album" / "anchors.safetensors", anchor_rows(range(3)), ["0000.png", "0001.png", "0002.png"]
    )
    dm = make_dm(tmp_path / "album")
    dm.setup("fit")
    assert "w" not in next(iter(dm.train_dataloader())) and dm.w_dim is None


# ---------------------------------------------------------------------------- flips


def test_hflip_with_anchors_needs_w_flip(tmp_path):
    names = write_album(tmp_path / "album", count=3)
    path = save_anchors(tmp_path / "anchors.safetensors", anchor_rows(range(3)), names)
    dm = make_dm(tmp_path / "album", anchors=str(path), hflip=True)
    with pytest.raises(ValueError, match="w_flip"):
        dm.setup("fit")


def test_hflip_pairs_mirrored_photos_with_w_flip(tmp_path):
    names = write_album(tmp_path / "album", count=4)
    w = anchor_rows(range(4))
    path = save_anchors(tmp_path / "anchors.safetensors", w, names, w_flip=-w - 1)
    dm = make_dm(tmp_path / "album", anchors=str(path), hflip=True, batch_size=4, val_names=["0003.png"])
    dm.setup("fit")
    torch.manual_seed(0)
    flips = []
    for _ in range(10):
        for batch in dm.train_dataloader():
            for img, idx, flipped, wi in zip(
                batch["image"], batch["index"].tolist(), batch["flipped"].tolist(), batch["w"]
            ):
                assert marker_on_left(img) != flipped and identity(img) == idx
                assert wi[0].item() == (-idx - 1 if flipped else idx)
                flips.append(flipped)
    assert 0 < sum(flips) < len(flips)
    val = next(iter(dm.val_dataloader()))
    assert not val["flipped"].any() and marker_on_left(val["image"][0])  # validation is never flipped


def test_hflip_without_anchors_is_allowed_and_default_is_off(tmp_path):
    write_album(tmp_path / "album", count=4)
    assert make_dm(tmp_path / "album").hflip is False
    dm = make_dm(tmp_path / "album", hflip=True, batch_size=4)
    dm.setup("fit")
    torch.manual_seed(1)
    flags = [f for _ in range(8) for b in dm.train_dataloader() for f in b["flipped"].tolist()]
    assert 0 < sum(flags) < len(flags)


# ---------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("drop_last", [False, True])
def test_balanced_sampler_covers_every_sample_once_with_equal_batch_counts(drop_last):
    for n in (1, 2, 3, 5, 7, 8, 13, 16, 31, 100):
        for world in (1, 2, 3, 4):
            for bs in (1, 2, 3, 4, 7):
                if (drop_last and n < world * bs) or (not drop_last and n < world):
                    with pytest.raises(ValueError):
                        BalancedDistributedBatchSampler(n, bs, world, 0, drop_last=drop_last)
                    continue
                for epoch in (0, 1):
                    samplers = [
                        BalancedDistributedBatchSampler(n, bs, world, r, shuffle=True, seed=5, drop_last=drop_last)
                        for r in range(world)
                    ]
                    for s in samplers:
                        s.set_epoch(epoch)
                    batches = [list(s) for s in samplers]
                    flat = [i for rank in batches for b in rank for i in b]
                    counts = {len(rank) for rank in batches}
                    assert len(counts) == 1 and counts == {len(samplers[0])}, (n, world, bs)
                    assert all(len(b) > 0 for rank in batches for b in rank)
                    assert len(set(flat)) == len(flat)  # nothing repeated
                    if drop_last:
                        assert all(len(b) == bs for rank in batches for b in rank)
                        assert len(flat) == (n // (world * bs)) * world * bs
                        continue
                    assert sorted(flat) == list(range(n)), (n, world, bs)  # nothing dropped
                    per_rank = [sum(map(len, rank)) for rank in batches]
                    assert max(per_rank) - min(per_rank) <= 1
                    for rank in batches:
                        sizes = [len(b) for b in rank]
                        assert max(sizes) - min(sizes) <= 1
                        assert max(sizes) <= (bs if bs > 1 or n % world == 0 else 2)
                    if bs > 1:
                        assert counts == {math.ceil(n / (world * bs))}


def test_balanced_sampler_epochs_shuffle_and_state():
    s = BalancedDistributedBatchSampler(20, 3, num_replicas=2, rank=1, shuffle=True, seed=7)
    epoch0 = list(s)
    assert list(s) == epoch0  # same epoch, same order
    s.set_epoch(1)
    epoch1 = list(s)
    assert epoch1 != epoch0
    assert s.sampler.epoch == 1  # Lightning calls batch_sampler.sampler.set_epoch
    s.sampler.set_epoch(0)
    assert list(s) == epoch0
    s.set_epoch(1)
    state = s.state_dict()
    fresh = BalancedDistributedBatchSampler(20, 3, num_replicas=2, rank=1, shuffle=True, seed=7)
    fresh.load_state_dict(state)
    assert list(fresh) == epoch1
    with pytest.raises(ValueError, match="21"):
        fresh.load_state_dict({**state, "num_samples": 21})
    ordered = BalancedDistributedBatchSampler(7, 2, num_replicas=1, rank=0, shuffle=False)
    assert [i for b in ordered for i in b] == list(range(7))


def test_datamodule_shards_by_trainer_rank(tmp_path):
    """Without a real process group: fake trainers of a 3-rank job see disjoint shards covering the album."""
    write_album(tmp_path / "album", count=7)
    shards, lengths = [], set()
    for rank in range(3):
        dm = make_dm(tmp_path / "album", batch_size=2)
        dm.trainer = types.SimpleNamespace(world_size=3, global_rank=rank, log_dir=None)
        dm.setup("fit")
        loader = dm.train_dataloader()
        lengths.add(len(loader))
        shards.append([i for b in loader for i in b["index"].tolist()])
    assert lengths == {2}
    assert sorted(i for s in shards for i in s) == list(range(7))


def test_use_distributed_sampler_is_switched_off(tmp_path, caplog):
    write_album(tmp_path / "album", count=4)
    connector = types.SimpleNamespace(use_distributed_sampler=True, is_distributed=True)
    dm = make_dm(tmp_path / "album", batch_size=2)
    dm.trainer = types.SimpleNamespace(world_size=2, global_rank=0, log_dir=None, _accelerator_connector=connector)
    with caplog.at_level("INFO", logger="mystyle_pl.data.datamodule"):
        dm.setup("fit")
    assert connector.use_distributed_sampler is False
    assert "use_distributed_sampler" in caplog.text


# ---------------------------------------------------------------------------- prepare_data


def test_prepare_data_runs_prepare_album_once(tmp_path, monkeypatch):
    calls = []

    def fake_prepare_album(raw, album, resolution):
        calls.append((raw, album, resolution))
        write_album(Path(album) / "images", count=3, size=resolution)
        (Path(album) / "manifest.json").write_text("{}")

    monkeypatch.setattr("mystyle_pl.data.datamodule.prepare_album", fake_prepare_album)
    raw, album = tmp_path / "raw", tmp_path / "album"
    raw.mkdir()
    dm = make_dm(album, raw=str(raw))
    dm.prepare_data()
    dm.prepare_data()  # cached: manifest.json exists
    assert calls == [(str(raw), str(album), 32)]
    dm.setup("fit")
    assert dm.album_names == ["0000.png", "0001.png", "0002.png"]


def test_prepare_album_contract():
    prepare = pytest.importorskip("mystyle_pl.data.prepare", reason="mystyle_pl.data.prepare not written yet")
    if not hasattr(prepare, "prepare_album"):
        pytest.skip("mystyle_pl.data.prepare.prepare_album not written yet")
    import inspect

    params = inspect.signature(prepare.prepare_album).parameters
    # Called as prepare_album(raw, album, resolution=...).
    assert len(params) >= 2 and "resolution" in params


def test_missing_album_with_raw_hints_at_prepare(tmp_path):
    dm = make_dm(tmp_path / "not-yet", raw=str(tmp_path))
    with pytest.raises(AlbumError, match="prepare"):
        dm.setup("fit")


# ---------------------------------------------------------------------------- real DDP


class RecordingModule(LightningModule):
    """Records every batch (rank, epoch, indices, decoded identities) into ``out_dir/rank<r>.json``."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(1, 1)
        self.records: list[dict] = []

    def _record(self, stage: str, batch) -> None:
        self.records.append(
            {
                "stage": stage,
                "epoch": self.current_epoch,
                "index": batch["index"].tolist(),
                "identity": [identity(img) for img in batch["image"]],
                "names": list(batch["name"]),
            }
        )

    def training_step(self, batch, batch_idx):
        self._record("train", batch)
        return self.layer(batch["image"].mean(dim=(1, 2, 3))[:, None]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        sampler = self.trainer.train_dataloader.batch_sampler
        data = {
            "records": self.records,
            "sampler": type(sampler).__name__,
            "world": [sampler.num_replicas, sampler.rank],
            "log_dir": self.trainer.log_dir,
        }
        Path(self.out_dir, f"rank{self.global_rank}.json").write_text(json.dumps(data))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ddp_two_processes_see_every_photo_once_per_epoch(tmp_path):
    write_album(tmp_path / "album" / "images", count=11, size=16)
    val_names = ["0000.png", "0005.png"]
    dm = make_dm(tmp_path / "album", resolution=16, batch_size=2, val_names=val_names, seed=11)
    model = RecordingModule(str(tmp_path))
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2,
        logger=CSVLogger(tmp_path / "logs"), default_root_dir=tmp_path, num_sanity_val_steps=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [[2, 0], [2, 1]]
    assert {r["sampler"] for r in ranks} == {"BalancedDistributedBatchSampler"}  # not replaced by Lightning
    album = [f"{i:04d}.png" for i in range(11)]
    train_idx = [i for i, n in enumerate(album) if n not in val_names]  # 9 photos: not divisible by 2 * 2
    val_idx = [album.index(n) for n in val_names]
    for epoch in range(2):
        per_rank = [[rec for rec in r["records"] if rec["stage"] == "train" and rec["epoch"] == epoch] for r in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == math.ceil(9 / 4)  # equal batch counts
        seen = [i for batches in per_rank for rec in batches for i in rec["index"]]
        assert sorted(seen) == train_idx  # every photo exactly once per epoch
        for rank, batches in enumerate(per_rank):
            for rec in batches:
                assert rec["identity"] == rec["index"] and rec["names"] == [album[i] for i in rec["index"]]
            # Lightning advanced the epoch through batch_sampler.sampler.set_epoch.
            expected = BalancedDistributedBatchSampler(9, 2, num_replicas=2, rank=rank, shuffle=True, seed=11)
            expected.set_epoch(epoch)
            assert [rec["index"] for rec in batches] == [[train_idx[i] for i in b] for b in expected]
        val_seen = [
            i
            for r in ranks
            for rec in r["records"]
            if rec["stage"] == "val" and rec["epoch"] == epoch
            for i in rec["index"]
        ]
        assert sorted(val_seen) == val_idx
    split = json.loads((Path(ranks[0]["log_dir"]) / "split.json").read_text())
    assert split["val"] == val_names and split["train"] == [album[i] for i in train_idx] and split["seed"] == 11


def test_single_process_fit_without_held_out_photos(tmp_path):
    """The common path: one device, no validation photos (val_dataloader returns [] and Lightning skips it)."""
    write_album(tmp_path / "album", count=5, size=16)
    dm = make_dm(tmp_path / "album", resolution=16, batch_size=2)
    model = RecordingModule(str(tmp_path))
    trainer = Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, default_root_dir=tmp_path,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    records = json.loads((tmp_path / "rank0.json").read_text())["records"]
    assert [r["stage"] for r in records] == ["train"] * 3
    assert sorted(i for r in records for i in r["index"]) == list(range(5))
    assert json.loads((tmp_path / "split.json").read_text())["train"] == dm.album_names

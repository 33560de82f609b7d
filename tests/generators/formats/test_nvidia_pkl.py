"""NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles (``formats/nvidia_pkl.py``).

The fixtures write pickles shaped like the real ones without NVIDIA's code: temporary
``torch_utils.persistence`` and ``dnnlib.util`` modules exist only while pickling, and
every network is an object whose ``__reduce__`` is ``_reconstruct_persistent_obj(meta)``
with the same ``meta`` fields, module state and tensors as ``torch_utils/persistence.py``
produces for ``training/networks.py``.
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle
import subprocess
import sys
import types
import warnings

import pytest
import torch

from mystyle_pl.generators import CheckpointError, StyleGAN2Generator, detect_format, load_generator
from mystyle_pl.generators.formats import nvidia_pkl

from ...helpers import make_tiny_stylegan2

try:
    import numpy as np
except ImportError:  # numpy scalars are what the real pickles hold; floats do when it is absent
    np = None


def _np64(x: float):
    return np.float64(x) if np is not None else float(x)


# ----------------------------------------------------------------------------------------
# Writing NVIDIA-shaped pickles
# ----------------------------------------------------------------------------------------

HONEST_SRC = "# training/networks.py would be here\nclass Generator: pass\n"
TORCH_MODULE_KEYS = set(vars(torch.nn.Module()))  # what nn.Module keeps in its __dict__


@pytest.fixture
def nv(monkeypatch):
    """Fake ``torch_utils.persistence`` and ``dnnlib.util`` modules, registered only for the test."""

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - a loader must never call it
        raise AssertionError("the pickle's reconstruct function was called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    modules = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    for name, module in modules.items():
        assert name not in sys.modules
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict, src=HONEST_SRC)


class Persistent:
    """Pickles exactly like a ``@persistent_class`` instance: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, nv, class_name, state):
        self.nv, self.class_name, self.state = nv, class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.nv.src, class_name=self.class_name, state=self.state)
        return self.nv.reconstruct, (meta,)


def _record(nv, class_name, module, children=(), init_args=(), init_kwargs=None, **attrs):
    state = {k: v for k, v in vars(module).items() if k in TORCH_MODULE_KEYS}
    state["_modules"] = dict(children)
    state.update(attrs)
    state["_init_args"] = tuple(init_args)
    state["_init_kwargs"] = dict(init_kwargs or {})
    return Persistent(nv, class_name, state)


def _fc(nv, fc, lr_multiplier=1.0, bias_init=0):
    return _record(
        nv, "FullyConnectedLayer", fc, in_features=fc.in_features, out_features=fc.out_features,
        activation=fc.activation, weight_gain=_np64(lr_multiplier / math.sqrt(fc.in_features)),
        bias_gain=lr_multiplier, init_args=(fc.in_features, fc.out_features),
        init_kwargs=dict(activation=fc.activation, lr_multiplier=lr_multiplier, bias_init=bias_init),
    )  # fmt: skip


def _layer(nv, layer, w_dim):
    return _record(
        nv, "SynthesisLayer", layer, {"affine": _fc(nv, layer.affine, bias_init=1)},
        resolution=layer.resolution, up=layer.up, use_noise=layer.use_noise, activation="lrelu",
        conv_clamp=layer.conv_clamp, padding=1, act_gain=_np64(math.sqrt(2)),
        init_args=(layer.weight.shape[1], layer.weight.shape[0]),
        init_kwargs=dict(w_dim=w_dim, resolution=layer.resolution, up=layer.up, conv_clamp=layer.conv_clamp),
    )  # fmt: skip


def _block(nv, block, G, architecture):
    children = {"conv1": _layer(nv, block.conv1, G.w_dim)}
    if block.in_channels:
        children = {"conv0": _layer(nv, block.conv0, G.w_dim), **children}
    torgb = block.torgb
    children["torgb"] = _record(
        nv, "ToRGBLayer", torgb, {"affine": _fc(nv, torgb.affine, bias_init=1)},
        conv_clamp=torgb.conv_clamp, weight_gain=_np64(torgb.weight_gain),
    )  # fmt: skip
    return _record(
        nv, "SynthesisBlock", block, children, in_channels=block.in_channels, w_dim=G.w_dim,
        resolution=block.resolution, img_channels=G.img_channels, is_last=block.resolution == G.img_resolution,
        architecture=architecture, use_fp16=False, channels_last=False, num_conv=block.num_conv, num_torgb=1,
    )  # fmt: skip


def generator_record(nv, G: StyleGAN2Generator, init_kwargs: dict, architecture="skip", with_w_avg=True):
    """A persistent ``Generator`` mirroring ``training/networks.py`` for our generator ``G``."""
    syn, mapping = G.synthesis, G.mapping
    blocks = {f"b{r}": _block(nv, getattr(syn, f"b{r}"), G, architecture) for r in syn.block_resolutions}
    synthesis = _record(
        nv, "SynthesisNetwork", syn, blocks, w_dim=G.w_dim, img_resolution=G.img_resolution,
        img_resolution_log2=int(math.log2(G.img_resolution)), img_channels=G.img_channels,
        block_resolutions=list(syn.block_resolutions), num_ws=G.num_ws,
    )  # fmt: skip
    lr = G.config["mapping_lr_multiplier"]
    fcs = {f"fc{i}": _fc(nv, getattr(mapping, f"fc{i}"), lr_multiplier=lr) for i in range(mapping.num_layers)}
    mapping_rec = _record(
        nv, "MappingNetwork", mapping, fcs, z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, num_ws=G.num_ws,
        num_layers=mapping.num_layers, w_avg_beta=0.995 if with_w_avg else None,
    )  # fmt: skip
    if not with_w_avg:
        mapping_rec.state["_buffers"] = {}
    return _record(
        nv, "Generator", G, {"synthesis": synthesis, "mapping": mapping_rec}, z_dim=G.z_dim, c_dim=0,
        w_dim=G.w_dim, img_resolution=G.img_resolution, img_channels=G.img_channels, num_ws=G.num_ws,
        init_kwargs=init_kwargs,
    )  # fmt: skip


def ada_kwargs(nv, G, **synthesis_overrides):
    """Constructor arguments as stylegan2-ada-pytorch's train.py passes them."""
    cfg = G.config
    synthesis = nv.EasyDict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], num_fp16_res=4,
                            conv_clamp=cfg["conv_clamp"])  # fmt: skip
    synthesis.update(synthesis_overrides)
    return dict(
        z_dim=G.z_dim, w_dim=G.w_dim, mapping_kwargs=nv.EasyDict(num_layers=cfg["mapping_layers"]),
        synthesis_kwargs=synthesis, c_dim=0, img_resolution=G.img_resolution, img_channels=G.img_channels,
    )  # fmt: skip


def legacy_kwargs(nv, G):
    """Constructor arguments as legacy.py writes them when converting a TensorFlow pickle."""
    cfg = G.config
    return nv.EasyDict(
        z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, img_resolution=G.img_resolution, img_channels=G.img_channels,
        mapping_kwargs=nv.EasyDict(num_layers=cfg["mapping_layers"], embed_features=None, layer_features=None,
                                   activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995),
        synthesis_kwargs=nv.EasyDict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                                     num_fp16_res=0, conv_clamp=None, architecture="skip",
                                     resample_filter=[1, 3, 3, 1], use_noise=True, activation="lrelu"),
    )  # fmt: skip


def stylegan3_repo_kwargs(nv, G):
    """stylegan3's networks_stylegan2.Generator: synthesis options flat, conv_clamp left at its default."""
    cfg = G.config
    return dict(
        z_dim=G.z_dim, w_dim=G.w_dim, mapping_kwargs=nv.EasyDict(num_layers=cfg["mapping_layers"]),
        channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], num_fp16_res=4,
        fused_modconv_default="inference_only", c_dim=0, img_resolution=G.img_resolution,
        img_channels=G.img_channels,
    )  # fmt: skip


def write_snapshot(path, nv, G_ema, init_kwargs, protocol=4, with_g_ema=True, **record_kwargs):
    """A ``network-snapshot-*.pkl``: G (different weights), D, G_ema, augment_pipe, training_set_kwargs."""
    G_train = copy.deepcopy(G_ema)
    with torch.no_grad():
        for p in G_train.parameters():
            p.add_(0.5)
    disc = torch.nn.Module()
    disc.register_parameter("weight", torch.nn.Parameter(torch.randn(4, 3, 1, 1)))
    data = dict(
        training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="/data/ffhq.zip",
                                 use_labels=False, max_size=70000, xflip=True, resolution=G_ema.img_resolution),
        G=generator_record(nv, G_train, init_kwargs, **record_kwargs),
        D=_record(nv, "Discriminator", disc, init_kwargs=dict(c_dim=0, block_kwargs=nv.EasyDict())),
        augment_pipe=None,
    )  # fmt: skip
    if with_g_ema:
        data["G_ema"] = generator_record(nv, G_ema, init_kwargs, **record_kwargs)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


def tiny(**overrides):
    kwargs = dict(channel_base=512, channel_max=64)
    kwargs.update(overrides)
    return make_tiny_stylegan2(32, **kwargs).requires_grad_(False)


def same_weights(a, b):
    """Every tensor equal (rendering parity is proven by the round-trip test; this is the cheap check)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def render_diff(a, b, noise_mode):
    a.eval(), b.eval()
    z = torch.randn(2, a.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ws = a.broadcast_w(a.mapping(z))
        assert torch.equal(ws, b.broadcast_w(b.mapping(z)))
        return (a.synthesis(ws, noise_mode=noise_mode) - b.synthesis(ws, noise_mode=noise_mode)).abs().max().item()


# ----------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flavour,protocol",
    [("ada", 4), ("ada", 2), ("legacy", 3), ("stylegan3_repo", 5)],
)
def test_snapshot_loads_and_renders_identically(tmp_path, nv, monkeypatch, flavour, protocol):
    conv_clamp = 256.0 if flavour == "stylegan3_repo" else None
    G = tiny(conv_clamp=conv_clamp)
    kwargs = {"ada": ada_kwargs, "legacy": legacy_kwargs, "stylegan3_repo": stylegan3_repo_kwargs}[flavour](nv, G)
    path = write_snapshot(tmp_path / "network-snapshot-000100.pkl", nv, G, kwargs, protocol=protocol)
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        monkeypatch.delitem(sys.modules, name)  # the loader must not need NVIDIA's code

    assert detect_format(path) == "nvidia"
    loaded = load_generator(path)
    assert isinstance(loaded, StyleGAN2Generator)
    assert loaded.config == G.config
    assert loaded.config["conv_clamp"] == conv_clamp  # stylegan3-repo default read from the layers
    for key, value in G.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for noise_mode in ("const", "none"):
        assert render_diff(G, loaded, noise_mode) < 1e-5


def test_bare_records_of_real_files_never_run_code(tmp_path, nv):
    """G_ema, not G, is loaded, and the networks come back as inert records."""
    G = tiny()
    path = write_snapshot(tmp_path / "snap.pkl", nv, G, ada_kwargs(nv, G))
    data = nvidia_pkl.read_pickle(path)
    assert set(data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    record = data["G_ema"]
    assert isinstance(record, nvidia_pkl.PersistentRecord) and record.class_name == "Generator"
    assert isinstance(record.state["_init_kwargs"]["mapping_kwargs"], dict)
    fc = record.child("mapping", "fc0")
    assert fc.class_name == "FullyConnectedLayer"
    assert fc.state["weight_gain"] == pytest.approx(0.01 / math.sqrt(G.z_dim))  # numpy scalar decoded
    assert isinstance(fc.state["weight_gain"], float)


def test_tensor_variants_are_rebuilt(tmp_path, nv):
    """Strided (channels-last) weights, half-precision buffers, tensors carrying Python attributes."""
    G = tiny()
    G_file = copy.deepcopy(G)
    conv = G_file.synthesis.b16.conv1
    conv.weight = torch.nn.Parameter(conv.weight.detach().to(memory_format=torch.channels_last), False)
    G.synthesis.b32.conv1.noise_const.copy_(G.synthesis.b32.conv1.noise_const.half().float())
    G_file.synthesis.b32.conv1.noise_const = G.synthesis.b32.conv1.noise_const.half()
    G_file.mapping.w_avg.note = "python state on a tensor"  # pickled via _rebuild_from_type_v2
    path = write_snapshot(tmp_path / "variants.pkl", nv, G_file, ada_kwargs(nv, G_file))
    assert b"_rebuild_from_type_v2" in path.read_bytes()
    loaded = load_generator(path)
    assert same_weights(G, loaded)


def test_falls_back_to_G_with_a_warning(tmp_path, nv):
    G = tiny()
    path = write_snapshot(tmp_path / "no_ema.pkl", nv, G, ada_kwargs(nv, G), with_g_ema=False)
    with pytest.warns(UserWarning, match="G_ema"):
        loaded = load_generator(path)
    assert not torch.equal(loaded.synthesis.b4.const, G.synthesis.b4.const)  # G's weights (G + 0.5)
    assert torch.allclose(loaded.synthesis.b4.const, G.synthesis.b4.const + 0.5)


def test_missing_w_avg_is_estimated(tmp_path, nv):
    G = tiny()
    path = write_snapshot(tmp_path / "no_w_avg.pkl", nv, G, ada_kwargs(nv, G), with_w_avg=False)
    with pytest.warns(UserWarning, match="w_avg"):
        loaded = load_generator(path)
    assert torch.allclose(loaded.w_avg, G.estimate_w_avg(), atol=1e-6)


def test_bare_pickled_generator(tmp_path, nv):
    G = tiny()
    path = tmp_path / "G_ema_only.pkl"
    path.write_bytes(pickle.dumps(generator_record(nv, G, ada_kwargs(nv, G))))
    assert same_weights(G, load_generator(path))


# ----------------------------------------------------------------------------------------
# Refused architectures and options
# ----------------------------------------------------------------------------------------


def test_conditional_generator_is_refused(tmp_path, nv):
    G = tiny()
    kwargs = ada_kwargs(nv, G)
    kwargs["c_dim"] = 10
    path = write_snapshot(tmp_path / "cond.pkl", nv, G, kwargs)
    with pytest.raises(CheckpointError, match=r"cond\.pkl.*conditional.*c_dim=10"):
        load_generator(path)


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_other_architectures_are_refused(tmp_path, nv, architecture):
    G = tiny()
    kwargs = ada_kwargs(nv, G, architecture=architecture)
    path = write_snapshot(tmp_path / "arch.pkl", nv, G, kwargs, architecture=architecture)
    with pytest.raises(CheckpointError, match=f"architecture={architecture!r}"):
        load_generator(path)


@pytest.mark.parametrize(
    "group,key,value",
    [("mapping_kwargs", "layer_features", 64), ("synthesis_kwargs", "kernel_size", 1),
     ("synthesis_kwargs", "activation", "relu"), ("synthesis_kwargs", "my_new_option", True)],
)  # fmt: skip
def test_unsupported_options_are_named(tmp_path, nv, group, key, value):
    G = tiny()
    kwargs = ada_kwargs(nv, G)
    kwargs[group][key] = value
    path = write_snapshot(tmp_path / "opts.pkl", nv, G, kwargs)
    with pytest.raises(CheckpointError, match=rf"opts\.pkl.*{group}\.{key}={value!r}"):
        load_generator(path)


def test_stylegan3_generator_is_refused(tmp_path, nv):
    """An alias-free generator (synthesis.input, L*_ layers, numpy arrays in its state)."""
    G = tiny()
    syn_input = torch.nn.Module()
    syn_input.register_buffer("freqs", torch.randn(8, 2))
    input_rec = _record(nv, "SynthesisInput", syn_input, w_dim=32, channels=8, sampling_rate=_np64(16.0))
    if np is not None:
        input_rec.state["size"] = np.broadcast_to(np.asarray(36), [2])
    layers = {"input": input_rec, "L0_36_64": _record(nv, "SynthesisLayer", torch.nn.Module())}
    synthesis = _record(nv, "SynthesisNetwork", torch.nn.Module(), layers)
    mapping = _record(nv, "MappingNetwork", torch.nn.Module())
    kwargs = dict(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3, mapping_kwargs={})
    record = _record(nv, "Generator", G, {"synthesis": synthesis, "mapping": mapping}, init_kwargs=kwargs)
    path = tmp_path / "stylegan3-t.pkl"
    path.write_bytes(pickle.dumps(dict(G=record, D=None, G_ema=record, augment_pipe=None)))
    with pytest.raises(CheckpointError, match=r"stylegan3-t\.pkl.*StyleGAN3"):
        load_generator(path)


# ----------------------------------------------------------------------------------------
# Security: nothing from the file is imported or executed
# ----------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_payloads(marker):
    return [
        (os.system, (f"touch {marker}",), f"{os.system.__module__}.system"),
        (exec, (f"open({str(marker)!r}, 'w').write('x')",), "builtins.exec"),
        (eval, (f"open({str(marker)!r}, 'w')",), "builtins.eval"),
        (subprocess.check_call, (["touch", str(marker)],), "subprocess.check_call"),
    ]


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("suffix", [".pkl", ".pt"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_globals_are_refused(tmp_path, index, suffix, protocol):
    marker = tmp_path / "pwned"
    func, args, name = _evil_payloads(marker)[index]
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(func, args)}, protocol=protocol))
    assert detect_format(path) == "nvidia"  # a plain pickle is never handed to torch.load
    with pytest.raises(CheckpointError, match=rf"evil\{suffix}.*'{name}'"):
        load_generator(path)
    assert not marker.exists()


def test_malicious_nested_storage_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(os.system, (f"touch {marker}",)), protocol=2)
    path = tmp_path / "evil_storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(torch.storage._load_from_bytes, (payload,))}))
    with pytest.raises(CheckpointError, match=rf"evil_storage\.pkl.*'{os.system.__module__}\.system'"):
        load_generator(path)
    assert not marker.exists()


def test_persistent_module_source_is_never_executed(tmp_path, nv):
    """The real unpickler would exec module_src; ours loads the weights and ignores the code."""
    marker = tmp_path / "pwned"
    nv.src = (
        f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\nclass Generator: pass\n"
    )
    G = tiny()
    path = write_snapshot(tmp_path / "trojan.pkl", nv, G, ada_kwargs(nv, G))
    assert b"os.system" in path.read_bytes()
    loaded = load_generator(path)
    assert same_weights(G, loaded)
    assert not marker.exists()


def test_tensorflow_pickles_get_a_hint(tmp_path):
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01.")
    with pytest.raises(CheckpointError, match="TensorFlow.*legacy.py"):
        load_generator(path)


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97])
def test_truncated_pickle(tmp_path, nv, fraction):
    G = tiny()
    data = write_snapshot(tmp_path / "full.pkl", nv, G, ada_kwargs(nv, G)).read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.pkl.*truncated or corrupt"):
        load_generator(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        load_generator(tmp_path / "nothere.pkl")
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        nvidia_pkl.load(tmp_path / "nothere.pkl")


@pytest.mark.parametrize("content", [b"GIF89a not a checkpoint", b""])
def test_unknown_bytes(tmp_path, content):
    path = tmp_path / "mystery.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"mystery\.pkl"):
        detect_format(path)
    with pytest.raises(CheckpointError, match=r"mystery\.pkl"):
        load_generator(path)


def test_wrong_pickle_contents(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match=r"list\.pkl.*G_ema"):
        load_generator(path)
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": None}))
    with pytest.raises(CheckpointError, match=r"dict\.pkl.*no generator network"):
        load_generator(path)


def test_torch_save_file_named_pkl_is_detected_as_torch(tmp_path):
    path = tmp_path / "legacy.pkl"
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buffer, _use_new_zipfile_serialization=False)
    path.write_bytes(buffer.getvalue())
    assert detect_format(path) == "rosinality"
    with pytest.raises(CheckpointError, match=r"legacy\.pkl.*torch\.save"):
        nvidia_pkl.load(path)


def test_loading_does_not_warn_for_good_files(tmp_path, nv):
    G = tiny()
    path = write_snapshot(tmp_path / "quiet.pkl", nv, G, ada_kwargs(nv, G))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_generator(path)

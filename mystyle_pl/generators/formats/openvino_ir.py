"""MobileStyleGAN's OpenVINO IR export (``random-face`` wheel) -> ``MobileStyleGANGenerator``.

The FFHQ 1024 MobileStyleGAN weights are public only as an OpenVINO IR v10 export
(``MappingNetwork.{xml,bin}``, ``SynthesisNetwork.{xml,bin}`` under ``random_face/data/`` of
``random-face==2021.7.21.1``). This module reads them without OpenVINO: :class:`IRGraph` parses the
``.xml`` (no DTDs) and reads constants from the ``.bin``; the ``_mapping_state`` / ``_synthesis_state``
walkers turn the graph into the port's state dict, claiming every float constant exactly once
(loaded into a named parameter, or checked as a known structural value) and checking the op
counts, so anything the port does not rebuild raises :class:`CheckpointError`.
:func:`load_openvino_ir` returns the generator; :func:`convert_openvino_ir` writes it as a native
file. What the export folded into the weights, and how the port keeps them trainable, is told in
:mod:`mystyle_pl.generators.mobilestylegan`.
"""

from __future__ import annotations

import math
import os
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileutil import sha256_file
from ..mobilestylegan import LRELU_SLOPE, MobileStyleGANGenerator
from .errors import CheckpointError
from .native import load_state_strict, save


IR_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8}
# Ops that only carry the exporter's shape bookkeeping; integer constants feeding them need no parameter.
IR_PLUMBING_OPS = frozenset(
    {"Reshape", "Concat", "Gather", "Unsqueeze", "Squeeze", "VariadicSplit", "Broadcast", "Tile", "ShapeOf"}
)


@dataclass
class IRLayer:
    id: str
    name: str
    type: str
    data: dict[str, str]


class IRGraph:
    """An OpenVINO IR (v10/v11) graph: layers, edges and constant tensors read from the ``.bin``."""

    def __init__(self, xml_path: Path, bin_path: Path):
        self.xml_path, self.bin_path = Path(xml_path), Path(bin_path)
        root = _parse_xml_safely(self.xml_path)
        layers, edges = root.find("layers"), root.find("edges")
        if root.tag != "net" or root.get("version") not in ("10", "11") or layers is None or edges is None:
            raise CheckpointError(
                f"{xml_path}: not an OpenVINO IR v10/v11 model (<net version=10|11> with layers and edges)"
            )
        self.layers: dict[str, IRLayer] = {}
        port_index: dict[tuple[str, str], int] = {}  # (layer, port id) -> position among its inputs
        for el in layers:
            data = el.find("data")
            self.layers[el.get("id")] = IRLayer(
                el.get("id"), el.get("name", ""), el.get("type"), dict(data.attrib) if data is not None else {}
            )
            for pos, port in enumerate(el.find("input") if el.find("input") is not None else []):
                port_index[(el.get("id"), port.get("id"))] = pos
        self.producer: dict[tuple[str, int], str] = {}  # (layer, input position) -> producing layer
        self.consumers: dict[str, list[tuple[str, int]]] = {lid: [] for lid in self.layers}
        for edge in edges:
            src, dst = edge.get("from-layer"), edge.get("to-layer")
            pos = port_index.get((dst, edge.get("to-port")))
            if src not in self.layers or pos is None:
                raise CheckpointError(f"{xml_path}: edge {edge.attrib} refers to an unknown layer or port")
            self.producer[(dst, pos)] = src
            self.consumers[src].append((dst, pos))
        self._bin_size = self.bin_path.stat().st_size

    def of_type(self, op_type: str) -> list[IRLayer]:
        return [layer for layer in self.layers.values() if layer.type == op_type]

    def by_name(self, name: str) -> IRLayer:
        found = [layer for layer in self.layers.values() if layer.name == name]
        if len(found) != 1:
            raise CheckpointError(f"{self.xml_path}: expected one layer named {name!r}, found {len(found)}")
        return found[0]

    def input(self, layer: IRLayer, pos: int) -> IRLayer:
        try:
            return self.layers[self.producer[(layer.id, pos)]]
        except KeyError:
            raise CheckpointError(f"{self.xml_path}: layer {layer.name!r} has no input {pos}") from None

    def users(self, layer: IRLayer, op_type: str | None = None) -> list[IRLayer]:
        found = [self.layers[dst] for dst, _ in self.consumers[layer.id]]
        return [u for u in found if op_type is None or u.type == op_type]

    def only_user(self, layer: IRLayer, op_type: str) -> IRLayer:
        found = self.users(layer, op_type)
        if len(found) != 1:
            raise CheckpointError(
                f"{self.xml_path}: expected {layer.name!r} to feed one {op_type}, found {[u.name for u in found]}"
            )
        return found[0]

    def const_value(self, layer: IRLayer) -> np.ndarray:
        """The tensor of a ``Const`` layer (a copy, native byte order)."""
        if layer.type != "Const":
            raise CheckpointError(f"{self.xml_path}: layer {layer.name!r} is a {layer.type}, not a Const")
        dtype = IR_DTYPES.get(layer.data.get("element_type", ""))
        if dtype is None:
            raise CheckpointError(
                f"{self.xml_path}: Const {layer.name!r} has unsupported type {layer.data.get('element_type')}"
            )
        shape_text = layer.data.get("shape", "").strip()
        shape = [int(s) for s in shape_text.split(",")] if shape_text else []
        offset, size = int(layer.data["offset"]), int(layer.data["size"])
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if size != expected or offset < 0 or offset + size > self._bin_size:
            raise CheckpointError(
                f"{self.bin_path}: Const {layer.name!r} (shape {shape}, {size} bytes at {offset}) does not fit "
                f"the {self._bin_size}-byte weights file"
            )
        little_endian = np.dtype(dtype).newbyteorder("<")
        values = np.fromfile(self.bin_path, dtype=little_endian, count=size // little_endian.itemsize, offset=offset)
        return values.astype(dtype).reshape(shape)


def _parse_xml_safely(path: Path) -> ET.Element:
    """Parse an IR ``.xml`` without DTDs (no entity expansion)."""
    text = Path(path).read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise CheckpointError(f"{path}: XML with a DOCTYPE/ENTITY declaration is refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise CheckpointError(f"{path}: not well-formed XML ({e})") from e


# ----------------------------------------------------------------------------------------
# IR -> state dict


class _ConstClaims:
    """Every f32 Const of a graph must be claimed (loaded or checked) exactly once."""

    def __init__(self, graph: IRGraph):
        self.graph = graph
        self.claimed: dict[str, str] = {}

    def take(self, layer: IRLayer, role: str) -> np.ndarray:
        if layer.type != "Const":
            raise CheckpointError(
                f"{self.graph.xml_path}: expected a Const for {role}, found {layer.type} {layer.name!r}"
            )
        if layer.id in self.claimed:
            raise CheckpointError(
                f"{self.graph.xml_path}: Const {layer.name!r} claimed twice ({self.claimed[layer.id]}, {role})"
            )
        self.claimed[layer.id] = role
        return self.graph.const_value(layer)

    def expect(self, layer: IRLayer, role: str, value: float | np.ndarray, rtol: float = 1e-6) -> None:
        """Claim a structural constant after checking its value."""
        actual = self.take(layer, role)
        close = (
            np.allclose(actual, value, rtol=rtol, atol=0) if actual.dtype.kind == "f" else np.array_equal(actual, value)
        )
        if not close:
            raise CheckpointError(
                f"{self.graph.xml_path}: {role}: Const {layer.name!r} = {actual.ravel()[:4]}, "
                f"expected {np.ravel(value)[:4]}"
            )

    def check_all_claimed(self) -> None:
        unclaimed = []
        for layer in self.graph.of_type("Const"):
            if layer.id in self.claimed:
                continue
            is_float = layer.data.get("element_type", "").startswith("f")
            users = self.graph.users(layer)
            if not is_float and users and all(u.type in IR_PLUMBING_OPS for u in users):
                continue  # integer shape/axis plumbing of the exporter
            unclaimed.append(f"{layer.name} ({layer.data.get('element_type')} [{layer.data.get('shape')}])")
        if unclaimed:
            raise CheckpointError(
                f"{self.graph.xml_path}: {len(unclaimed)} constants match no parameter of the MobileStyleGAN port: "
                + ", ".join(unclaimed[:10])
                + (" ..." if len(unclaimed) > 10 else "")
            )


def _check_op_counts(graph: IRGraph, expected: dict[str, int], plumbing: set[str]) -> None:
    """The graph must compute what the port computes: these op counts exactly, no other op types."""
    counts: dict[str, int] = {}
    for layer in graph.layers.values():
        counts[layer.type] = counts.get(layer.type, 0) + 1
    problems = [f"{op}: {counts.get(op, 0)} (expected {n})" for op, n in expected.items() if counts.get(op, 0) != n]
    unknown = sorted(set(counts) - set(expected) - plumbing - {"Const"})
    if unknown:
        problems.append(f"unexpected op types {unknown}")
    if problems:
        raise CheckpointError(
            f"{graph.xml_path}: not the MobileStyleGAN graph this port rebuilds: " + "; ".join(problems)
        )


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _unit_rms(array: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``array = weight * gain`` with ``weight`` of unit RMS: returns ``(weight, gain)``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    gain = tensor.square().mean().sqrt().clamp_min(1e-12)
    return (tensor / gain).float(), gain.float()


def _mapping_state(graph: IRGraph, lr_multiplier: float) -> tuple[dict[str, torch.Tensor], int, int]:
    """The mapping network's FC layers, in graph order; the equalised-lr gains divided back out."""
    claims = _ConstClaims(graph)
    state: dict[str, torch.Tensor] = {}
    matmuls = sorted(graph.of_type("MatMul"), key=lambda layer: int(layer.id))
    z_dim = None
    for idx, matmul in enumerate(matmuls):
        if matmul.data.get("transpose_b") != "true":
            raise CheckpointError(f"{graph.xml_path}: mapping MatMul {matmul.name!r} is not x @ W.T")
        weight = claims.take(graph.input(matmul, 1), f"fc{idx}.weight")
        in_dim = weight.shape[1]
        z_dim = in_dim if z_dim is None else z_dim
        add = graph.only_user(matmul, "Add")
        bias = claims.take(graph.input(graph.input(add, 1), 0), f"fc{idx}.bias")  # Const -> Reshape -> Add
        prelu = graph.only_user(add, "PReLU")
        claims.expect(graph.input(prelu, 1), f"fc{idx} leaky-ReLU slope", LRELU_SLOPE)
        gain = graph.only_user(prelu, "Multiply")
        claims.expect(graph.input(gain, 1), f"fc{idx} activation gain", math.sqrt(2))
        state[f"fc{idx}.weight"] = _to_tensor(weight.astype(np.float64) * math.sqrt(in_dim) / lr_multiplier)
        state[f"fc{idx}.bias"] = _to_tensor(bias.reshape(-1).astype(np.float64) / lr_multiplier)
    # The input's second-moment normalisation: x * 1 / (mean(x ** 2) + eps) ** 0.5.
    for power, value in zip(sorted(graph.of_type("Power"), key=lambda layer: int(layer.id)), (2.0, 0.5, -1.0)):
        claims.expect(graph.input(power, 1), "pixel-norm exponent", value)
    (reduce,) = graph.of_type("ReduceMean")
    claims.expect(graph.input(reduce, 1), "pixel-norm axis", [1])
    eps_add = graph.only_user(reduce, "Add")
    claims.expect(graph.input(eps_add, 1), "pixel-norm epsilon", 1e-8, rtol=1e-3)
    for mul in graph.of_type("Multiply"):
        if graph.input(mul, 0).type == "Const":  # 1 / sqrt(...): the reciprocal's numerator
            claims.expect(graph.input(mul, 0), "pixel-norm numerator", 1.0)
    claims.check_all_claimed()
    n = len(matmuls)
    expected = {"Parameter": 1, "Result": 1, "MatMul": n, "PReLU": n, "Power": 3, "ReduceMean": 1}
    _check_op_counts(graph, {**expected, "Add": n + 1, "Multiply": n + 2}, set(IR_PLUMBING_OPS))
    return state, n, z_dim


def _modulation(graph: IRGraph, claims: _ConstClaims, prefix: str, scale: float | None) -> dict[str, np.ndarray]:
    """``prefix.modulation.{weight,bias}`` and the check of the modulation scale that follows them."""
    weight_const = graph.by_name(f"{prefix}.modulation.weight")
    weight = claims.take(weight_const, f"{prefix}.modulation.weight")
    bias = claims.take(graph.by_name(f"{prefix}.modulation.bias"), f"{prefix}.modulation.bias").reshape(-1)
    if scale is not None:
        add = graph.only_user(graph.only_user(weight_const, "MatMul"), "Add")
        mul = graph.only_user(graph.only_user(add, "Reshape"), "Multiply")
        claims.expect(graph.input(mul, 1), f"{prefix} modulation scale", scale, rtol=1e-5)
    return {"weight": weight, "bias": bias}


def _styled_conv(graph: IRGraph, claims: _ConstClaims, prefix: str, separable: bool) -> dict[str, np.ndarray]:
    """Weights of one upstream StyledConv2d: modulation, conv weights, folded noise, bias."""
    bias_const = graph.by_name(f"{prefix}.bias")
    bias_add = graph.only_user(bias_const, "Add")
    noise_add = graph.input(bias_add, 0)
    conv = graph.input(noise_add, 0)
    if noise_add.type != "Add" or conv.type != "Convolution":
        raise CheckpointError(f"{graph.xml_path}: {prefix}: expected Convolution -> Add(noise) -> Add(bias)")
    prelu = graph.only_user(bias_add, "PReLU")
    claims.expect(graph.input(prelu, 1), f"{prefix} leaky-ReLU slope", LRELU_SLOPE)
    out = {
        "bias": claims.take(bias_const, f"{prefix}.bias").reshape(-1),
        "noise": claims.take(graph.input(noise_add, 1), f"{prefix} noise (strength x map)"),
        "weight": claims.take(graph.input(conv, 1), f"{prefix} conv weight (x demodulation)"),
    }
    if separable:
        depthwise = graph.input(conv, 0)
        dw_const = graph.by_name(f"{prefix}.conv.weight_dw")
        if depthwise.type != "GroupConvolution" or graph.input(depthwise, 1).id != dw_const.id:
            raise CheckpointError(
                f"{graph.xml_path}: {prefix}: expected GroupConvolution({prefix}.conv.weight_dw) -> Convolution"
            )
        out["weight_dw"] = claims.take(dw_const, f"{prefix}.conv.weight_dw")
        in_channels, kernel = out["weight_dw"].shape[0], out["weight_dw"].shape[-1]
    else:
        in_channels, kernel = out["weight"].shape[1], out["weight"].shape[-1]
    out["scale"] = 1 / math.sqrt(in_channels * kernel**2)  # upstream multiplies the styles by it
    out["modulation"] = _modulation(graph, claims, f"{prefix}.conv", scale=out["scale"])
    return out


def _claim_haar_filters(graph: IRGraph, claims: _ConstClaims) -> int:
    """Check the inverse-Haar transposed-conv filters: ``[1, 1] / sqrt2`` (low) or ``[1, -1] / sqrt2`` (high)."""
    low = np.array([1.0, 1.0]) / math.sqrt(2)
    count = 0
    for layer in graph.of_type("GroupConvolutionBackpropData"):
        const = graph.input(layer, 1)
        taps = graph.const_value(const)
        expected = low if np.allclose(taps.reshape(-1, 2), low, rtol=1e-6) else low * [1, -1]
        claims.expect(
            const, "inverse Haar filter taps", np.broadcast_to(expected, (taps.size // 2, 2)).reshape(taps.shape)
        )
        count += 1
    return count


def _synthesis_state(graph: IRGraph) -> tuple[dict[str, torch.Tensor], list[int]]:
    """The synthesis network's parameters by their exported names (``m.*``), in our layout."""
    claims = _ConstClaims(graph)
    state: dict[str, torch.Tensor] = {}

    def put_affine(dst: str, mod: dict[str, np.ndarray]) -> None:
        state[f"{dst}.affine.weight"], state[f"{dst}.affine.weight_gain"] = _unit_rms(mod["weight"])
        state[f"{dst}.affine.bias"] = _to_tensor(mod["bias"])

    def put_styled(dst: str, src: str, separable: bool) -> int:
        conv = _styled_conv(graph, claims, src, separable)
        put_affine(f"{dst}.conv", conv["modulation"])
        scale = conv["scale"]
        if separable:
            # runtime: pointwise(weight_pw) o depthwise(weight_dw) of (x * scale * style)
            weight_dw = conv["weight_dw"].reshape(conv["weight_dw"].shape[0], 1, *conv["weight_dw"].shape[-2:])
            state[f"{dst}.conv.weight_dw"], gain = _unit_rms(weight_dw * scale)
            state[f"{dst}.conv.weight_dw_gain"] = gain
            state[f"{dst}.conv.weight_pw"], state[f"{dst}.conv.weight_pw_gain"] = _unit_rms(conv["weight"][:, :, 0, 0])
        else:
            state[f"{dst}.conv.weight"], state[f"{dst}.conv.weight_gain"] = _unit_rms(conv["weight"] * scale)
        noise = conv["noise"].reshape(conv["noise"].shape[-2:])
        state[f"{dst}.noise.noise_const"], state[f"{dst}.noise.noise_strength"] = _unit_rms(noise)
        state[f"{dst}.bias"] = _to_tensor(conv["bias"])
        return conv["weight"].shape[0]

    const_input = claims.take(graph.by_name("m.input.input"), "m.input.input")
    state["const"] = _to_tensor(const_input[0])
    channels = [put_styled("b4", "m.conv1", separable=False)]
    num_blocks = 0
    while any(layer.name == f"m.layers.{num_blocks}.up.modulation.weight" for layer in graph.layers.values()):
        dst = f"b{8 * 2**num_blocks}"
        put_affine(f"{dst}.up", _modulation(graph, claims, f"m.layers.{num_blocks}.up", scale=None))
        put_styled(f"{dst}.conv0", f"m.layers.{num_blocks}.conv1", separable=True)
        channels.append(put_styled(f"{dst}.conv1", f"m.layers.{num_blocks}.conv2", separable=True))
        num_blocks += 1
    last = f"m.layers.{num_blocks - 1}.to_img"
    mod = _modulation(graph, claims, f"{last}.conv", scale=1 / math.sqrt(channels[-1]))
    put_affine("to_img", mod)
    weight = claims.take(graph.by_name(f"{last}.conv.weight"), f"{last}.conv.weight")[:, :, 0, 0]
    state["to_img.weight"], state["to_img.weight_gain"] = _unit_rms(weight / math.sqrt(channels[-1]))
    state["to_img.bias"] = _to_tensor(claims.take(graph.by_name(f"{last}.bias"), f"{last}.bias").reshape(-1))
    _claim_haar_filters(graph, claims)
    claims.check_all_claimed()
    styled = 1 + 2 * num_blocks
    expected = {
        "Parameter": 1, "Result": 1, "MatMul": styled + num_blocks + 1, "Convolution": styled + 1,
        "GroupConvolution": 2 * num_blocks, "PReLU": styled, "GroupConvolutionBackpropData": 6 * (num_blocks + 1),
    }  # fmt: skip
    _check_op_counts(graph, expected, set(IR_PLUMBING_OPS) | {"Add", "Multiply"})
    return state, channels


def _locate_ir(src: Path, stem: str) -> tuple[Path, Path]:
    for folder in (src, src / "random_face" / "data", src / "data"):
        xml_path, bin_path = folder / f"{stem}.xml", folder / f"{stem}.bin"
        if xml_path.is_file() and bin_path.is_file():
            return xml_path, bin_path
    raise FileNotFoundError(f"{src}: {stem}.xml and {stem}.bin not found (also looked in random_face/data/)")


def load_openvino_ir(src: str | os.PathLike, w_avg_samples: int = 10_000, seed: int = 0) -> MobileStyleGANGenerator:
    """Build a ``MobileStyleGANGenerator`` from the IR files in ``src`` (a folder or the random-face wheel).

    The folder holds ``MappingNetwork.{xml,bin}`` and ``SynthesisNetwork.{xml,bin}`` (directly or
    under ``random_face/data/``). ``w_avg`` is the mean of ``w_avg_samples`` mapped seeded ``z``.
    """
    src = Path(src).expanduser()
    if src.is_file() and zipfile.is_zipfile(src):
        with tempfile.TemporaryDirectory(prefix="mystyle-ir-") as tmp:
            with zipfile.ZipFile(src) as zf:
                for stem in ("MappingNetwork", "SynthesisNetwork"):
                    for ext in ("xml", "bin"):
                        member = f"random_face/data/{stem}.{ext}"
                        (Path(tmp) / f"{stem}.{ext}").write_bytes(zf.read(member))
            return load_openvino_ir(tmp, w_avg_samples=w_avg_samples, seed=seed)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: expected a folder with the MobileStyleGAN IR files or the random-face wheel")
    mapping_graph = IRGraph(*_locate_ir(src, "MappingNetwork"))
    synthesis_graph = IRGraph(*_locate_ir(src, "SynthesisNetwork"))
    lr_multiplier = 0.01
    mapping_state, mapping_layers, z_dim = _mapping_state(mapping_graph, lr_multiplier)
    synthesis_state, channels = _synthesis_state(synthesis_graph)
    w_dim = synthesis_state["b4.conv.affine.weight"].shape[1]
    generator = MobileStyleGANGenerator(
        z_dim=z_dim, w_dim=w_dim, channels=channels, mapping_layers=mapping_layers, mapping_lr_multiplier=lr_multiplier
    )
    state = {f"mapping.{k}": v for k, v in mapping_state.items()}
    state.update({f"synthesis.{k}": v for k, v in synthesis_state.items()})
    state["mapping.w_avg"] = torch.zeros(w_dim)
    load_state_strict(generator, state, source=str(src))
    generator.eval()
    generator.mapping.w_avg.copy_(generator.estimate_w_avg(num_samples=w_avg_samples, seed=seed))
    return generator


def convert_openvino_ir(src_dir: str | os.PathLike, dst: str | os.PathLike, w_avg_samples: int = 10_000) -> Path:
    """Convert the MobileStyleGAN OpenVINO IR in ``src_dir`` to a native file at ``dst`` (atomic).

    ``src_dir``: a folder with ``MappingNetwork.{xml,bin}`` and ``SynthesisNetwork.{xml,bin}`` (the
    ``random_face/data/`` members of ``random-face==2021.7.21.1``; also accepted under
    ``random_face/data/``), or the wheel itself. Every constant of the IR is either loaded into a
    named parameter or checked as a known structural value; anything else raises ``CheckpointError``.
    """
    src = Path(src_dir).expanduser()
    generator = load_openvino_ir(src, w_avg_samples=w_avg_samples)
    provenance: dict[str, Any] = {"source": "MobileStyleGAN FFHQ 1024, OpenVINO IR (random-face 2021.7.21.1)"}
    if src.is_dir():
        provenance["source_sha256"] = {
            path.name: sha256_file(path)
            for stem in ("MappingNetwork", "SynthesisNetwork")
            for path in _locate_ir(src, stem)
        }
    provenance["w_avg"] = f"mean of mapping(z) over {w_avg_samples} seeded z (seed 0)"
    return save(generator, dst, extra_metadata=provenance)


__all__ = ["IRGraph", "IRLayer", "convert_openvino_ir", "load_openvino_ir"]

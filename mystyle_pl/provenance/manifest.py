"""C2PA Content Credentials: build, sign and read a file's manifest (through ``c2pa-python``).

A restored or edited picture is ``c2pa.edited`` with the digital source type
``compositeWithTrainedAlgorithmicMedia`` and the user's photo as its ``parentOf`` ingredient
(identified by its SHA-256; no thumbnail of it is stored); a new sample of the person is
``c2pa.created`` with ``trainedAlgorithmicMedia``. The assertion :data:`ASSERTION` holds the
task, its settings, the prior's digest and the watermark's run id: never the album's photos or
names.

``c2pa`` is imported lazily (its native library takes a moment to load), so that ``import
mystyle_pl`` stays light.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from .keys import SigningKey
from .xmp import COMPOSITE, TRAINED

ASSERTION = "org.mystyle-pl.generation"  # our own assertion's label
CLAIM_GENERATOR = "mystyle-pl"
INGREDIENT_ID = "original"  # the ingredient's label, referenced by the "opened" action
MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass
class Label:
    """What a written image says about itself (the input of :func:`sign`)."""

    kind: str  # "edited" (restored, edited: a photo changed by the model) or "created" (a new sample)
    task: str  # the task's name ("superres", "inpaint", "edit", "sample", ...)
    settings: dict[str, Any] = field(default_factory=dict)  # the task's settings (JSON-able)
    prior_digest: str | None = None  # sha256 of the prior's weights/metadata, None when unknown
    ingredient_sha256: str | None = None  # sha256 of the user's original file (edited only)
    ingredient_title: str = "original photo"  # the ingredient's title (never a path or a person's name)
    run_id: str | None = None  # the watermark's run id (6 hex digits), None when not marked
    watermark: str | None = None  # the watermark's state ("marked (run ...)", "skipped: crop 128 px < 192 px minimum")

    def __post_init__(self) -> None:
        if self.kind not in ("edited", "created"):
            raise ValueError(f"kind must be 'edited' or 'created', got {self.kind!r}")

    @property
    def source_type(self) -> str:
        return COMPOSITE if self.kind == "edited" else TRAINED

    @property
    def action(self) -> str:
        return f"c2pa.{self.kind}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (a PSNR of an exact match is ``inf``) as the string
    ``"inf"`` / ``"-inf"`` / ``"nan"``: c2pa-rs parses the manifest as strict JSON, which has no
    ``Infinity`` or ``NaN``, and refused to sign such a result.

    >>> json_safe({"consistency_db": [float("inf"), 31.5], "n": 2})
    {'consistency_db': ['inf', 31.5], 'n': 2}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def manifest_definition(label: Label, title: str, with_ingredient: bool = False) -> dict[str, Any]:
    """The manifest (c2pa-rs JSON) for ``label``; ``title`` is the written file's name;
    ``with_ingredient``: the user's photo is added as the ingredient the "opened" action names."""
    action: dict[str, Any] = {
        "action": label.action,
        "digitalSourceType": label.source_type,
        "softwareAgent": {"name": CLAIM_GENERATOR, "version": __version__},
        "parameters": {"task": label.task},
    }
    ours = {"task": label.task, "settings": json_safe(label.settings), "prior_sha256": label.prior_digest,
            "watermark_run_id": label.run_id, "watermark": label.watermark,
            "generator": f"{CLAIM_GENERATOR} {__version__}"}  # fmt: skip
    actions = [action]
    if label.ingredient_sha256:
        ours["ingredient_sha256"] = label.ingredient_sha256
    if label.kind == "edited":
        # C2PA 2: the first action is "created" or "opened"; the user's photo is opened, then edited.
        if not with_ingredient:
            raise ValueError("an edited picture is signed with its original photo as the ingredient (none was given)")
        opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [INGREDIENT_ID]}}
        actions = [opened, action]
    return {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": __version__}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": ASSERTION, "data": ours},
        ],
    }


def _signer(key: SigningKey):
    import c2pa  # lazy: see the module docstring

    info = c2pa.C2paSignerInfo(alg=key.alg.encode(), sign_cert=key.cert_pem, private_key=key.key_pem, ta_url=None)
    return c2pa.Signer.from_info(info)


def sign(data: bytes, fmt: str, label: Label, key: SigningKey, title: str,
         ingredient: bytes | None = None, ingredient_format: str = "png") -> bytes:  # fmt: skip
    """Embed a signed manifest into the encoded image ``data`` (``fmt``: "png" / "jpg") -> the signed bytes.

    ``ingredient``: the user's original file (edited pictures): added as the ``parentOf``
    ingredient, identified by its hash. Raises ``c2pa.C2paError`` when signing fails (a bad key)."""
    import c2pa  # lazy: see the module docstring

    mime = MIME[fmt.lower()]
    definition = manifest_definition(label, title, with_ingredient=ingredient is not None)
    # No thumbnails: the user's photo must not travel inside the result, and they would multiply
    # the file's size (a 12 kB PNG became 560 kB with them).
    settings = {"builder": {"thumbnail": {"enabled": False}}}
    with c2pa.Context.from_dict(settings) as context, c2pa.Builder(definition, context) as builder:
        if ingredient is not None:
            ing = {"title": label.ingredient_title, "relationship": "parentOf", "label": INGREDIENT_ID,
                   "format": MIME.get(ingredient_format.lower(), "image/png")}  # fmt: skip
            builder.add_ingredient(ing, ing["format"], io.BytesIO(ingredient))
        out = io.BytesIO()
        with _signer(key) as signer:
            builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@dataclass
class ManifestReport:
    """What :func:`read` found: ``state`` is ``"absent"``, ``"valid"``, ``"altered"`` or ``"invalid"``."""

    state: str
    signer: str | None = None  # the certificate's subject (common name / organisation)
    issuer: str | None = None
    install_key: bool = False  # signed with a mystyle-pl install key (self-signed: integrity only)
    trusted: bool = False  # the signer chains to a trust anchor c2pa knows
    actions: list[str] = field(default_factory=list)
    source_type: str | None = None
    ingredient_sha256: str | None = None
    generation: dict[str, Any] | None = None  # our own assertion
    problems: list[str] = field(default_factory=list)  # c2pa's failure codes and explanations


_ALTERED = ("assertion.dataHash.mismatch", "assertion.hashedURI.mismatch", "assertion.boxesHash.mismatch",
            "claimSignature.mismatch", "assertion.bmffHash.mismatch", "claim.hashedURI.mismatch")  # fmt: skip


def read(data: bytes, fmt: str, trust_anchors: bytes | None = None) -> ManifestReport:
    """Read and validate the manifest of an encoded image. ``trust_anchors``: PEM certificates (see
    :func:`~.keys.trust_anchors`); a signer whose chain ends at one of them is ``trusted``. Never
    raises for a bad manifest: the report's ``state`` says ``"invalid"`` with the reason in ``problems``."""
    import c2pa  # lazy: see the module docstring

    # c2pa-rs settings: "trust.user_anchors" adds the anchors to the (empty, offline) default list.
    settings = {"trust": {"user_anchors": trust_anchors.decode()}, "verify": {"verify_trust": True}} if trust_anchors else {}
    with c2pa.Context.from_dict(settings) as context:
        try:
            reader = c2pa.Reader.try_create(MIME.get(fmt.lower(), fmt), io.BytesIO(data), None, context)
        except c2pa.C2paError as e:
            return ManifestReport("invalid", problems=[f"{type(e).__name__}: {e}"])
        if reader is None:
            return ManifestReport("absent")
        with reader:
            store = json.loads(reader.json())
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    status = store.get("validation_status") or []
    results = store.get("validation_results") or {}
    codes = [s.get("code", "") for s in status]
    for part in (results.get("activeManifest") or {}).get("failure", []):
        if part.get("code") not in codes:
            status.append(part)
            codes.append(part.get("code", ""))
    problems = [f"{s.get('code')}: {s.get('explanation', '')}".strip() for s in status]
    untrusted = any(c == "signingCredential.untrusted" for c in codes)
    hard = [c for c in codes if c != "signingCredential.untrusted"]
    if any(c in _ALTERED or c.endswith(".mismatch") for c in hard):
        state = "altered"
    elif hard:
        state = "invalid"
    else:
        state = "valid"
    sig = active.get("signature_info") or {}
    report = ManifestReport(state, signer=sig.get("common_name") or sig.get("issuer"), issuer=sig.get("issuer"),
                            problems=problems)  # fmt: skip
    report.trusted = state == "valid" and not untrusted and (store.get("validation_state") in (None, "Trusted"))
    report.install_key = "mystyle-pl install" in json.dumps(sig) or "mystyle-pl (local install)" in json.dumps(sig)
    for assertion in active.get("assertions", []):
        label, payload = assertion.get("label", ""), assertion.get("data", {})
        if label.startswith("c2pa.actions"):
            for a in payload.get("actions", []):
                report.actions.append(a.get("action"))
                report.source_type = report.source_type or a.get("digitalSourceType")
        elif label == ASSERTION:
            report.generation = payload
            report.ingredient_sha256 = payload.get("ingredient_sha256")
    return report


__all__ = ["ASSERTION", "Label", "ManifestReport", "manifest_definition", "read", "sha256_bytes", "sign"]

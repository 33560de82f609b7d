"""The signing key and certificate of the Content Credentials.

Which key signs (first that is set wins):

1. the user's own: ``--provenance_cert CERT.pem --provenance_key KEY.pem`` on the command line,
   or the environment variables ``MYSTYLE_C2PA_CERT`` / ``MYSTYLE_C2PA_KEY`` (PEM files: the
   certificate chain, signer first, and its private key; ``MYSTYLE_C2PA_ALG`` names the
   algorithm when it is not ES256, e.g. ``ps256``, ``ed25519``);
2. otherwise the **install key**: an ECDSA P-256 key with a certificate of its own local
   root, made once per install under ``$MYSTYLE_HOME/provenance/`` (see
   :func:`mystyle_pl.assets.home`). Nobody else trusts it: a manifest signed with it proves
   that the file is unchanged since it was written, not who wrote it (``verify`` says so).

C2PA refuses a self-signed signing certificate, so the install key is a pair: a local root
(``install-root.pem``, self-signed, a CA) and the signing certificate it issues
(``install-cert.pem``, document signing); the chain written into a manifest is both.

Which signers ``verify`` trusts: those whose chain ends at a certificate of ``verify
--trust-anchors ANCHORS.pem`` or ``$MYSTYLE_TRUST_ANCHORS`` (:func:`trust_anchors`); none otherwise.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..assets import home
from ..generators.fileutil import write_bytes_atomic

CERT_ENV, KEY_ENV, ALG_ENV = "MYSTYLE_C2PA_CERT", "MYSTYLE_C2PA_KEY", "MYSTYLE_C2PA_ALG"
TRUST_ENV = "MYSTYLE_TRUST_ANCHORS"  # PEM file of the certificates verify trusts (verify --trust-anchors)
INSTALL_SUBJECT = "mystyle-pl install key (integrity only)"  # CN: at most 64 characters


@dataclass(frozen=True)
class SigningKey:
    """A certificate chain (PEM, signer first) and its private key (PEM), and where they came from."""

    cert_pem: bytes
    key_pem: bytes
    alg: str  # "es256", "ps256", "ed25519", ...
    source: str  # "install" (the per-install key) or "user" (given by option or environment)
    path: str  # the certificate file

    @property
    def self_signed(self) -> bool:
        return self.source == "install"


def provenance_dir() -> Path:
    """``$MYSTYLE_HOME/provenance``: the install key lives here."""
    return home() / "provenance"


def _read_pem(path: str | os.PathLike, what: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if b"-----BEGIN" not in data:
        raise ValueError(f"{path}: the {what} is not a PEM file (expected '-----BEGIN ...')")
    return data


def signing_key(cert: str | os.PathLike | None = None, key: str | os.PathLike | None = None,
                alg: str | None = None) -> SigningKey:  # fmt: skip
    """The key that signs: ``cert`` + ``key`` (PEM paths), else ``$MYSTYLE_C2PA_CERT`` +
    ``$MYSTYLE_C2PA_KEY``, else the install key (made on first use).

    Raises ``ValueError`` when only one of certificate and key is given, ``FileNotFoundError``
    naming a file that cannot be read."""
    cert = cert or os.environ.get(CERT_ENV) or None
    key = key or os.environ.get(KEY_ENV) or None
    if (cert is None) != (key is None):
        raise ValueError(
            "give both the signing certificate and its key (--provenance_cert and --provenance_key, or "
            f"${CERT_ENV} and ${KEY_ENV}), or neither to sign with this install's own key"
        )
    if cert is not None:
        alg = (alg or os.environ.get(ALG_ENV) or "es256").lower()
        return SigningKey(_read_pem(cert, "certificate"), _read_pem(key, "private key"), alg, "user", str(cert))
    return install_key()


def trust_anchors(path: str | os.PathLike | None = None) -> bytes | None:
    """The trust anchors ``verify`` checks signers against: the PEM file ``path``, else
    ``$MYSTYLE_TRUST_ANCHORS``, else None (no signer is trusted). A signer whose certificate chains
    to one of them is reported trusted.

    Raises ``FileNotFoundError`` naming an unreadable file, ``ValueError`` naming a file that holds
    no PEM certificate."""
    path = path or os.environ.get(TRUST_ENV) or None
    if path is None:
        return None
    data = _read_pem(path, "trust-anchor file")
    # cryptography parses them here so that a bad file is named now, not as an opaque c2pa error per image;
    # lazy so that importing the package does not load it.
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{path}: the trust anchors are not PEM certificates ({e})") from None
    return data


def install_key() -> SigningKey:
    """This install's key under :func:`provenance_dir` (``install/``: made, with its local root, on
    first use).

    Several processes may ask at once on a new install (e.g. the ranks of a DDP predict): each makes
    a pair in a folder of its own and renames it into place; the first rename wins and the others
    read the winner's pair, so a certificate never meets another process's key."""
    folder = provenance_dir() / "install"
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if not (cert_path.is_file() and key_path.is_file()):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=folder.parent))
        _make_install_key(tmp)
        try:
            os.rename(tmp, folder)  # atomic; fails when another process's pair is already in place
        except OSError:
            if not cert_path.is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return SigningKey(cert_path.read_bytes(), key_path.read_bytes(), "es256", "install", str(cert_path))


def _make_install_key(folder: Path) -> None:
    """A local root and a signing key + certificate issued by it, written into ``folder`` (which
    exists): ``root.pem``, ``key.pem`` (mode 600), ``cert.pem`` (the chain)."""
    # cryptography (already installed with c2pa-python's and lightning's dependencies) makes the
    # keys; lazy so that importing the package does not load it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=3650)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mystyle-pl (local install)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])  # fmt: skip

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder().subject_name(name("mystyle-pl install root")).issuer_name(name("mystyle-pl install root"))
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name(INSTALL_SUBJECT)).issuer_name(root.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_bytes_atomic(folder / "root.pem", root.public_bytes(pem))
    write_bytes_atomic(folder / "key.pem", key_pem)
    os.chmod(folder / "key.pem", 0o600)
    write_bytes_atomic(folder / "cert.pem", cert.public_bytes(pem) + root.public_bytes(pem))


__all__ = ["ALG_ENV", "CERT_ENV", "KEY_ENV", "TRUST_ENV", "SigningKey", "install_key", "provenance_dir", "signing_key",
           "trust_anchors"]

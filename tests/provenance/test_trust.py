"""Trust anchors: a signer whose certificate chains to an anchor given to ``verify`` (``--trust-anchors``,
``$MYSTYLE_TRUST_ANCHORS``) is trusted; the install key and strangers are not, and say why."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mystyle_pl.cli import dispatch
from mystyle_pl.data.io import write_bytes_atomic
from mystyle_pl.provenance import verify
from mystyle_pl.provenance.keys import SigningKey, install_key
from mystyle_pl.provenance.label import labelled_bytes
from mystyle_pl.provenance.manifest import Label

from .conftest import face_like

PEM = serialization.Encoding.PEM


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test CA"), x509.NameAttribute(NameOID.COMMON_NAME, common)])


def throwaway_ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA made for the test (P-256, one day)."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def signer_of(ca: x509.Certificate, ca_key) -> SigningKey:
    """A document-signing key and certificate issued by ``ca``: the chain is signer then CA."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("a newsroom's signer")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return SigningKey(cert.public_bytes(PEM) + ca.public_bytes(PEM), key_pem, "es256", "user", "test")


def test_a_signer_chaining_to_a_given_anchor_is_trusted(tmp_path, monkeypatch, capsys):
    ca, ca_key = throwaway_ca("test root")
    other, _ = throwaway_ca("someone else's root")
    anchors = write_bytes_atomic(tmp_path / "anchors.pem", ca.public_bytes(PEM))
    strangers = write_bytes_atomic(tmp_path / "other.pem", other.public_bytes(PEM))
    label = Label("created", "sample")
    signed = write_bytes_atomic(tmp_path / "signed.png", labelled_bytes(face_like(64), "png", label, signer_of(ca, ca_key), "s.png"))
    ours = write_bytes_atomic(tmp_path / "install.png", labelled_bytes(face_like(64), "png", label, install_key(), "i.png"))

    trusted = verify(signed, search_faces=False, trust_anchors=anchors)
    assert trusted.manifest["state"] == "valid" and trusted.manifest["trusted"]
    assert "signed by a newsroom's signer, trusted (chains to a trust anchor)" in trusted.verdict
    for anchor in (None, strangers):  # no anchor, or one the signer does not chain to: valid, not trusted
        report = verify(signed, search_faces=False, trust_anchors=anchor)
        assert report.manifest["state"] == "valid" and not report.manifest["trusted"]
        assert "untrusted (chains to no trust anchor given" in report.verdict
    install = verify(ours, search_faces=False, trust_anchors=anchors)
    assert not install.manifest["trusted"]
    assert "untrusted (install key: proves the file is unchanged since written, not who wrote it)" in install.verdict

    # The environment variable is the default of both the Python function and the command.
    monkeypatch.setenv("MYSTYLE_TRUST_ANCHORS", str(anchors))
    assert verify(signed, search_faces=False).manifest["trusted"]
    assert dispatch(["verify", "--no-faces", str(signed)]) == 0
    assert "trusted (chains to a trust anchor)" in capsys.readouterr().out
    monkeypatch.delenv("MYSTYLE_TRUST_ANCHORS")
    assert dispatch(["verify", "--no-faces", "--trust-anchors", str(anchors), str(signed), str(ours)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "trusted (chains to a trust anchor)" in lines[0] and "untrusted (install key" in lines[1]


def test_a_bad_trust_anchor_file_is_named(tmp_path):
    bad = tmp_path / "anchors.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=f"{bad}: the trust anchors are not PEM certificates"):
        dispatch(["verify", "--trust-anchors", str(bad), str(bad)])
    (tmp_path / "text.pem").write_text("hello")
    with pytest.raises(ValueError, match="text.pem: the trust-anchor file is not a PEM file"):
        verify(tmp_path / "text.pem", trust_anchors=tmp_path / "text.pem")
    with pytest.raises(FileNotFoundError, match="missing.pem: cannot read the trust-anchor file"):
        verify(bad, trust_anchors=tmp_path / "missing.pem")

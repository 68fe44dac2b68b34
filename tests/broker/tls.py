"""Certificates for the secured test broker, made with the ``cryptography`` package.

:func:`make_pki` writes, into one directory, a CA, a broker certificate signed by it (valid for
``127.0.0.1`` and ``localhost``), a client certificate for mutual TLS, and a second CA that
signed nothing (a client trusting only that one must fail TLS verification). Files are PEM,
which both the Java broker (``ssl.keystore.type=PEM``) and Python's ``ssl`` read directly, so
no ``keytool`` and no Java keystores are needed. Keys are EC P-256: quick to generate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "pem_property"]

_VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca_cert: Path
    other_ca_cert: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    #: The client certificate's subject as the broker sees it (its default SSL principal).
    client_principal: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kafkalog tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    # Backdated a little: the broker JVM and Python must agree the cert is already valid.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALID_FOR)
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        # Hostname verification checks these, so the broker must be reached by one of them.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    # Unencrypted PKCS#8: what Kafka's PEM keystore reads when ssl.key.password is unset.
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def make_pki(directory: Path, client_name: str = "mtls-writer") -> Pki:
    """Generate the CA, broker and client certificates into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("kafkalog test CA")
    other_ca, _ = _ca("kafkalog unrelated CA")
    broker = _leaf("localhost", ca, server=True)
    client = _leaf(client_name, ca, server=False)
    return Pki(
        ca_cert=_write_cert(directory / "ca.pem", ca[0]),
        other_ca_cert=_write_cert(directory / "other-ca.pem", other_ca),
        broker_cert=_write_cert(directory / "broker.pem", broker[0]),
        broker_key=_write_key(directory / "broker.key", broker[1]),
        client_cert=_write_cert(directory / "client.pem", client[0]),
        client_key=_write_key(directory / "client.key", client[1]),
        # Kafka renders the subject RFC 2253 style, most specific RDN first.
        client_principal=f"CN={client_name},O=kafkalog tests",
    )


def pem_property(path: Path) -> str:
    """A PEM file as one line, for a Java properties value (Kafka's PEM parser skips spaces)."""
    return " ".join(path.read_text().split())

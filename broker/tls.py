"""The TLS material of a local secure cluster: its own certificate authority and one server
certificate for all its nodes, made with the ``cryptography`` package and kept under the
cluster's directory (``clusters/<name>/tls/``) for the life of its storage.

Layout (the directory is mode 0700, the private keys 0600)::

    tls/ca.pem         the cluster's CA certificate: the brokers' trust store and every
                       client's ``ssl_cafile``
    tls/ca-key.pem     the CA's private key (PKCS#8), used only to issue the server certificate
    tls/server.pem     the brokers' key store: the server's PKCS#8 private key, unencrypted,
                       then its certificate chain (server certificate, CA certificate)

Kafka 3.9 reads these PEM files itself (``ssl.keystore.type=PEM``, ``ssl.truststore.type=PEM``,
KIP-651); an unencrypted PKCS#8 key needs no ``ssl.key.password`` (that Kafka's
``DefaultSslEngineFactory`` reads a key without a password as a plain ``PKCS8EncodedKeySpec``),
so no password sits beside the key: the file's mode protects it, as it protects the admin
password in ``server.properties``.

Every node listens on 127.0.0.1 and clients check the broker's host name (Python's
``ssl.match_hostname`` rules, RFC 6125), so the server certificate's subjectAltName holds
``IP:127.0.0.1`` and ``DNS:localhost`` (RFC 5280 4.2.1.6: a client checks an IP address
against an iPAddress entry, never against the common name). The CA is basicConstraints
CA:true, keyCertSign (RFC 5280 4.2.1.9, 4.2.1.3); the server certificate CA:false, with
extendedKeyUsage serverAuth and clientAuth (the brokers also connect to one another with it).

``ensure`` makes what is missing and reuses what is there: a restarted cluster keeps its CA,
so the clients' ``ssl_cafile`` stays valid; a server certificate that expires within
``RENEW_BEFORE`` (or does not chain to the kept CA) is issued anew from the same CA.
``trialops broker wipe`` deletes the directory with the cluster's data."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_DIR = "tls"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
KEYSTORE = "server.pem"
SERVER_HOSTS = ("127.0.0.1", "localhost")
"""The names every node of a local cluster answers to (they all listen on 127.0.0.1)."""
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
"""The CA/Browser Forum's ceiling for a server certificate (Baseline Requirements 6.3.2)."""
RENEW_BEFORE = dt.timedelta(days=30)
BACKDATE = dt.timedelta(minutes=5)
"""notBefore is a little in the past, against a clock that is slightly behind."""


class TlsError(ValueError):
    """The cluster's TLS material is unreadable or inconsistent."""


@dataclass(frozen=True)
class ClusterTls:
    """Where a cluster's TLS material is."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    keystore: Path

    @classmethod
    def under(cls, cluster_dir: Path) -> ClusterTls:
        directory = cluster_dir / TLS_DIR
        return cls(directory, directory / CA_CERT, directory / CA_KEY, directory / KEYSTORE)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, with ``mode`` from the file's creation."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _new_ca(cluster: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trialops local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"trialops local CA ({cluster})"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server(
    cluster: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    names: list[x509.GeneralName] = []
    for host in SERVER_HOSTS:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trialops local broker"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"kafka ({cluster})"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load_ca(tls: ClusterTls) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    if not tls.ca_cert.exists() and not tls.ca_key.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(
            f"the cluster's CA in {tls.directory} is unreadable ({exc}); its clients trust that "
            "CA, so it is not replaced: wipe the cluster to start over"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsError(f"{tls.ca_key} is not the key of {tls.ca_cert}")
    return key, cert


def _server_still_good(tls: ClusterTls, ca: x509.Certificate, now: dt.datetime) -> bool:
    """True if the kept key store holds a key and a certificate issued by ``ca`` for
    ``SERVER_HOSTS`` that is valid for at least ``RENEW_BEFORE``."""
    try:
        data = tls.keystore.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        cert = x509.load_pem_x509_certificates(data)[0]
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    names = {str(n) for n in sans.get_values_for_type(x509.IPAddress)}
    names |= set(sans.get_values_for_type(x509.DNSName))
    return (
        key.public_key() == cert.public_key()
        and set(SERVER_HOSTS) <= names
        and cert.not_valid_before_utc <= now
        and now + RENEW_BEFORE < cert.not_valid_after_utc
    )


def ensure(cluster_dir: Path, cluster: str, now: dt.datetime | None = None) -> ClusterTls:
    """The cluster's TLS material under ``cluster_dir``: kept when it is there and good, made
    where it is missing (a new CA only when there is none), with owner-only private keys."""
    now = now or dt.datetime.now(dt.UTC)
    tls = ClusterTls.under(cluster_dir)
    tls.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls.directory, 0o700)
    kept = _load_ca(tls)
    if kept is None:
        ca_key, ca = _new_ca(cluster, now)
        _write(tls.ca_key, _key_pem(ca_key), 0o600)
        _write(tls.ca_cert, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        tls.keystore.unlink(missing_ok=True)
    else:
        ca_key, ca = kept
    if not _server_still_good(tls, ca, now):
        key, cert = _new_server(cluster, ca_key, ca, now)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca))
        _write(tls.keystore, _key_pem(key) + chain, 0o600)
    for private in (tls.ca_key, tls.keystore):
        with contextlib.suppress(OSError):
            os.chmod(private, 0o600)
    return tls


def broker_properties(tls: ClusterTls) -> dict[str, str]:
    """The ``server.properties`` of a node that serves TLS with ``tls``: PEM key store without
    any password (an unencrypted PKCS#8 key), PEM trust store holding the cluster's CA (the
    brokers check one another's certificate and host name as clients do), no client
    certificates (clients authenticate with SASL)."""
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": tls.keystore.as_posix(),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": tls.ca_cert.as_posix(),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
    }

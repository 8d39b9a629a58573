"""The local secure cluster's TLS material (``broker.tls``) and the secure node's listeners.

Sources of the reference values: RFC 5280 (4.2.1.6 subjectAltName: a client checks an IP
address against an iPAddress entry; 4.2.1.9 basicConstraints; 4.2.1.3 keyUsage; 4.2.1.12
extendedKeyUsage id-kp-serverAuth), RFC 6125 (the client checks the name it dialled), the
brokers' address 127.0.0.1 and name localhost (issue 10), Kafka 3.9's PEM stores (KIP-651:
``ssl.keystore.type=PEM`` holds a PKCS#8 key and the certificate chain, ``ssl.truststore.type=PEM``
the CA, no store password). The handshakes below are Python's own TLS client verifying the
material as every trialops client (kafka-python, aiokafka) does."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.cluster import LocalKafka
from broker.node import _node_properties
from broker.tls import ClusterTls, TlsError, ensure
from infra.kafka_security import PRINCIPALS, KafkaSecurityError, kafka_python_settings, load


def certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def handshake(material: ClusterTls, server_hostname: str, cafile: Path) -> None:
    """A TLS handshake between a server using the cluster's key store and a client that
    trusts ``cafile`` and checks ``server_hostname``; raises ssl.SSLError if refused."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(material.keystore)
    client_context = ssl.create_default_context(cafile=str(cafile))
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    client = client_context.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def material(tmp_path: Path) -> ClusterTls:
    return ensure(tmp_path / "cluster", "trial-a")  # now: the handshakes check the real clock


def test_the_server_certificate_names_the_loopback_address_and_localhost(material: ClusterTls):
    server = certificates(material.keystore)[0]
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_the_server_certificate_is_signed_by_the_clusters_own_ca(material: ClusterTls):
    (ca,) = certificates(material.ca_cert)
    server, chained_ca = certificates(material.keystore)
    assert chained_ca == ca  # the key store carries the chain up to the CA
    ca.verify_directly_issued_by(ca)  # self-signed: this cluster's CA, no one else's
    server.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True


def test_another_clusters_ca_did_not_sign_it(material: ClusterTls, tmp_path: Path):
    other = ensure(tmp_path / "other", "trial-a")  # same name elsewhere: another key
    with pytest.raises(InvalidSignature):
        certificates(material.keystore)[0].verify_directly_issued_by(certificates(other.ca_cert)[0])


def test_private_keys_are_readable_by_their_owner_only(material: ClusterTls):
    assert mode(material.directory) == 0o700
    assert mode(material.ca_key) == 0o600
    assert mode(material.keystore) == 0o600


def test_the_key_store_is_an_unencrypted_pkcs8_key_then_the_chain(material: ClusterTls):
    text = material.keystore.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, not "EC PRIVATE KEY"
    assert "ENCRYPTED" not in text
    assert text.count("-----BEGIN CERTIFICATE-----") == 2
    key = serialization.load_pem_private_key(text.encode(), password=None)
    assert key.public_key() == certificates(material.keystore)[0].public_key()


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_ca_accepts_the_broker_by_the_name_it_dialled(
    material: ClusterTls, hostname: str
):
    handshake(material, hostname, material.ca_cert)


def test_a_client_dialling_another_name_refuses_the_certificate(material: ClusterTls):
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(material, "10.0.0.7", material.ca_cert)


def test_a_client_trusting_another_ca_refuses_the_certificate(
    material: ClusterTls, tmp_path: Path
):
    for name in ("trial-a", "trial-b"):  # a CA of the same name elsewhere, or another one
        other = ensure(tmp_path / f"other-{name}", name)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(material, "127.0.0.1", other.ca_cert)


def test_a_restart_keeps_the_ca_and_the_server_certificate(material: ClusterTls, tmp_path: Path):
    before = {p: p.read_bytes() for p in (material.ca_cert, material.ca_key, material.keystore)}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    again = ensure(tmp_path / "cluster", "trial-a", now=later)
    assert again == material
    assert {p: p.read_bytes() for p in before} == before


def test_a_server_certificate_near_its_end_is_issued_anew_by_the_same_ca(
    material: ClusterTls, tmp_path: Path
):
    ca_before = material.ca_cert.read_bytes()
    old = certificates(material.keystore)[0]
    late = old.not_valid_after_utc - dt.timedelta(days=10)  # inside the renewal margin
    ensure(tmp_path / "cluster", "trial-a", now=late)
    new = certificates(material.keystore)[0]
    assert material.ca_cert.read_bytes() == ca_before  # clients keep trusting it
    assert new.serial_number != old.serial_number
    new.verify_directly_issued_by(certificates(material.ca_cert)[0])
    assert new.not_valid_after_utc > late + dt.timedelta(days=30)


def test_a_lost_server_key_store_is_issued_anew_and_a_lost_ca_is_not_guessed(
    material: ClusterTls, tmp_path: Path
):
    material.keystore.unlink()
    ensure(tmp_path / "cluster", "trial-a")
    certificates(material.keystore)[0].verify_directly_issued_by(certificates(material.ca_cert)[0])
    material.ca_key.write_text("not a key")
    with pytest.raises(TlsError, match="wipe the cluster"):
        ensure(tmp_path / "cluster", "trial-a")


def test_a_secure_node_serves_sasl_ssl_on_every_listener_with_pem_stores(material: ClusterTls):
    nodes = [{"node_id": 1, "port": 9092, "controller_port": 9093}]
    props = _node_properties(
        1, nodes, Path("data"), single=True, admin_password="secret", tls=material
    )
    lines = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    assert lines["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert lines["advertised.listeners"] == "SASL_SSL://127.0.0.1:9092"
    assert lines["inter.broker.listener.name"] == "SASL_SSL"
    assert lines["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL"
    assert lines["ssl.keystore.type"] == "PEM"
    assert lines["ssl.keystore.location"] == material.keystore.as_posix()
    assert lines["ssl.truststore.type"] == "PEM"
    assert lines["ssl.truststore.location"] == material.ca_cert.as_posix()
    assert lines["ssl.endpoint.identification.algorithm"] == "https"
    # A PEM store takes no store password, and an unencrypted key no key password.
    assert not {"ssl.keystore.password", "ssl.truststore.password", "ssl.key.password"} & set(
        lines
    )
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in lines
    with pytest.raises(ValueError, match="TLS"):
        _node_properties(1, nodes, Path("data"), single=True, admin_password="secret")


def test_new_secure_storage_writes_a_client_file_for_sasl_ssl_naming_the_ca(tmp_path: Path):
    kafka = LocalKafka(home=tmp_path, name="trial-a", secure=True, progress=lambda _m: None)
    kafka.cluster_dir.mkdir(parents=True)
    admin_password, material = kafka._security(None)
    assert material is not None and material.ca_cert.exists()
    security = load(kafka.client_config)
    assert security is not None
    assert security.security_protocol == "SASL_SSL"
    assert security.ssl_cafile == material.ca_cert.as_posix()
    assert set(security.credentials) == set(PRINCIPALS)
    assert security.credentials["admin"][1] == admin_password
    settings = kafka_python_settings("worker", kafka.client_config)
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["ssl_cafile"] == material.ca_cert.as_posix()
    assert settings["ssl_check_hostname"] is True


def test_storage_formatted_before_tls_keeps_its_passwords_and_moves_to_sasl_ssl(tmp_path: Path):
    kafka = LocalKafka(home=tmp_path, name="trial-a", progress=lambda _m: None)
    kafka.cluster_dir.mkdir(parents=True)
    old = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "ssl_cafile": None,
        "principals": {p: {"username": p, "password": f"pw-{p}"} for p in PRINCIPALS},
    }
    kafka.client_config.write_text(json.dumps(old))
    kafka.client_config.chmod(0o600)
    admin_password, material = kafka._security({"secure": True})
    assert admin_password == "pw-admin" and material is not None
    security = load(kafka.client_config)
    assert security is not None and security.security_protocol == "SASL_SSL"
    assert security.ssl_cafile == material.ca_cert.as_posix()
    assert security.credentials["enrollment"] == ("enrollment", "pw-enrollment")
    assert mode(kafka.client_config) == 0o600


def test_wiping_a_cluster_deletes_its_certificates(tmp_path: Path):
    kafka = LocalKafka(home=tmp_path, name="trial-a", progress=lambda _m: None)
    material = ensure(kafka.cluster_dir, "trial-a")
    deleted = [path for path, _size in kafka.wipe()]
    assert material.directory in deleted
    assert not material.directory.exists()


def test_a_plain_cluster_has_no_certificates(tmp_path: Path):
    kafka = LocalKafka(home=tmp_path, name="trial-a", progress=lambda _m: None)
    kafka.cluster_dir.mkdir(parents=True)
    assert kafka._security(None) == (None, None)
    assert not ClusterTls.under(kafka.cluster_dir).directory.exists()
    assert kafka.status()["ca_cert"] is None


def test_a_client_file_naming_a_missing_ca_is_refused_with_its_path(tmp_path: Path):
    kafka = LocalKafka(home=tmp_path, name="trial-a", secure=True, progress=lambda _m: None)
    kafka.cluster_dir.mkdir(parents=True)
    _admin_password, material = kafka._security(None)
    assert material is not None
    material.ca_cert.unlink()
    with pytest.raises(KafkaSecurityError, match=r"ssl_cafile .*ca\.pem is not a file"):
        load(kafka.client_config)

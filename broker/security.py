"""A secure local cluster's credentials and certificates: the SCRAM passwords of every principal
(the client file, ``TRIALOPS_KAFKA_CONFIG``) and the TLS material (``broker.tls``), made when
the storage is formatted and kept with it (decisions 23 and 35)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from broker.jars import BrokerError
from broker.node import SCRAM, SECURE_LISTENER
from broker.tls import ClusterTls, TlsError
from broker.tls import ensure as ensure_tls
from infra.kafka_security import ADMIN, PRINCIPALS, load, write_config


def cluster_security(
    cluster_dir: Path,
    name: str,
    client_config: Path,
    stored: dict[str, Any] | None,
    requested_secure: bool | None,
) -> tuple[str, ClusterTls] | tuple[None, None]:
    """The admin password and the TLS material of a secure cluster (``(None, None)``: a
    plain one). New secure storage gets new random passwords for every principal, written
    to ``client_config``; kept storage stays as it was formatted. The certificates are
    kept too (``broker.tls.ensure``); the client file always says SASL_SSL and names the
    cluster's CA, also when the storage was formatted before the brokers served TLS."""
    secure = bool(stored["secure"]) if stored is not None else bool(requested_secure)
    if stored is not None and requested_secure not in (None, secure):
        kind = "secure (SASL/SCRAM and ACLs)" if secure else "plain (no authentication)"
        raise BrokerError(
            f"broker '{name}' keeps the data of a {kind} cluster; start it as it was, "
            f"or delete its data with 'trialops broker wipe --name {name}'"
        )
    if not secure:
        return None, None
    try:
        tls = ensure_tls(cluster_dir, name)
    except (OSError, TlsError) as exc:
        raise BrokerError(f"broker '{name}': {exc}") from None
    cafile = tls.ca_cert.as_posix()
    if stored is None:
        write_config(
            client_config,
            {p: secrets.token_hex(24) for p in PRINCIPALS},
            security_protocol=SECURE_LISTENER,
            ssl_cafile=cafile,
        )
    try:
        security = load(client_config)
    except ValueError as exc:
        raise BrokerError(f"broker '{name}': {exc}") from None
    if security is None or ADMIN not in security.credentials:
        raise BrokerError(f"broker '{name}': no admin credentials in {client_config}")
    if security.security_protocol != SECURE_LISTENER or security.ssl_cafile != cafile:
        write_config(
            client_config,
            {user: password for user, (_, password) in security.credentials.items()},
            security_protocol=SECURE_LISTENER,
            sasl_mechanism=security.sasl_mechanism,
            ssl_cafile=cafile,
        )
    return security.credentials[ADMIN][1], tls


def scram_format_arguments(client_config: Path) -> list[str]:
    """The StorageTool arguments that give new storage every principal's SCRAM credentials."""
    security = load(client_config)
    assert security is not None
    arguments: list[str] = []
    for username, password in security.credentials.values():
        arguments += ["--add-scram", f'{SCRAM}=[name={username},password="{password}"]']
    return arguments

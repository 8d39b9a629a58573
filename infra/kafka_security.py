"""Kafka client security from one configuration: ``TRIALOPS_KAFKA_CONFIG``.

On a plain broker nothing is set and every client connects as before. On a secured broker
(``trialops broker start --secure``, or a deployment's own Kafka) ``TRIALOPS_KAFKA_CONFIG``
names a JSON file (readable by its owner only)::

    {
      "security_protocol": "SASL_SSL",            # or SASL_PLAINTEXT (no TLS)
      "sasl_mechanism": "SCRAM-SHA-512",
      "ssl_cafile": ".../tls/ca.pem",              # CA of the brokers' certificates (SASL_SSL);
                                                   # null: the system's CAs
      "principals": {
        "admin":      {"username": "admin",      "password": "..."},
        "enrollment": {"username": "enrollment", "password": "..."},
        "worker":     {"username": "worker",     "password": "..."},
        ...
      }
    }

Every client asks for the settings of the principal it acts as: ``kafka_python_settings``
for kafka-python (services, CLI, audit tools), ``faust_credentials`` for Faust (aiokafka).
Principals: ``admin`` (topics and ACLs), one writer per context named after the context
(``events.topics.WRITERS``), ``worker`` (the projections) and ``auditor`` (replay, verify,
audit). What each may do is ``topic_admin.namespace_acls``.
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events.topics import WRITERS
from infra.secrets_files import open_to_others

CONFIG_ENV = "TRIALOPS_KAFKA_CONFIG"
ADMIN = "admin"
WORKER = "worker"
AUDITOR = "auditor"
PRINCIPALS = (ADMIN, *WRITERS, WORKER, AUDITOR)
"""Every principal a secured broker knows."""
PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class KafkaSecurityError(ValueError):
    """The client security configuration is missing, unreadable or incomplete."""


@dataclass(frozen=True)
class KafkaSecurity:
    """A parsed client security configuration."""

    path: Path
    security_protocol: str
    sasl_mechanism: str
    credentials: dict[str, tuple[str, str]]
    """principal -> (username, password)"""
    ssl_cafile: str | None = None

    def credentials_of(self, principal: str) -> tuple[str, str]:
        try:
            return self.credentials[principal]
        except KeyError:
            raise KafkaSecurityError(
                f"{self.path}: no credentials for principal {principal!r} "
                f"(it has: {', '.join(sorted(self.credentials)) or 'none'})"
            ) from None


def config_path() -> Path | None:
    """The file ``TRIALOPS_KAFKA_CONFIG`` names, or None on a plain broker."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value).expanduser() if value else None


def parse(data: dict[str, Any], path: Path) -> KafkaSecurity:
    """Check and convert the JSON of a configuration file."""
    protocol = data.get("security_protocol")
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(
            f"{path}: security_protocol is {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        )
    mechanism = data.get("sasl_mechanism")
    if mechanism not in MECHANISMS:
        raise KafkaSecurityError(
            f"{path}: sasl_mechanism is {mechanism!r}; expected one of {', '.join(MECHANISMS)}"
        )
    cafile = data.get("ssl_cafile") or None
    if cafile is not None and not isinstance(cafile, str):
        raise KafkaSecurityError(f"{path}: ssl_cafile must be a path")
    if cafile is not None and not Path(cafile).expanduser().is_file():
        raise KafkaSecurityError(f"{path}: ssl_cafile {cafile} is not a file")
    principals = data.get("principals")
    if not isinstance(principals, dict) or not principals:
        raise KafkaSecurityError(f"{path}: 'principals' must map principal names to credentials")
    credentials = {}
    for name, entry in principals.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("username"), str)
            or not isinstance(entry.get("password"), str)
            or not entry["username"]
            or not entry["password"]
        ):
            raise KafkaSecurityError(
                f"{path}: principal {name!r} needs a non-empty username and password"
            )
        credentials[name] = (entry["username"], entry["password"])
    return KafkaSecurity(path, protocol, mechanism, credentials, cafile)


def load(path: Path | None = None) -> KafkaSecurity | None:
    """The configuration in ``path`` (default: ``TRIALOPS_KAFKA_CONFIG``); None when neither
    names a file (a plain broker). A file that others can read is refused: it holds
    passwords."""
    path = path if path is not None else config_path()
    if path is None:
        return None
    try:
        text = path.read_text()
        exposed = open_to_others(path)
    except OSError as exc:
        raise KafkaSecurityError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror}") from None
    if exposed:
        raise KafkaSecurityError(f"{CONFIG_ENV} holds Kafka passwords: {exposed}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KafkaSecurityError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise KafkaSecurityError(f"{path}: expected a JSON object")
    return parse(data, path)


def kafka_python_settings(principal: str, path: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for a kafka-python client (KafkaProducer, KafkaConsumer,
    KafkaAdminClient) acting as ``principal``; ``{}`` on a plain broker."""
    security = load(path)
    if security is None:
        return {}
    username, password = security.credentials_of(principal)
    settings: dict[str, Any] = {
        "security_protocol": security.security_protocol,
        "sasl_mechanism": security.sasl_mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    if security.ssl_cafile:
        settings["ssl_cafile"] = security.ssl_cafile
        settings["ssl_check_hostname"] = True
    return settings


def faust_credentials(principal: str, path: Path | None = None) -> Any:
    """``broker_credentials`` for a Faust app acting as ``principal`` (a
    ``faust.SASLCredentials``); None on a plain broker."""
    security = load(path)
    if security is None:
        return None
    from faust.auth import SASLCredentials  # Faust only where a Faust app is built

    username, password = security.credentials_of(principal)
    context = None
    if security.security_protocol == "SASL_SSL":
        context = ssl.create_default_context(cafile=security.ssl_cafile)
    return SASLCredentials(
        username=username,
        password=password,
        mechanism=security.sasl_mechanism,
        ssl_context=context,
    )


def write_config(
    path: Path,
    credentials: dict[str, str],
    *,
    security_protocol: str = "SASL_PLAINTEXT",
    sasl_mechanism: str = "SCRAM-SHA-512",
    ssl_cafile: str | None = None,
) -> None:
    """Write a configuration (mode 0600 from its creation) for ``credentials``: principal ->
    password, the username being the principal's name."""
    data = {
        "security_protocol": security_protocol,
        "sasl_mechanism": sasl_mechanism,
        "ssl_cafile": ssl_cafile,
        "principals": {
            name: {"username": name, "password": password}
            for name, password in credentials.items()
        },
    }
    parse(data, path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)

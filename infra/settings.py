"""Runtime settings from the environment: where Kafka is, which namespace, which trial."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from events.topics import DEFAULT_NAMESPACE


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    namespace: str = DEFAULT_NAMESPACE
    trial_id: str = "NCT06623396"
    replication_factor: int = 1
    keyring: str | None = field(default_factory=lambda: os.environ.get("TRIALOPS_KEYRING"))
    """The writers' public keys (events/signing.py): every reader needs it."""
    writer_keys: str | None = field(
        default_factory=lambda: os.environ.get("TRIALOPS_WRITER_KEYS")
    )
    """The folder of the writers' private keys: the services need it."""

    @classmethod
    def from_env(cls, **overrides: str | int | None) -> Settings:
        values: dict[str, Any] = {
            "bootstrap_servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "namespace": os.environ.get("TRIALOPS_NAMESPACE", DEFAULT_NAMESPACE),
            "trial_id": os.environ.get("TRIALOPS_TRIAL_ID", "NCT06623396"),
            "replication_factor": int(os.environ.get("TRIALOPS_REPLICATION_FACTOR", "1")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The same settings as environment variables, for child processes."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "TRIALOPS_NAMESPACE": self.namespace,
            "TRIALOPS_TRIAL_ID": self.trial_id,
            "TRIALOPS_REPLICATION_FACTOR": str(self.replication_factor),
            **({"TRIALOPS_KEYRING": self.keyring} if self.keyring else {}),
            **({"TRIALOPS_WRITER_KEYS": self.writer_keys} if self.writer_keys else {}),
        }

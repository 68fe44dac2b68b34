"""A broker secured like a managed Kafka service (TLS, mutual TLS, SASL SCRAM and PLAIN, an
authorizer that denies by default), and :func:`grant` to add the ACLs the tests need."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from broker.admin import admin_client
from broker.errors import BrokerError
from broker.node import KafkaBroker
from broker.node_config import prop_value
from broker.processes import HOST, free_port

__all__ = ["STANDARD_AUTHORIZER", "SecuredKafkaBroker", "grant"]

#: Kafka's KRaft authorizer.
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


class SecuredKafkaBroker(KafkaBroker):
    """A :class:`KafkaBroker` with TLS, SASL and ACLs, like a managed Kafka service.

    Listeners, all on 127.0.0.1:

    * ``PLAINTEXT`` (:attr:`bootstrap`): unauthenticated, and its ``ANONYMOUS`` principal is
      a super user. The tests' own admin and read-back path, and the inter-broker and
      controller traffic; what kafkalog is tested against are the two below.
    * ``SSL`` (:attr:`ssl_bootstrap`): TLS with client certificates required (mutual TLS);
      the principal is the certificate's subject, :attr:`Pki.client_principal`.
    * ``SASL_SSL`` (:attr:`sasl_bootstrap`): TLS plus SASL ``SCRAM-SHA-512`` (users created
      when the storage is formatted) or ``PLAIN`` (users in the listener's JAAS config). Each
      name in ``users`` exists for both mechanisms, with the same password.

    The standard authorizer denies whatever no ACL allows; use :func:`grant` (or
    :meth:`grant`) to allow a principal an operation on a topic.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        pki: Any,
        users: Mapping[str, str],
        **kwargs: Any,
    ) -> None:
        """``pki`` is a :class:`tls.Pki` (certificates); ``users`` maps names to passwords."""
        super().__init__(work_dir, **kwargs)
        self.pki = pki
        self.users = dict(users)
        for name, password in self.users.items():
            # Both are pasted into a JAAS line and a --add-scram argument unquoted.
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name + password):
                raise ValueError(f"user {name!r}: use letters, digits, '_', '.', '-' only")
        self.ssl_port = free_port()
        self.sasl_port = free_port()

    @property
    def ssl_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the SSL (mutual TLS) listener."""
        return f"{HOST}:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the SASL_SSL listener."""
        return f"{HOST}:{self.sasl_port}"

    def broker_properties(self) -> dict[str, str]:
        """The plain node's properties plus the secured listeners and the authorizer."""
        # Here, not at the top: tls.py needs the cryptography package, which environments
        # that only run plain brokers (tox's bench) lack, and broker.kraft imports this module.
        from broker.tls import pem_property  # noqa: PLC0415

        props: dict[str, object] = dict(super().broker_properties())
        extra = f"SSL://{self.ssl_bootstrap},SASL_SSL://{self.sasl_bootstrap}"
        props["listeners"] = f"{props['listeners']},{extra}"
        props["advertised.listeners"] = f"{props['advertised.listeners']},{extra}"
        props["listener.security.protocol.map"] = (
            f"{props['listener.security.protocol.map']},SSL:SSL,SASL_SSL:SASL_SSL"
        )
        plain_users = " ".join(f'user_{n}="{p}"' for n, p in self.users.items())
        props.update(
            {
                # PEM values inline: no Java keystores to build.
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": pem_property(self.pki.broker_cert),
                "ssl.keystore.key": pem_property(self.pki.broker_key),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.certificates": pem_property(self.pki.ca_cert),
                "listener.name.ssl.ssl.client.auth": "required",
                "listener.name.sasl_ssl.ssl.client.auth": "none",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    f"{_SCRAM_MODULE} required;"
                ),
                "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                    f"{_PLAIN_MODULE} required {plain_users};"
                ),
                "authorizer.class.name": STANDARD_AUTHORIZER,
                "super.users": "User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": False,
            }
        )
        props.update(self.extra_config)
        return {k: prop_value(v) for k, v in props.items()}

    def _format_options(self) -> list[str]:
        # SCRAM credentials live in the cluster metadata; KRaft can seed them at format time.
        options = super()._format_options()
        for name, password in self.users.items():
            options += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return options

    def grant(self, principal: str, topic: str, operation: str = "WRITE",
              *, prefixed: bool = False) -> None:
        """Allow ``principal`` (``"User:NAME"``) ``operation`` on ``topic``; see :func:`grant`."""
        grant(self.bootstrap, principal, topic, operation, prefixed=prefixed)


def grant(
    bootstrap: str,
    principal: str,
    topic: str,
    operation: str = "WRITE",
    *,
    prefixed: bool = False,
    timeout: float = 30.0,
) -> None:
    """Add an ALLOW ACL for ``principal`` to do ``operation`` on ``topic`` (or topics
    starting with it, if ``prefixed``), through a super user's ``bootstrap``.

    The broker applies ACLs asynchronously, from the metadata log; the caller waits for
    the effect it needs (for example records arriving).
    """
    pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
    acl = ACL(
        principal=principal,
        host="*",
        operation=ACLOperation[operation.upper()],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, topic, pattern),
    )
    admin = admin_client(bootstrap, timeout)
    try:
        result = admin.create_acls([acl])
    finally:
        admin.close()
    if result.get("failed"):
        raise BrokerError(f"could not create ACL {acl}: {result['failed']}")

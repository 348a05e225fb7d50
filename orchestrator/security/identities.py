"""``--auth mtls``: the tenant of a call is the identity of its client certificate, mapped by a file.

With mutual TLS the TLS layer has already proved who the client is (a certificate from the
``--tls-client-ca``); a second secret in the metadata adds nothing. The map names identities as the
certificate carries them: a subject alternative name (DNS, URI, e-mail) or the subject's common
name. An identity not in the map gets UNAUTHENTICATED: a valid certificate alone grants no tenant.

    clients:
      - identity: client.acme.example     # a SAN or the CN of the client certificate
        tenant: acme
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import yaml

from orchestrator.security.tenant import valid_tenant
from orchestrator.security.verifiers import TENANT_RULE, AuthConfigError, AuthenticationFailed


@dataclass(frozen=True)
class CertificateTenants:
    tenants: dict[str, str]  # certificate identity -> tenant

    @classmethod
    def from_file(cls, path: Path) -> CertificateTenants:
        try:
            body = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise AuthConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise AuthConfigError(f"{path} is neither YAML nor JSON: {exc}") from exc
        entries = body.get("clients") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise AuthConfigError(f'{path}: expected {{"clients": [{{"identity": SAN-or-CN, "tenant": NAME}}]}}')
        tenants: dict[str, str] = {}
        for index, entry in enumerate(entries):
            identity = entry.get("identity") if isinstance(entry, dict) else None
            tenant = valid_tenant(entry.get("tenant") if isinstance(entry, dict) else None)
            if not isinstance(identity, str) or not identity or tenant is None:
                raise AuthConfigError(f"{path}: clients[{index}] needs an identity and {TENANT_RULE}")
            if tenants.get(identity, tenant) != tenant:
                raise AuthConfigError(f"{path}: identity {identity!r} is mapped to two tenants")
            tenants[identity] = tenant
        return cls(tenants)

    def tenant_for(self, context: grpc.aio.ServicerContext) -> str:
        auth = context.auth_context()
        names = [*auth.get("x509_subject_alternative_name", []), *auth.get("x509_common_name", [])]
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name in self.tenants:
                return self.tenants[name]
        if not names:
            raise AuthenticationFailed("no client certificate: connect with mutual TLS and a certificate of ours")
        raise AuthenticationFailed("the client certificate's identity is not mapped to a tenant on this server")

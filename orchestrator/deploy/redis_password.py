"""Creates the bundled Redis's password Secret once, if it does not exist: the chart's pre-install and
pre-upgrade hook Job runs ``python -m orchestrator.deploy.redis_password``.

Why a Job and not the template: a template can only make a random password at render time, and keep it
across upgrades by reading the live Secret back with ``lookup``. ``helm template`` and GitOps tools
(Argo CD renders with it) have no cluster to look up, so every render made a new password: a diff on
every sync, and a Redis whose password changes under running orchestrators. Generated here instead,
the password exists only in the cluster, every render of the chart is the same, and an existing Secret
(whatever made it) is never changed. The chart does not own the Secret, so ``helm uninstall`` leaves it,
like the Redis volume whose data it protects.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

from kubernetes.client.exceptions import ApiException

PASSWORD_BYTES = 24  # 48 hex characters: URL-safe, so it never needs escaping in a redis:// URL or a shell


class SecretError(RuntimeError):
    """The Secret exists but cannot be used; the message says what to do."""


def ensure_secret(core_api: Any, namespace: str, name: str, key: str, labels: dict[str, str], timeout: float) -> str:
    """``created`` or ``kept``; raises ``SecretError`` for a Secret without the key."""
    try:
        existing = core_api.read_namespaced_secret(name, namespace, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status != 404:
            raise
    else:
        if key not in (existing.data or {}):
            raise SecretError(
                f"Secret {namespace}/{name} exists without the key {key!r}: add it "
                f"(kubectl -n {namespace} edit secret {name}) or delete the Secret so that it is created again"
            )
        return "kept"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "stringData": {key: secrets.token_hex(PASSWORD_BYTES)},
    }
    try:
        core_api.create_namespaced_secret(namespace, body, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 409:  # another run created it between our read and our create: theirs stands
            return "kept"
        raise
    return "created"


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--label needs KEY=VALUE, got {pair!r}")
        labels[key] = value
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="create the Redis password Secret if it does not exist")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--key", default="redis-password")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--timeout-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    from kubernetes import client, config

    from orchestrator.autoscaler.kube import bounded_api_client

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    core = client.CoreV1Api(bounded_api_client())
    try:
        result = ensure_secret(core, args.namespace, args.name, args.key, _labels(args.label), args.timeout_seconds)
    except (SecretError, ApiException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Secret {args.namespace}/{args.name}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Server TLS for the gRPC port from PEM files that can be replaced on disk without a restart.

gRPC asks ``fetch`` for a new certificate configuration on every new handshake; it re-reads the
files only when their modification time or size changed (a Kubernetes secret update, cert-manager's
renewal), so steady state costs one ``stat`` per connection. Connections already open keep their
certificate; new ones get the new one. A half-written or mismatched pair is logged and the previous
configuration stays in use, so a rotation mid-write never takes the port down.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """The TLS files are missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM paths: the server's chain and key, and (for mutual TLS) the CA client certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS file {path}: {exc.strerror}") from exc
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"TLS file {path} is not PEM (no -----BEGIN line)")
    return data


class ReloadingCertificates:
    """Holds the current certificate configuration and swaps it when the files change."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()  # gRPC calls fetch from its own threads
        self._stamp = self._stat()
        self.current = self._load()
        self.reloads = 0

    def _stat(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self.files.paths:
            try:
                status = path.stat()
            except OSError as exc:
                raise TlsConfigError(f"cannot read TLS file {path}: {exc.strerror}") from exc
            stamps.append((status.st_mtime_ns, status.st_size))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        pair = (_read(self.files.key), _read(self.files.cert))
        root = _read(self.files.client_ca) if self.files.client_ca is not None else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=root)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: a new configuration when the files changed, None to keep the current one."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return None
                config = self._load()
            except TlsConfigError as exc:
                logger.warning("TLS files changed but cannot be loaded (%s); keeping the previous certificate", exc)
                return None
            self._stamp, self.current = stamp, config
            self.reloads += 1
            logger.info("TLS certificate reloaded from %s", self.files.cert)
            return config


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS (mutual when ``client_ca`` is set: a client without a certificate from that CA is refused)."""
    certificates = ReloadingCertificates(files)
    return grpc.dynamic_ssl_server_credentials(
        certificates.current, certificates.fetch, require_client_authentication=files.client_ca is not None
    )

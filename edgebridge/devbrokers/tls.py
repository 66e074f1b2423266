"""Throwaway certificates for the TLS modes of the local brokers, made with the openssl CLI.

A development CA signs a server certificate for 127.0.0.1/localhost and, on request, client
certificates whose CN is the device id (Mosquitto can take it as the username). Never for production.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebridge.devbrokers._process import require_tool

__all__ = ["CertPair", "ServerCerts", "ca_cert_path", "ensure_certs", "ensure_client_cert"]

_DAYS = "825"


@dataclass(frozen=True)
class ServerCerts:
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def ca_cert_path(folder: Path) -> Path:
    return folder / "ca.crt"


def _openssl(*args: str) -> None:
    subprocess.run([require_tool("openssl", "openssl"), *args], check=True, capture_output=True)


def _ensure_ca(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", ca_cert_path(folder)
    if not ca_cert.exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS, "-subj",
                 "/CN=edgebridge-dev-ca", "-keyout", str(ca_key), "-out", str(ca_cert))
    return ca_key, ca_cert


def _signed(folder: Path, name: str, subject: str, extensions: str) -> CertPair:
    ca_key, ca_cert = _ensure_ca(folder)
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    if not cert.exists():
        ext = folder / f"{name}.ext"
        ext.write_text(extensions)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key),
                 "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", _DAYS, "-extfile", str(ext), "-out", str(cert))
    return CertPair(cert, key)


def ensure_certs(folder: Path) -> ServerCerts:
    """The CA and the server certificate in ``folder``, created on first use."""
    pair = _signed(folder, "server", "/CN=localhost",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    return ServerCerts(ca_cert_path(folder), pair.cert, pair.key)


def ensure_client_cert(folder: Path, common_name: str) -> CertPair:
    """A client certificate with CN = ``common_name`` (a device id), signed by the same CA."""
    return _signed(folder, f"client-{common_name}", f"/CN={common_name}",
                   "extendedKeyUsage=clientAuth\n")

"""The deployment's CA and certificates, judged by real TLS handshakes (Python's ssl is OpenSSL)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from edgebridge.deploy.pki import Issued, issue, make_ca


def _files(tmp_path: Path, name: str, issued: Issued) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    return str(cert), str(key)


def _handshake(tmp_path: Path, server: Issued, trusted_ca: Issued, hostname: str,
               client: Issued | None = None) -> str:
    """Serve ``server`` on 127.0.0.1; connect trusting ``trusted_ca`` and checking ``hostname``; when
    ``client`` is given the server requires a client certificate from the same CA. Returns the peer CN
    the server saw (or "" without a client certificate)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*_files(tmp_path, "server", server))
    if client is not None:
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(cafile=_files(tmp_path, "ca-of-server", trusted_ca)[0])
    client_ctx = ssl.create_default_context(cafile=_files(tmp_path, "ca", trusted_ca)[0])
    if client is not None:
        client_ctx.load_cert_chain(*_files(tmp_path, "client", client))
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert() or {}
                seen.extend(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName")
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    finally:
        thread.join(5)
        listener.close()
    return seen[0] if seen else ""


def test_a_server_certificate_is_trusted_for_its_names_and_addresses(tmp_path: Path) -> None:
    ca = make_ca("edgebridge test CA")
    server = issue(ca, "mosquitto", ["mosquitto", "localhost", "127.0.0.1"])
    for name in ("mosquitto", "localhost", "127.0.0.1"):
        _handshake(tmp_path, server, ca, name)


def test_a_name_outside_the_certificate_is_refused(tmp_path: Path) -> None:
    ca = make_ca("edgebridge test CA")
    server = issue(ca, "mosquitto", ["mosquitto"])
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        _handshake(tmp_path, server, ca, "kafka")


def test_another_cas_certificate_is_refused(tmp_path: Path) -> None:
    ours, theirs = make_ca("ours"), make_ca("theirs")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self-signed|unable to get local issuer"):
        _handshake(tmp_path, issue(theirs, "kafka", ["localhost"]), ours, "localhost")


def test_a_client_certificate_authenticates_its_common_name(tmp_path: Path) -> None:
    ca = make_ca("edgebridge test CA")
    seen = _handshake(tmp_path, issue(ca, "kafka", ["localhost"]), ca, "localhost",
                      client=issue(ca, "sensor-7", client=True))
    assert seen == "sensor-7"

"""MqttLink in the agent loop's thread, against a scripted MQTT 5 peer: which PUBACKs count as acks
(paho's path and the fast path must agree); the link's URL in its logs."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from edge_agent.config import ForwarderConfig
from edge_agent.mqtt_link import MqttLink
from edge_agent.waker import Waker
from edgebridge.settings import MqttSettings


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("peer closed")
            data += chunk
        return data

    kind = exactly(1)[0]
    size, shift = 0, 0
    while True:
        byte = exactly(1)[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind, exactly(size)


def _peer(server: socket.socket, pubacks: list[bytes], seen: list[int]) -> None:
    """Accept one client: CONNACK, SUBACK, PUBACK 0 for the status message, then the scripted
    PUBACK tails (reason code, properties) for the next publishes, in order."""
    conn, _ = server.accept()
    with conn:
        script = iter(pubacks)
        status_acked = False
        while True:
            try:
                kind, body = _read_packet(conn)
            except (ConnectionError, OSError):
                return
            if kind == 0x10:  # CONNECT
                conn.sendall(b"\x20\x03\x00\x00\x00")
            elif kind == 0x82:  # SUBSCRIBE
                conn.sendall(b"\x90\x04" + body[:2] + b"\x00\x01")
            elif kind & 0xF0 == 0x30:  # PUBLISH, QoS 1
                pid = body[2 + int.from_bytes(body[:2], "big") :][:2]
                seen.append(int.from_bytes(pid, "big"))
                tail = b"" if not status_acked else next(script)
                status_acked = True
                conn.sendall(bytes((0x40, 2 + len(tail))) + pid + tail)
            elif kind == 0xE0:  # DISCONNECT
                return


def test_pubacks_success_reasons_ack_and_failures_refuse() -> None:
    # 0x00 short form, 0x00, 0x10 No matching subscribers, 0x00 with empty properties: acks (fast path);
    # 0x00 with a reason string property, 0x87 Not authorized: paho's own path; 0x87 must be refused.
    tails = [b"", b"\x00", b"\x10", b"\x00\x00", b"\x00\x04\x1f\x00\x01x", b"\x87"]
    expected = [True, True, True, True, True, False]
    with socket.create_server(("127.0.0.1", 0)) as server:
        seen: list[int] = []
        peer = threading.Thread(target=_peer, args=(server, tails, seen), daemon=True)
        peer.start()
        waker = Waker()
        link = MqttLink(
            MqttSettings(url=f"mqtt://127.0.0.1:{server.getsockname()[1]}"),
            ForwarderConfig(),
            "dev-link",
            status_topic="t/dev-link/status",
            online=lambda: b"online",
            offline=b"offline",
            subscribe=["t/dev-link/commands"],
            receipts_topic=None,
            wake=waker,
        )
        link.start()
        try:
            deadline = time.monotonic() + 10
            while link.current is None and time.monotonic() < deadline:
                link.poll(0.05)
            assert link.current is not None
            mids = []
            for i in range(len(tails)):
                sent = link.publish("t/dev-link/events", b"%d" % i, user=[("seq", str(i))])
                assert sent is not None
                mids.append(sent[1])
            deadline = time.monotonic() + 10
            while len([a for a in link.acks if a[1] in mids]) < len(tails) and time.monotonic() < deadline:
                link.poll(0.05)
            acks = {mid: ok for _, mid, ok in link.acks}
            assert [acks.get(mid) for mid in mids] == expected
            assert len(seen) == 1 + len(tails)  # the status message, then ours, once each
        finally:
            link.stop()
            peer.join(5)
            waker.close()
        assert link.stats.connects == 1 and link.stats.disconnects == 1


def test_a_password_in_the_url_never_reaches_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link logs its URL when a connect fails; the settings took the password out of it."""
    from edgebridge import logs

    # a limiter of its own: another test's failed connect in the last 30 s must not mute this one
    monkeypatch.setattr(logs, "_shared_limiter", logs._Limiter(time.monotonic, max_keys=4096))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    waker = Waker()  # the port is closed now: every connect is refused
    link = MqttLink(MqttSettings(url=f"mqtt://alice:hunter2@127.0.0.1:{port}"), ForwarderConfig(),
                    "dev-secret", status_topic="t/s", online=lambda: b"online", offline=b"offline",
                    subscribe=[], receipts_topic=None, wake=waker)
    with caplog.at_level(logging.DEBUG):
        link.start()
        try:
            deadline = time.monotonic() + 10
            while link.stats.connect_failures == 0 and time.monotonic() < deadline:
                link.poll(0.05)
        finally:
            link.stop()
            waker.close()
    assert link.stats.connect_failures >= 1
    logged = [r for r in caplog.records if getattr(r, "url", None)]
    assert logged and all(r.url == f"mqtt://127.0.0.1:{port}" for r in logged)  # type: ignore[attr-defined]
    assert not any("hunter2" in str(vars(r)) for r in caplog.records)


def test_a_connect_whose_connect_packet_could_not_be_written_is_a_connect_failure() -> None:
    """paho closes the socket and returns an error code, without raising, when writing CONNECT fails
    right after the TCP connect (ECONNRESET, EPIPE): the link counts a failed connect and backs off,
    instead of ending the agent's loop with an error."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        waker = Waker()
        link = MqttLink(MqttSettings(url=f"mqtt://127.0.0.1:{server.getsockname()[1]}"), ForwarderConfig(),
                        "dev-reset", status_topic="t/s", online=lambda: b"online", offline=b"offline",
                        subscribe=[], receipts_topic=None, wake=waker)
        make = link._new_client

        def failing_client():  # type: ignore[no-untyped-def]
            client = make()
            connect = client.connect

            def connect_then_lose(*args, **kwargs):  # type: ignore[no-untyped-def]
                rc = connect(*args, **kwargs)
                client._sock_close()  # as paho does when the CONNECT write fails
                return rc

            client.connect = connect_then_lose  # type: ignore[method-assign]
            return client

        link._new_client = failing_client  # type: ignore[method-assign]
        link.start()
        try:
            deadline = time.monotonic() + 10
            while link.stats.connect_failures == 0 and time.monotonic() < deadline:
                link.poll(0.05)
        finally:
            link.stop()
            waker.close()
    assert link.stats.connect_failures >= 1

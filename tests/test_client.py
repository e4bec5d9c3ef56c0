"""`predict_with_retry` against a real HTTP server on loopback that cuts or refuses connections,
called through BentoML's own `SyncHTTPClient` (real httpx, real sockets; no service needed)."""

from __future__ import annotations

import json
import socket
import struct
import threading

import bentoml
import httpx
import pandas as pd
import pytest

from fraud_detection.client import predict_with_retry
from fraud_detection.client import score_frame
from fraud_detection.schema import FEATURE_NAMES

#: Just enough of the service's ``/schema.json`` for the client to build ``predict``.
SCHEMA = {
    "routes": [
        {
            "name": "predict",
            "route": "/predict",
            "input": {
                "type": "object",
                "properties": {"transactions": {"type": "array", "items": {"type": "object"}}},
                "required": ["transactions"],
            },
            "output": {"type": "array", "items": {"type": "object"}},
        }
    ]
}


class CuttingServer:
    """HTTP/1.1 on 127.0.0.1, one request per connection (``Connection: close``).

    The first `cuts` ``POST /predict`` requests are read whole, then their connection is closed
    unanswered (``how="close"``, what a dying process's kernel does) or reset (``how="reset"``);
    later ones are scored 0.5. ``/readyz`` and ``/schema.json`` are answered for the client.
    """

    def __init__(self, cuts: int = 0, how: str = "close") -> None:
        self.cuts, self.how = cuts, how
        self.predict_requests = 0
        self.lock = threading.Lock()
        self.port = 0
        self.listener = self._listen()
        self.url = f"http://127.0.0.1:{self.port}"

    def _listen(self) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        listener.listen(16)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def stop_listening(self) -> None:
        """Close the listening socket: connections are refused until `listen_again`."""
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def listen_again(self) -> None:
        self.listener = self._listen()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed by stop_listening
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head, body = self._read_request(conn)
            method, path = head.split(b" ")[:2]
            if path == b"/predict" and method == b"POST":
                with self.lock:
                    self.predict_requests += 1
                    cut = self.predict_requests <= self.cuts
                if cut:
                    if self.how == "reset":  # a zero linger time makes close() send RST
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    return
                rows = json.loads(body)["transactions"]
                answer = [
                    {
                        "transaction_id": row.get("transaction_id", "assigned"),
                        "fraud_probability": 0.5,
                    }
                    for row in rows
                ]
                self._respond(conn, 200, json.dumps(answer).encode())
            elif path == b"/schema.json":
                self._respond(conn, 200, json.dumps(SCHEMA).encode())
            else:
                self._respond(conn, 200, b"\n")

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        return head, body

    @staticmethod
    def _respond(conn: socket.socket, status: int, body: bytes) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )


@pytest.fixture
def rows() -> list[dict[str, object]]:
    return [{**dict.fromkeys(FEATURE_NAMES, 0.0), "transaction_id": f"tx-{i}"} for i in range(3)]


def client_of(server: CuttingServer) -> bentoml.SyncHTTPClient:
    return bentoml.SyncHTTPClient(server.url, server_ready_timeout=10)


@pytest.mark.parametrize(
    ("how", "error"), [("close", httpx.RemoteProtocolError), ("reset", httpx.ReadError)]
)
def test_a_cut_connection_is_what_the_client_really_raises(how: str, error: type) -> None:
    server = CuttingServer(cuts=1, how=how)
    with client_of(server) as client, pytest.raises(error):
        client.predict(transactions=[dict.fromkeys(FEATURE_NAMES, 0.0)])


@pytest.mark.parametrize("how", ["close", "reset"])
def test_cut_connections_are_retried_when_every_row_has_an_id(
    how: str, rows: list[dict[str, object]]
) -> None:
    server = CuttingServer(cuts=2, how=how)
    waits: list[float] = []
    with client_of(server) as client:
        answers = predict_with_retry(client, rows, sleep=waits.append)
    assert [a["transaction_id"] for a in answers] == ["tx-0", "tx-1", "tx-2"]
    assert server.predict_requests == 3, "two cut, the third answered"
    assert len(waits) == 2 and 0.2 <= waits[0] <= 0.4 and 0.4 <= waits[1] <= 0.8


def test_a_cut_connection_raises_when_a_row_has_no_id(rows: list[dict[str, object]]) -> None:
    server = CuttingServer(cuts=1)
    anonymous = [*rows[:2], {k: v for k, v in rows[2].items() if k != "transaction_id"}]
    with client_of(server) as client, pytest.raises(httpx.RemoteProtocolError):
        predict_with_retry(client, anonymous, sleep=lambda _: None)
    assert server.predict_requests == 1, "not sent again: the service would log new ids"


def test_a_refused_connection_is_retried_even_without_ids() -> None:
    server = CuttingServer()
    waits: list[float] = []

    def wait_then_listen(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            server.listen_again()

    with client_of(server) as client:
        server.stop_listening()
        answers = predict_with_retry(
            client, [dict.fromkeys(FEATURE_NAMES, 0.0)], sleep=wait_then_listen
        )
    assert answers == [{"transaction_id": "assigned", "fraud_probability": 0.5}]
    assert len(waits) == 2 and server.predict_requests == 1, "refused twice, then sent once"


def test_the_last_failure_raises_after_the_retries(rows: list[dict[str, object]]) -> None:
    server = CuttingServer(cuts=10)
    waits: list[float] = []
    with client_of(server) as client, pytest.raises(httpx.RemoteProtocolError):
        predict_with_retry(client, rows, retries=2, sleep=waits.append)
    assert server.predict_requests == 3 and len(waits) == 2


def test_score_frame_retries_cut_chunks_only_with_a_transaction_id_column() -> None:
    frame = pd.DataFrame([dict.fromkeys(FEATURE_NAMES, 0.0)] * 4)
    server = CuttingServer(cuts=1)
    with client_of(server) as client, pytest.raises(httpx.RemoteProtocolError):
        score_frame(client, frame, chunk_size=2)
    server = CuttingServer(cuts=1)
    with_ids = frame.assign(transaction_id=[f"id-{i}" for i in range(4)])
    with client_of(server) as client:
        scored = score_frame(client, with_ids, chunk_size=2)
    assert scored["transaction_id"].tolist() == ["id-0", "id-1", "id-2", "id-3"]
    assert server.predict_requests == 3, "the first chunk cut once, then both answered"

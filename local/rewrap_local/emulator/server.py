"""The HTTP/1.1 server on loopback: keep-alive, chunked bodies, the gateway's body limit, and replies that
carry ``x-ncp-request-id`` and the emulator's ``Date``. Request lines, headers and bodies are never logged."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rewrap.ncp.reply_errors import REQUEST_ID_HEADERS

from .errors import BAD_REQUEST, TOO_LARGE, UNEXPECTED
from .stats import EmulatorStats

# The emulator's cap on a request body (413, gateway code 430, above it); NCP documents the code, not the size.
MAX_BODY_BYTES = 16 * 1024 * 1024
Answerer = Callable[["Handler", str, bytes], None]  # (handler, method, body): replies through the handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], answer: Answerer, stats: EmulatorStats, clock: Callable[[], float]
    ) -> None:
        self.answer = answer
        self.stats = stats
        self.clock = clock  # the Date header's clock (Unix seconds)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.stats._connection()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Hang up idle keep-alive connections so a stopped emulator really stops answering."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-reply are expected; never print request data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ncp-kms-emulator"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines and headers are never logged

    def date_time_string(self, timestamp: float | None = None) -> str:
        return super().date_time_string(self.server.clock() if timestamp is None else timestamp)

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            self.server.answer(self, self.command, body)
        except Exception:  # noqa: BLE001 (a bug must not kill the connection silently)
            if not self._replied:
                self.reply_json(500, UNEXPECTED)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    _replied = False

    def _read_body(self) -> bytes | None:
        self._replied = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.reply_json(400, BAD_REQUEST, close=True)
            return None
        if length > MAX_BODY_BYTES:
            self.reply_json(413, TOO_LARGE, close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.reply_json(400, BAD_REQUEST, close=True)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                self.reply_json(413, TOO_LARGE, close=True)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self._replied = True
        self.server.stats._status(status)
        try:
            self.send_response(status)
            self.send_header(REQUEST_ID_HEADERS[0], str(uuid.uuid4()))  # x-ncp-request-id
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client is gone (e.g. its read timeout fired)

    def reply_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.reply(status, body, "application/json;charset=UTF-8", headers, close)

    def reset(self) -> None:
        """Abort the connection with a TCP reset and no response."""
        self._replied = True
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

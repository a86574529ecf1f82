"""An HTTP proxy in front of an emulator that fails chosen requests: fault injection for the tests.

LocalStack's ``KINESIS_ERROR_PROBABILITY`` only affects PutRecord(s), and nothing in either
emulator makes S3 fail, so the read and write paths' fault tests put this proxy between the
job and the emulator. Each ``Fault`` picks requests (a Kinesis operation, or an S3 method) and
answers a share of them with the error real AWS sends, instead of forwarding them.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer", "expect"}


@dataclass
class Fault:
    """Answer ``probability`` of the matching requests with ``status`` and ``body``."""

    name: str
    kinesis_operation: str | None = None  # e.g. "GetRecords" (from the X-Amz-Target header)
    s3_method: str | None = None  # e.g. "PUT"
    probability: float = 1.0
    status: int = 400
    body: bytes = b""
    content_type: str = "application/x-amz-json-1.1"

    def matches(self, method: str, headers) -> bool:
        target = headers.get("X-Amz-Target", "")
        if self.kinesis_operation:
            return target.endswith(f".{self.kinesis_operation}")
        return not target.startswith("Kinesis") and method == self.s3_method


def kinesis_throttling(operation: str, probability: float) -> Fault:
    body = b'{"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for shard"}'
    return Fault(f"{operation} throttled", kinesis_operation=operation, probability=probability, body=body)


def s3_unavailable(method: str, probability: float = 1.0) -> Fault:
    body = b"<Error><Code>ServiceUnavailable</Code><Message>injected by the fault proxy</Message></Error>"
    return Fault(f"S3 {method} 503", s3_method=method, probability=probability, status=503, body=body,
                 content_type="application/xml")  # fmt: skip


class FaultProxy:
    """``endpoint`` forwards to ``upstream`` except where an active fault answers instead."""

    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.injected: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault_for(self, method: str, headers) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, headers) and self._random.random() < fault.probability:
                    self.injected[fault.name] += 1
                    return fault
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and (name.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(name, value)  # HEAD: the length of the body a GET would return
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._body()
        fault = proxy._fault_for(self.command, self.headers)
        if fault:
            self._respond(fault.status, [("Content-Type", fault.content_type)], fault.body)
            return
        connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            self._respond(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

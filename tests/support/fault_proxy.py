"""An HTTP proxy in front of an emulator that fails chosen requests: fault injection for the tests.

LocalStack's ``KINESIS_ERROR_PROBABILITY`` only affects PutRecord(s), and nothing in either
emulator makes S3 fail, so the read and write paths' fault tests put this proxy between the
job and the emulator. Each ``Fault`` picks requests (a Kinesis operation, or an S3 method) and
answers a share of them with the error real AWS sends, instead of forwarding them. A
``TrimmedShard`` makes a shard look as if retention had removed its oldest records.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer", "expect"}


@dataclass
class Fault:
    """Answer ``probability`` of the matching requests with ``status`` and ``body``."""

    name: str
    kinesis_operation: str | None = None  # e.g. "GetRecords" (from the X-Amz-Target header)
    s3_method: str | None = None  # e.g. "PUT"
    s3_path: str = ""  # only requests whose path holds this, e.g. "/_delta_log/"
    probability: float = 1.0
    status: int = 400
    body: bytes = b""
    content_type: str = "application/x-amz-json-1.1"
    spares_fresh_iterators: bool = False  # GetRecords: only iterators from earlier GetRecords calls

    def matches(self, method: str, path: str, headers) -> bool:
        target = headers.get("X-Amz-Target", "")
        if self.kinesis_operation:
            return target.endswith(f".{self.kinesis_operation}")
        return not target.startswith("Kinesis") and method == self.s3_method and self.s3_path in path


def kinesis_throttling(operation: str, probability: float) -> Fault:
    body = b'{"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for shard"}'
    return Fault(f"{operation} throttled", kinesis_operation=operation, probability=probability, body=body)


def s3_unavailable(method: str, probability: float = 1.0, path: str = "") -> Fault:
    body = b"<Error><Code>ServiceUnavailable</Code><Message>injected by the fault proxy</Message></Error>"
    return Fault(f"S3 {method}{f' {path}' if path else ''} 503", s3_method=method, s3_path=path,
                 probability=probability, status=503, body=body, content_type="application/xml")  # fmt: skip


def kinesis_iterator_expired(probability: float) -> Fault:
    """GetRecords on a continuation iterator answered as if the reader had paused past its 5 minutes.

    Only iterators handed out by GetRecords (``NextShardIterator``) expire, never one fresh from
    GetShardIterator: as on AWS, where an iterator expires by age, not by use.
    """
    body = b'{"__type": "ExpiredIteratorException", "message": "Iterator expired (injected by the fault proxy)"}'
    return Fault("GetRecords iterator expired", kinesis_operation="GetRecords", probability=probability, body=body,
                 spares_fresh_iterators=True)  # fmt: skip


@dataclass
class TrimmedShard:
    """Make a shard look trimmed by retention up to (not including) ``first_kept``.

    GetShardIterator at TRIM_HORIZON, or at/after a trimmed sequence number, starts at
    ``first_kept`` instead; with ``refuse``, one naming a trimmed number is answered with the
    InvalidArgumentException AWS may send for it instead. (Emulators never trim: their shortest
    retention is 24 hours.)
    """

    shard_id: str
    first_kept: str
    refuse: bool = False

    def rewrite(self, request: dict) -> dict | bytes:
        """The request to forward instead, or the error body to answer with."""
        if request.get("ShardId") != self.shard_id:
            return request
        kind, number = request.get("ShardIteratorType"), request.get("StartingSequenceNumber")
        if kind == "TRIM_HORIZON" or (kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
                                      and int(number) < int(self.first_kept)):  # fmt: skip
            if self.refuse and number:
                message = f"StartingSequenceNumber {number} on shard {self.shard_id} is no longer available"
                return json.dumps({"__type": "InvalidArgumentException", "message": message}).encode()
            return {**request, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": self.first_kept}
        return request


@dataclass
class Hold:
    """Hold the ``nth`` call of a Kinesis ``operation`` until ``release`` is set, so that a test can
    pause the job at that point; ``answered`` is set once the held call's answer went back."""

    operation: str
    nth: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    seen: int = 0


def shift_arrivals(answer: bytes, seconds: float) -> bytes:
    """A GetRecords answer whose records arrived ``seconds`` later (earlier, when negative)."""
    page = json.loads(answer)
    for record in page["Records"]:
        record["ApproximateArrivalTimestamp"] += seconds
    return json.dumps(page).encode()


class FaultProxy:
    """``endpoint`` forwards to ``upstream`` except where an active fault answers instead."""

    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.trimmed: list[TrimmedShard] = []
        self.fresh_iterators: set[str] = set()  # from GetShardIterator: never expired by the proxy
        self.max_page: int | None = None  # GetRecords returns at most this many records (AWS pages by size)
        self.arrival_shift_s = 0.0  # added to every record's ApproximateArrivalTimestamp that GetRecords returns
        self.hold: Hold | None = None
        self.answered: Counter[str] = Counter()  # the upstream's error answers, by error type
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

    def _hold_here(self, operation: str) -> bool:
        """Whether this call is the one to hold; if so, wait for its release."""
        with self._lock:
            hold = self.hold
            if hold is None or hold.reached.is_set() or operation != hold.operation:
                return False
            hold.seen += 1
            if hold.seen < hold.nth:
                return False
            hold.reached.set()
        hold.release.wait()
        return True

    def _fault_for(self, method: str, path: str, headers, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if not fault.matches(method, path, headers):
                    continue
                if fault.spares_fresh_iterators and json.loads(body)["ShardIterator"] in self.fresh_iterators:
                    continue
                if self._random.random() < fault.probability:
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
        fault = proxy._fault_for(self.command, self.path, self.headers, body)
        if fault:
            self._respond(fault.status, [("Content-Type", fault.content_type)], fault.body)
            return
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if operation == "GetShardIterator" and proxy.trimmed:
            request = json.loads(body)
            for trim in proxy.trimmed:
                request = trim.rewrite(request)
                if isinstance(request, bytes):
                    with proxy._lock:
                        proxy.injected["GetShardIterator on a trimmed number refused"] += 1
                    self._respond(400, [("Content-Type", "application/x-amz-json-1.1")], request)
                    return
            body = json.dumps(request).encode()
        if operation == "GetRecords" and proxy.max_page:
            request = json.loads(body)
            body = json.dumps({**request, "Limit": min(request.get("Limit", 10_000), proxy.max_page)}).encode()
        held = proxy._hold_here(operation)
        connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if operation == "GetRecords" and response.status == 200 and proxy.arrival_shift_s:
                answer = shift_arrivals(answer, proxy.arrival_shift_s)
            with proxy._lock:
                if operation == "GetShardIterator" and response.status == 200:
                    proxy.fresh_iterators.add(json.loads(answer)["ShardIterator"])
                if response.status >= 400 and self.headers.get("X-Amz-Target"):
                    proxy.answered[json.loads(answer or b"{}").get("__type", str(response.status))] += 1
            self._respond(response.status, response.getheaders(), answer)
            if held:
                proxy.hold.answered.set()
        finally:
            connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

"""Fuzz of the edge's HTTP/1.x parsing: generated raw requests over sockets to a running
`portico serve`, each checked for an answer or a clean close.

    python benches/fuzz_edge.py [--examples N] [--threads N] [--workers N] [--seed N] [--json PATH]
                                [--keep]

What it starts (free ports, everything on 127.0.0.1):
  upstream  a small Python HTTP/1.1 server (here) answering every method 200, every answer marked
            `x-fuzz-integration: upstream`
  portico   `python -m portico serve CONFIG --workers 2` (benches/run.py's start_portico), one API
            (fuzz123456) with settings payloadLimitBytes 65536 (oversize bodies stay cheap) and
            bodyTimeoutMillis 1000:
              ANY /mock, ANY /mock/{proxy+}       MOCK 200, marked `x-fuzz-integration: mock`
              ANY /proxy, ANY /proxy/{proxy+}     HTTP_PROXY -> upstream
              ANY /lambda, ANY /lambda/{proxy+}   AWS_PROXY -> handlers.py:echo (the event, as JSON)

Each example (hypothesis strategies, `exchanges()`) is one connection carrying 1-3 pipelined
requests, the last one possibly cut short: methods (odd ones too), targets with odd bytes
(percent-escapes, NUL, non-ASCII, absolute and asterisk forms, 11 KB), HTTP/1.1, 1.0 and broken
versions, bare-LF lines, zero, one or two Hosts of odd values, duplicate, folded, nameless, huge
(11 KB) and too many (120) headers, Connection / Expect / Upgrade, Content-Length (exact,
mismatched, odd, duplicated) and Transfer-Encoding (chunked with extensions and trailers, odd
codings, with Content-Length), malformed chunked bodies, and bodies over the payload limit.

Checks, per connection (`check`):
  - an answer or a clean close within bounds: when the server stays silent for IDLE_SECONDS with
    requests unanswered, the client half-closes; the server then has CLOSE_SECONDS to answer or
    close, and the whole exchange EXCHANGE_SECONDS (a server still waiting for input sees its end,
    a hung one is caught). A reset counts as a close (a server closing on unread input resets);
    the report counts how connections ended;
  - every answer well-formed (status line, headers, framing) and no answer cut short;
  - no 5xx but the integrations' own (the upstream's, marked): a bad request never becomes a 500;
  - for a lone request: a body over the payload limit is not accepted (413 or 400), and the Lambda
    event names the request's HTTP version.
After the run: the server and its workers are the ones it started (no crash, no respawn), the log
has no panic, and a health request (GET /mock) answers 200.

Known deviations (FOUND_BUGS, with reproducers there) are reported apart, marked, not counted:
  oversize-proxy-get-200  a chunked body over the limit with GET/HEAD to HTTP_PROXY answers 200
                          when the upstream answers without reading it (streamed bodies are not
                          buffered, so the gateway never sees their end)
The bugs this fuzzer found first (malformed chunk sizes and broken bodies to HTTP_PROXY answering
500, oversize bodies to MOCK answering 200, answers cut short by a client's half-close) are fixed
and counted again.

The report gives the exchanges and requests sent, the outcomes, and for each kind of failure its
count and its shortest reproducer (the raw bytes, and whether the client half-closed). The exit
status is 1 when a failure other than a known one was found. tests/test_fuzz_edge.py runs the
same property with a few hundred examples.

Flags:
  --examples N   connections (examples) to generate (default 100000; each carries 1-3 requests)
  --threads N    client threads sending them (default 4)
  --workers N    Portico workers (default 2)
  --seed N       hypothesis seed (default 0: the same run each time)
  --json PATH    also write the counts and every failure kind with its reproducer as JSON
  --keep         keep the temporary directory (config, logs) and print its path
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from run import Processes, fetch, in_scratch, start_portico
from soak import ServerLog, wait_until

API_ID = "fuzz123456"
PAYLOAD_LIMIT = 65536
BODY_TIMEOUT_MILLIS = 1000
# Silence this long with requests unanswered: the client half-closes (the server may be waiting
# for bytes that will never come).
IDLE_SECONDS = 0.3
# After the half-close, the server must answer or close within this.
CLOSE_SECONDS = 5.0
EXCHANGE_SECONDS = 15.0
SEND_SECONDS = 5.0
MARKER = b"x-fuzz-integration"

# Bugs being fixed in the core: marked, not counted.
KNOWN_BUGS: dict[str, str] = {}
# Deviations this fuzzer found and that stay (issue 8): marked the same way so that
# tests/test_fuzz_edge.py stays a check for new ones. Each with its shortest reproducer.
FOUND_BUGS = {
    # `GET /proxy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` + 65,539 bytes of
    # chunks over payloadLimitBytes 65,536: 200 (with Content-Length: 413; POST, PUT, DELETE: 413).
    "oversize-proxy-get-200": "a chunked body over the payload limit with GET or HEAD to an HTTP_PROXY "
    "route answers 200, not 413",
}


def fuzz_config(upstream_url: str, echo: str) -> dict:
    """The served API; `echo` is the module:attr of a handler answering its event as JSON."""
    mock = {"type": "MOCK", "statusCode": 200, "headers": {MARKER.decode(): "mock"}, "body": "ok"}
    routes = []
    for prefix, integration in (("/mock", "mock"), ("/proxy", "upstream"), ("/lambda", "echo")):
        routes.append({"route": f"ANY {prefix}", "integration": integration})
        greedy = "upstream_greedy" if integration == "upstream" else integration
        routes.append({"route": f"ANY {prefix}/{{proxy+}}", "integration": greedy})
    upstream = {"type": "HTTP_PROXY", "method": "ANY", "timeoutInMillis": 5000}
    return {
        "settings": {
            "payloadLimitBytes": PAYLOAD_LIMIT,
            "bodyTimeoutMillis": BODY_TIMEOUT_MILLIS,
            "accountThrottle": {},  # no account limit: the fuzzer's rate is not AWS's default's concern
        },
        "functions": {"echo": echo},
        "apis": [
            {
                "name": "fuzz",
                "id": API_ID,
                "routes": routes,
                "integrations": {
                    "mock": mock,
                    "upstream": {**upstream, "uri": f"{upstream_url}/"},
                    "upstream_greedy": {**upstream, "uri": f"{upstream_url}/{{proxy}}"},
                    "echo": {"type": "AWS_PROXY", "uri": "echo", "payloadFormatVersion": "2.0"},
                },
            }
        ],
    }


# ------------------------------------------------------------------------------------------ upstream


class _UpstreamHandler(BaseHTTPRequestHandler):
    """Answers any method 200 after reading the body (Content-Length or chunked)."""

    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def _answer(self) -> None:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                self.rfile.read(size + 2)
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
        else:
            self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b'{"upstream":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def end_headers(self) -> None:
        self.send_header(MARKER.decode(), "upstream")  # on its error pages too
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # the gateway drops upstream connections whose client went away: expected here


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    """The HTTP_PROXY upstream, on a free port; yields its URL."""
    server = _QuietServer(("127.0.0.1", 0), _UpstreamHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class FuzzRequest:
    raw: bytes
    method: bytes
    version: bytes
    body_length: int  # body bytes sent
    tags: frozenset[str]  # what the checks and the known bugs look at: oversize, bad-chunk-size


@dataclass(frozen=True)
class Exchange:
    """One connection's worth: requests sent back to back, the last one possibly cut short."""

    requests: tuple[FuzzRequest, ...]
    truncated: bool
    half_close: bool  # shut the write side right after sending

    @property
    def raw(self) -> bytes:
        return b"".join(r.raw for r in self.requests)

    @property
    def complete(self) -> int:
        return len(self.requests) - self.truncated

    def __repr__(self) -> str:  # failures print this: long bodies elided
        return f"Exchange({_elided(self.raw)}, half_close={self.half_close})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's printer, likewise
        printer.text(repr(self))


def _elided(raw: bytes) -> str:
    return repr(raw if len(raw) <= 300 else raw[:200] + b"..." + raw[-60:]) + f" ({len(raw):,} bytes)"


# Each aspect of a request has plausible values and odd ones; a request breaks a few aspects at
# most, so that most requests get past the parser to the integrations with one oddity each.
METHODS = [b"GET"] * 6 + [b"POST"] * 4 + [b"HEAD", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"]
ODD_METHODS = [b"TRACE", b"CONNECT", b"PROPFIND", b"get", b"G\x00T", b"\xc3\x84GET", b"GET GET", b""]
TARGETS = [b"/mock", b"/mock/a/b", b"/proxy", b"/proxy/p/q", b"/lambda", b"/lambda/x"]
TARGETS += [f"/restapis/{API_ID}/$default/_user_request_/mock".encode()]
TARGETS += [f"http://{API_ID}.execute-api.localhost/lambda".encode()]
TARGET_ENDS = [b"", b"", b"", b"?a=1", b"?a=1&a=2&b", b"/x%20y", b"%2F", b"?q=%C3%A9"]
ODD_TARGET_ENDS = [b"%", b"%zz", b"%00", b"/..", b"//", b"#frag", b"?", b"?%", "/é".encode(), b"\xff"]
ODD_TARGET_ENDS += [b";x=1", b"\t", b" ", b"\x00", b"\x7f", b"?q=\r", b"a" * 11000]
ODD_TARGETS = [b"/", b"/nope", b"*", b"", b"mock", b"//mock", b"http://other.example/mock"]
VERSIONS = [b"HTTP/1.1"] * 3 + [b"HTTP/1.0"]
ODD_VERSIONS = [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1"]
ODD_VERSIONS += [b"HTTP/1.01", b"HTTP/11", b"HTTP/1.1\x00"]
HOSTS = [f"{API_ID}.execute-api.localhost".encode(), f"{API_ID}.execute-api.localhost:80".encode()]
HOSTS += [b"localhost", b"127.0.0.1:8080"]
ODD_HOSTS = [b"", b"[::1]:8080", b"a b", b"\xff", b"x" * 300, b"other.execute-api.localhost", b"h:port"]
HEADER_LINES = [
    b"Connection: keep-alive",
    b"Connection: close",
    b"Expect: 100-continue",
    b"Accept: */*",
    b"Cookie: a=1; b=2",
    b"Authorization: Bearer x",
    b"X-Forwarded-For: 10.0.0.1, 10.0.0.2",
    b"Forwarded: for=1.2.3.4",
    b"Content-Type: application/json",
    b"Te: trailers",
    b"Keep-Alive: timeout=5",
    b"X-Amzn-Trace-Id: Root=1-x",
    b"X-Empty:",
    b"X-Utf8: \xc3\xa9",
]
ODD_HEADER_LINES = [
    b"Connection: upgrade",
    b"Upgrade: h2c",
    b"Upgrade: websocket",
    b"Connection: close, keep-alive",
    b"Expect: nothing",
    b"NoColon",
    b"X-Space : before-colon",
    b" folded-continuation",
    b": nameless",
    b"X-Nul: a\x00b",
    b"X-Latin1: \xe9",
    b"X-CR: a\rb",
    b"X-H\xc3\xa9: v",
    b"X-Tab:\tv",
]
CONTENT_LENGTHS = [b"-1", b"+5", b"5, 5", b"0x10", b"99999999999999999999", b" 3", b"3 ", b"", b"abc"]
CONTENT_LENGTHS += [b"1e3", b"007"]
TRANSFER_ENCODINGS = [b"chunked", b"Chunked", b"gzip, chunked", b"chunked, gzip", b"identity", b"gzip"]
TRANSFER_ENCODINGS += [b" chunked", b"chunked\x00", b"chunked, chunked", b"xchunked"]
# The chunk sizes of the known bug (500 instead of 400); a bare LF after the size too.
KNOWN_BAD_SIZES = [b"zz", b"-5", b"1" * 20, b"0x5"]
OTHER_BAD_SIZES = [b"", b" 5", b"5 ", b"5;", b"5;\x00", b"ffffffffffffffff"]
FRAMINGS = ["none"] * 3 + ["length"] * 2 + ["chunked"]
ODD_FRAMINGS = ["length-mismatch", "length-odd", "length-dup", "chunked-bad", "chunked-bad", "te-odd"]
ODD_FRAMINGS += ["te-and-length", "oversize-length", "oversize-chunked"]
ASPECTS = ["method", "target", "version", "line", "host", "headers", "framing", "framing", "bulk"]


def _chunked(chunks: list[bytes], eol: bytes, extension: bytes = b"", trailers: bytes = b"") -> bytes:
    out = b"".join(b"%x%s%s%s%s" % (len(c), extension, eol, c, eol) for c in chunks)
    return out + b"0" + eol + trailers + eol


@st.composite
def framed_bodies(draw: st.DrawFn, eol: bytes, odd: bool) -> tuple[list[bytes], bytes, set[str]]:
    """(framing header lines, body, tags)."""
    framing = draw(st.sampled_from(ODD_FRAMINGS if odd else FRAMINGS))
    headers, body, tags = draw(_framed(framing, eol))
    if eol == b"\n" and any(h.startswith(b"Transfer-Encoding") for h in headers):
        tags.add("bad-chunk-size")  # chunk lines ended by a bare LF
    return headers, body, tags


@st.composite
def _framed(draw: st.DrawFn, framing: str, eol: bytes) -> tuple[list[bytes], bytes, set[str]]:
    if framing == "none":
        return [], b"", set()
    if framing == "length":
        body = draw(st.binary(max_size=64))
        return [b"Content-Length: %d" % len(body)], body, set()
    if framing == "length-mismatch":
        body = draw(st.binary(max_size=32))
        declared = draw(st.integers(0, len(body) + 16).filter(lambda n: n != len(body)))
        return [b"Content-Length: %d" % declared], body, {"bad-body"} if declared > len(body) else set()
    if framing == "length-odd":
        declared = draw(st.sampled_from(CONTENT_LENGTHS))
        return [b"Content-Length: " + declared], draw(st.binary(max_size=16)), set()
    if framing == "length-dup":
        body = draw(st.binary(max_size=16))
        other = draw(st.sampled_from([len(body), len(body) + 1]))
        return [b"Content-Length: %d" % len(body), b"Content-Length: %d" % other], body, set()
    chunks = draw(st.lists(st.binary(min_size=1, max_size=16), max_size=4))
    extension = draw(st.sampled_from([b""] * 4 + [b";a=b", b';a="q"', b";\x00"]))
    trailers = draw(st.sampled_from([b""] * 4 + [b"X-Trailer: t" + eol, b"Content-Length: 3" + eol]))
    if framing == "chunked":
        return [b"Transfer-Encoding: chunked"], _chunked(chunks, eol, extension, trailers), set()
    if framing == "chunked-bad":
        data = draw(st.binary(min_size=1, max_size=16))
        rest = eol + data + eol + b"0" + eol + eol  # after the size
        defects = {
            "known-size": draw(st.sampled_from(KNOWN_BAD_SIZES)) + rest,
            "other-size": draw(st.sampled_from(OTHER_BAD_SIZES)) + rest,
            "bare-lf": _chunked([data], eol).replace(b"\r\n", b"\n", 1),
            "long-data": b"%x" % len(data) + eol + data + b"extra" + eol + b"0" + eol + eol,
            "short-data": b"%x" % (len(data) + 4) + rest,
            "no-crlf": b"%x" % len(data) + eol + data + b"0" + eol + eol,
            "no-last-chunk": b"%x" % len(data) + eol + data + eol,
        }
        defect = draw(st.sampled_from(sorted(defects)))
        tags = {"bad-chunk-size"} if defect in ("known-size", "bare-lf") else {"bad-body"}
        return [b"Transfer-Encoding: chunked"], defects[defect], tags
    if framing == "te-odd":
        coding = draw(st.sampled_from(TRANSFER_ENCODINGS))
        return [b"Transfer-Encoding: " + coding], _chunked(chunks, eol), set()
    if framing == "te-and-length":
        body = _chunked(chunks, eol)
        return [b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(body)], body, set()
    extra = draw(st.integers(1, 4096))
    if framing == "oversize-length":
        return [b"Content-Length: %d" % (PAYLOAD_LIMIT + extra)], b"x" * (PAYLOAD_LIMIT + extra), {"oversize"}
    big = [b"x" * 16384] * (PAYLOAD_LIMIT // 16384) + [b"y" * extra]
    return [b"Transfer-Encoding: chunked"], _chunked(big, eol), {"oversize"}


@st.composite
def requests(draw: st.DrawFn) -> FuzzRequest:
    """One raw HTTP/1.x request: plausible, with up to two aspects broken."""
    broken = draw(st.sets(st.sampled_from(ASPECTS), max_size=2))

    def pick(aspect: str, plausible: list[bytes], odd: list[bytes]) -> bytes:
        return draw(st.sampled_from(odd if aspect in broken else plausible))

    method = pick("method", METHODS, ODD_METHODS)
    if "method" in broken:
        method = draw(st.one_of(st.just(method), st.binary(min_size=1, max_size=8)))
    target = draw(st.sampled_from(TARGETS)) + pick("target", TARGET_ENDS, ODD_TARGET_ENDS)
    if "target" in broken:
        target = draw(st.sampled_from([target, target, draw(st.sampled_from(ODD_TARGETS))]))
        target += draw(st.binary(max_size=4))
    version = pick("version", VERSIONS, ODD_VERSIONS)
    eol = pick("line", [b"\r\n"], [b"\r\n", b"\n"])
    space = pick("line", [b" "], [b"  ", b"\t", b" "])
    line = method + space + target + (space + version if version else b"")
    if "host" in broken:
        hosts = draw(st.lists(st.sampled_from(HOSTS + ODD_HOSTS), max_size=2))
    else:
        hosts = [pick("host", HOSTS, ODD_HOSTS)]
    headers = [b"Host: " + host for host in hosts]
    headers += draw(st.lists(st.sampled_from(HEADER_LINES), max_size=3))
    if "headers" in broken:
        headers += draw(st.lists(st.sampled_from(ODD_HEADER_LINES), min_size=1, max_size=2))
        odd = st.tuples(st.binary(max_size=8), st.binary(max_size=16))
        headers += [name + b": " + value for name, value in draw(st.lists(odd, max_size=2))]
    if "bulk" in broken:
        if draw(st.booleans()):
            headers += [b"X-H%d: v" % i for i in range(120)]
        else:
            headers.append(b"X-Big: " + b"v" * 11000)
    framing, body, tags = draw(framed_bodies(eol, "framing" in broken))
    headers = draw(st.permutations(headers + framing))
    raw = line + eol + b"".join(h + eol for h in headers) + eol + body
    return FuzzRequest(raw, method, version, len(body), frozenset(tags))


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    """1-3 requests on one connection, the last cut short now and then."""
    sent = draw(st.lists(requests(), min_size=1, max_size=draw(st.sampled_from([1, 1, 1, 2, 3]))))
    truncated = draw(st.sampled_from([False] * 5 + [True])) and len(sent[-1].raw) > 1
    if truncated:
        last = sent[-1]
        cut = draw(st.integers(1, len(last.raw) - 1))
        sent[-1] = FuzzRequest(last.raw[:cut], last.method, last.version, 0, last.tags)
    half_close = truncated or draw(st.sampled_from([False] * 9 + [True]))
    return Exchange(tuple(sent), truncated, half_close)


# ------------------------------------------------------------------------------------------ answers


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lowercased
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    @property
    def integration(self) -> str:
        """Who produced it: mock, upstream (both mark their answers), lambda (the event echoed),
        else the gateway itself."""
        marker = self.header(MARKER)
        if marker is not None:
            return marker.decode(errors="replace")
        return "lambda" if b'"requestContext"' in self.body else "gateway"


@dataclass
class Outcome:
    answers: list[Answer] = field(default_factory=list)
    closed: str = "open"  # eof, reset, or open (kept alive with every request answered)
    malformed: str | None = None
    leftover: bytes = b""  # bytes of an answer that never completed
    hung: str | None = None
    half_closed: bool = False


STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]+)(?:;[^\r\n]*)?\r\n")


class Malformed(ValueError):
    pass


def parse_answers(
    data: bytes, head_only: Callable[[int], bool], eof: bool, pipelined: bool = False
) -> tuple[list[Answer], bytes]:
    """The complete answers in `data` and the bytes of an incomplete last one. `head_only(i)`: the
    i-th answer has no body (it answers a HEAD). Raises Malformed.

    In a pipeline the server may frame the requests otherwise than meant (a body shorter than its
    Content-Length swallows the next request's first bytes, and `HEAD /x` becomes `D /x`): there,
    bytes after a HEAD's answer that do not start another answer are taken as its body."""
    answers: list[Answer] = []
    pos = 0
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return answers, data[pos:]
        lines = data[pos:head_end].split(b"\r\n")
        status_line = STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise Malformed(f"status line {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or TOKEN.fullmatch(name) is None or b"\n" in value or b"\r" in value:
                raise Malformed(f"header line {line[:80]!r}")
            headers.append((name.lower(), value.strip()))
        status, start = int(status_line.group(1)), head_end + 4
        lengths = [v for n, v in headers if n == b"content-length"]
        codings = [v for n, v in headers if n == b"transfer-encoding"]
        if status < 200:  # 100 Continue: the answer follows
            pos = start
            continue
        follows = data[start : start + 7]
        another = b"HTTP/1.".startswith(follows) or follows.startswith(b"HTTP/1.")
        if status in (204, 304) or (head_only(len(answers)) and (another or not pipelined)):
            end, body = start, b""
        elif codings:
            if codings != [b"chunked"] or lengths:
                raise Malformed(f"framing {codings} {lengths}")
            decoded = _dechunk(data, start)
            if decoded is None:
                return answers, data[pos:]
            body, end = decoded
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise Malformed(f"content-length {lengths}")
            end = start + int(lengths[0])
            if end > len(data):
                return answers, data[pos:]
            body = data[start:end]
        elif eof:  # delimited by the close
            end, body = len(data), data[start:]
        else:
            return answers, data[pos:]
        answers.append(Answer(status, headers, body))
        pos = end
    return answers, b""


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `pos`: (body, end), None while incomplete; raises Malformed."""
    body = bytearray()
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_line = CHUNK_SIZE.fullmatch(data[pos : line_end + 2])
        if size_line is None:
            raise Malformed(f"chunk size {data[pos:line_end][:40]!r}")
        size, pos = int(size_line.group(1), 16), line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", pos - 2)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if pos + size + 2 > len(data):
            return None
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise Malformed("chunk data not followed by CRLF")
        body += data[pos : pos + size]
        pos += size + 2


def run_exchange(port: int, case: Exchange) -> Outcome:
    """Send `case` on a fresh connection and read until every complete request is answered, the
    server closes, or the bounds pass."""
    outcome = Outcome()
    data = bytearray()

    def head_only(index: int) -> bool:
        return index < len(case.requests) and case.requests[index].method == b"HEAD"

    def answered() -> bool:
        """Whether there is nothing more to wait for: every complete request answered (or an
        answer malformed)."""
        try:
            eof = outcome.closed != "open"
            answers, leftover = parse_answers(bytes(data), head_only, eof, len(case.requests) > 1)
        except Malformed as exc:
            outcome.malformed = str(exc)
            return True
        outcome.answers, outcome.leftover = answers, leftover
        return not leftover and len(answers) >= case.complete

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=SEND_SECONDS) as sock:
        try:
            sock.sendall(case.raw)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
                outcome.half_closed = True
        except TimeoutError:
            pass  # the server stopped reading: what it answered is judged below
        except OSError:
            pass  # it answered and closed early (reset, broken pipe, gone): read what it sent
        sock.settimeout(CLOSE_SECONDS if outcome.half_closed else IDLE_SECONDS)
        try:
            while True:
                if time.monotonic() - started > EXCHANGE_SECONDS:
                    outcome.hung = f"still open after {EXCHANGE_SECONDS} s"
                    break
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if answered():
                        break  # kept alive, everything answered
                    if outcome.half_closed:
                        outcome.hung = f"neither answered nor closed {CLOSE_SECONDS} s after the half-close"
                        break
                    # Silence with requests unanswered: the server may wait for more bytes.
                    sock.shutdown(socket.SHUT_WR)
                    outcome.half_closed = True
                    sock.settimeout(CLOSE_SECONDS)
                    continue
                except ConnectionResetError:
                    outcome.closed = "reset"
                    break
                if not chunk:
                    outcome.closed = "eof"
                    break
                data += chunk
                if not outcome.half_closed and answered():
                    break
        except OSError as exc:  # shutdown on a connection the server reset meanwhile
            outcome.closed = type(exc).__name__
        answered()
    return outcome


# ------------------------------------------------------------------------------------------ checks


@dataclass(frozen=True)
class Finding:
    kind: str
    known: str | None = None  # a KNOWN_BUGS or FOUND_BUGS key


def check(case: Exchange, outcome: Outcome) -> list[Finding]:
    """What is wrong with how the server handled `case` (known bugs marked)."""
    findings: list[Finding] = []
    if outcome.hung:
        findings.append(Finding(f"hang: {outcome.hung}"))
    if outcome.malformed:
        findings.append(Finding(f"malformed answer: {_shape(outcome.malformed)}"))
    elif outcome.leftover and outcome.closed != "open":
        findings.append(Finding(f"answer cut short ({outcome.closed})"))
    for answer in outcome.answers:
        if answer.status >= 500 and answer.integration != "upstream":
            findings.append(Finding(f"{answer.status} from the {answer.integration}"))
    if len(case.requests) == 1 and case.complete == 1 and len(outcome.answers) == 1:
        request, answer = case.requests[0], outcome.answers[0]
        if "oversize" in request.tags and answer.status < 300:
            integration = answer.integration
            known = None
            if integration == "upstream" and request.method in (b"GET", b"HEAD"):
                known = "oversize-proxy-get-200"
            findings.append(Finding(f"body over the limit accepted ({answer.status}, {integration})", known))
        if answer.integration == "lambda" and answer.status == 200:
            findings += _event_protocol(request, answer)
    return findings


def _event_protocol(request: FuzzRequest, answer: Answer) -> list[Finding]:
    try:
        protocol = json.loads(answer.body)["requestContext"]["http"]["protocol"]
    except (ValueError, KeyError, TypeError):
        return [Finding("Lambda answer without the event's protocol")]
    sent = request.version.strip().decode(errors="replace")
    if protocol == sent:
        return []
    return [Finding(f"Lambda event protocol {protocol} for an {sent or 'unversioned'} request")]


def _shape(text: str) -> str:
    """A finding's text without the bytes that vary, so that one kind counts once."""
    return re.sub(r"'.*'|\".*\"|\[.*\]", "...", text)


def aftermath(log_text: str, port: int) -> list[str]:
    """What is wrong with the server after a run: a respawned worker, a panic, a failed health
    request."""
    problems = []
    if "Respawning worker" in log_text:
        problems.append("a worker was respawned (it died): " + _lines_with(log_text, "worker"))
    if "panicked" in log_text:
        problems.append("a panic in the log: " + _lines_with(log_text, "panicked"))
    try:
        status, _, _ = fetch(port, "/mock")
    except OSError as exc:
        status = exc
    if status != 200:
        problems.append(f"health request GET /mock: {status}")
    return problems


def _lines_with(text: str, word: str) -> str:
    return " | ".join(line for line in text.splitlines() if word in line)[:2000]


# ------------------------------------------------------------------------------------------ run


class Tally:
    """What the run saw, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exchanges = 0
        self.requests = 0
        self.pipelined = 0
        self.cut_short = 0
        self.half_closed = 0
        self.closings: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.findings: collections.Counter[Finding] = collections.Counter()
        self.shortest: dict[Finding, Exchange] = {}
        self.evidence: dict[Finding, str] = {}  # what the shortest one got
        # The latest exchanges sent, to replay should a worker die.
        self.recent: collections.deque[Exchange] = collections.deque(maxlen=200)

    def record(self, case: Exchange, outcome: Outcome | None, findings: list[Finding]) -> None:
        with self.lock:
            self.exchanges += 1
            self.requests += len(case.requests)
            self.pipelined += len(case.requests) > 1
            self.cut_short += case.truncated
            self.half_closed += outcome.half_closed if outcome else case.half_close
            self.recent.append(case)
            if outcome is not None:
                self.closings[outcome.closed] += 1
                self.statuses.update(a.status for a in outcome.answers)
            for finding in findings:
                self.findings[finding] += 1
                shortest = self.shortest.get(finding)
                if shortest is None or len(case.raw) < len(shortest.raw):
                    self.shortest[finding] = case
                    self.evidence[finding] = _evidence(outcome)


def generate(examples: int, seed: int, consume: Callable[[Exchange], None]) -> None:
    """Feed `examples` generated exchanges to `consume` (hypothesis generation only: failures are
    tallied, not shrunk; the shortest reproducer of each kind is kept instead)."""

    @hypothesis.seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(exchanges())
    def feed(case: Exchange) -> None:
        consume(case)

    feed()


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict:
    with upstream() as upstream_url:
        config = fuzz_config(upstream_url, "handlers:echo")
        port, server, _ = start_portico(tmp, procs, "portico", config, "/mock", workers=args.workers)
        log = ServerLog(tmp / "portico.log")
        if wait_until(lambda: log.started() >= args.workers, 30) is None:
            raise RuntimeError(f"{args.workers} workers did not start; log {log.path}")
        workers = log.workers()
        tally = Tally()
        slots = threading.BoundedSemaphore(args.threads * 4)
        started = time.monotonic()

        def send(case: Exchange) -> None:
            try:
                outcome = run_exchange(port, case)
                tally.record(case, outcome, check(case, outcome))
            except Exception as exc:  # connect refused, ...: a finding like the others
                tally.record(case, None, [Finding(f"client error: {type(exc).__name__}: {exc}")])
            finally:
                slots.release()

        with ThreadPoolExecutor(args.threads) as pool:

            def consume(case: Exchange) -> None:
                slots.acquire()
                pool.submit(send, case)
                if tally.exchanges and tally.exchanges % 10000 == 0:
                    elapsed = time.monotonic() - started
                    print(f"[{elapsed:6.0f} s] {tally.exchanges:,} exchanges", file=sys.stderr)

            generate(args.examples, args.seed, consume)
        elapsed = time.monotonic() - started
        problems = aftermath(log.text(), port)
        if server.poll() is not None:
            problems.append(f"the server exited with {server.returncode}")
        if log.workers() != workers:
            problems.append(f"workers {workers} are now {log.workers()}")
        if problems:
            problems.append(f"the last {len(tally.recent)} exchanges are in the JSON report")
    return report(args, tally, elapsed, problems)


def report(args: argparse.Namespace, tally: Tally, elapsed: float, problems: list[str]) -> dict:
    print(
        f"\nfuzz: {tally.exchanges:,} connections, {tally.requests:,} requests ({tally.pipelined:,} "
        f"connections pipelined, {tally.cut_short:,} cut short, {tally.half_closed:,} half-closed) in "
        f"{elapsed:.0f} s; {args.threads} client threads, {args.workers} workers, seed {args.seed}"
    )
    print(f"connections ended: {dict(tally.closings.most_common())}")
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    unknown = {f: n for f, n in tally.findings.items() if f.known is None}
    sections = (
        ("failures", unknown),
        (
            "known bugs tripped (not counted)",
            {f: n for f, n in tally.findings.items() if f.known in KNOWN_BUGS},
        ),
        (
            "bugs this fuzzer found before, reported (not counted)",
            {f: n for f, n in tally.findings.items() if f.known in FOUND_BUGS},
        ),
    )
    for title, findings in sections:
        print(f"\n{title}: {sum(findings.values())} in {len(findings)} kinds")
        for finding, count in sorted(findings.items(), key=lambda item: -item[1]):
            label = f"[{finding.known}] " if finding.known else ""
            print(f"  {count:>6} x {label}{finding.kind}")
            print(f"         e.g. {_reproducer(tally.shortest[finding])}")
            print(f"         got: {tally.evidence[finding]}")
    healthy = "alive, no respawn, no panic, GET /mock 200"
    print(f"\nserver after the run: {'; '.join(problems) if problems else healthy}")
    kinds = []
    for finding, count in tally.findings.most_common():
        case = tally.shortest[finding]
        kinds.append(
            {
                "kind": finding.kind,
                "known": finding.known,
                "count": count,
                "description": KNOWN_BUGS.get(finding.known or "") or FOUND_BUGS.get(finding.known or ""),
                "reproducer": case.raw.decode("latin-1"),
                "requests": [r.raw.decode("latin-1") for r in case.requests],  # as sent, one by one
                "half_close": case.half_close,
                "got": tally.evidence[finding],
            }
        )
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep")},
        "connections": tally.exchanges,
        "requests": tally.requests,
        "seconds": round(elapsed, 1),
        "closings": dict(tally.closings),
        "statuses": dict(tally.statuses),
        "findings": kinds,
        "server_problems": problems,
        "recent_exchanges": [c.raw.decode("latin-1") for c in tally.recent] if problems else [],
        "ok": not unknown and not problems,
    }


def _evidence(outcome: Outcome | None) -> str:
    if outcome is None:
        return "no outcome (the client failed)"
    got = f"answers {[a.status for a in outcome.answers]}, connection {outcome.closed}"
    if outcome.leftover:
        got += f", then only {_elided(outcome.leftover)}"
    return got + (f", malformed: {outcome.malformed}" if outcome.malformed else "")


def _reproducer(case: Exchange) -> str:
    return _elided(case.raw) + (", then half-close" if case.half_close else "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    return in_scratch("portico-fuzz-", args.keep, lambda tmp, procs: _run_and_report(args, tmp, procs))


def _run_and_report(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    result = run(args, tmp, procs)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

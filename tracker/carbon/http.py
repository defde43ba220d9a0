"""Every HTTP call of tracker/carbon: bounded in size and in time, redirects kept on one origin.

Why one place: a provider's token travels in a custom header (Electricity Maps' `auth-token`),
and `requests` strips only `Authorization` on a cross-host redirect, so following redirects
would hand the token to whatever host the first one names. Here a redirect is followed only
when it stays on the same scheme, host and port (and only for GET); any other is a
`FetchError(kind="redirect")` and nothing is sent there.

A body is streamed and capped (`MAX_BYTES`, counted after gzip/deflate decoding), and the
whole exchange (connect, headers, body) has one deadline, `timeout_s`, not a per-read timeout
that a server trickling a byte a second never trips. The exchange runs on a short-lived
daemon worker so the caller waits at most `timeout_s` (or until `stop` is set) even while
the worker is stuck in a read; a worker that is given up closes its connection at its next
read. Error messages hold no URL, header or response text (a token can hide in any of them).
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions

__all__ = [
    "MAX_BYTES",
    "MAX_REDIRECTS",
    "FetchError",
    "Response",
    "fetch",
    "fetch_json",
    "parse_json",
    "safe_url",
    "same_origin",
]

MAX_BYTES = 1 << 20          # 1 MiB: a provider's answer is a few hundred bytes
MAX_REDIRECTS = 3
MAX_HANGING = 4              # workers given up on but still blocked in a read, process-wide
_CHUNK_BYTES = 64 * 1024
_POLL_S = 0.05               # how often a waiting caller looks at `stop`
_REDIRECTS = (301, 302, 303, 307, 308)

_hanging_lock = threading.Lock()
_hanging = 0


class FetchError(Exception):
    """A failed HTTP exchange. The message is safe to log (no URL, header or body text).

    kind: "timeout", "connection" (both worth a retry), "redirect" (to another origin, or
    too many), "too_large", "encoding", "status" (fetch_json: not HTTP 200), "stopped" or
    "busy" (too many earlier requests still hanging)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    """A complete answer: status, headers (case-insensitive) and the decoded body."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not JSON, or holds NaN/Infinity)."""
        return parse_json(self.body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in the JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text[:24]} in the JSON")
    return value


def parse_json(body: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow to infinity are refused
    (ValueError), as is nesting too deep to parse."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("the JSON is not valid UTF-8") from None


def _origin(url: str) -> tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1   # a malformed port never matches a real one
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """True if both URLs have the same scheme, host and port (default ports filled in)."""
    return _origin(a) == _origin(b)


def safe_url(url: str) -> str:
    """`url` without user info, query or fragment: fit for a summary or a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _socket_of(raw: Any) -> Optional[socket.socket]:
    """The socket under a urllib3 response, when this urllib3 exposes it (best effort)."""
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _Exchange:
    """One request on a worker thread; the caller waits on `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self.result: Optional[Response] = None
        self.error: Optional[FetchError] = None
        self.raw: Any = None            # the urllib3 response being read, for abort()
        self.abandoned = False

    def abort(self) -> None:
        """Give up: the worker stops at its next read; a blocked read is woken if we can."""
        self.cancelled.set()
        sock = _socket_of(self.raw)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _read_body(resp: requests.Response, ex: _Exchange, deadline: float, max_bytes: int
               ) -> bytes:
    raw = resp.raw
    ex.raw = raw
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"response larger than {max_bytes} bytes (declared {declared}); "
                         "not read", "too_large")
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    decoder = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)   # gzip or zlib header
    elif encoding not in ("", "identity"):
        raise FetchError("response in an unsupported content encoding", "encoding")
    read1 = getattr(raw, "read1", None)   # urllib3 >= 2: at most one socket read per call
    sock = _socket_of(raw)
    out = bytearray()
    while True:
        if ex.cancelled.is_set():
            raise FetchError("stopped", "stopped")
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise FetchError("deadline passed while reading", "timeout")
        if sock is not None:
            try:   # no single read may outlast the whole exchange's deadline
                sock.settimeout(max(0.01, left_s))
            except OSError:
                pass
        if read1 is not None:
            chunk = read1(_CHUNK_BYTES, decode_content=False)
        else:
            chunk = raw.read(8192, decode_content=False)
        if not chunk:
            break
        if decoder is not None:
            try:
                chunk = decoder.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error:
                raise FetchError("corrupt compressed response", "encoding") from None
            if decoder.unconsumed_tail:   # more output than the cap leaves room for
                raise _too_large(max_bytes)
        out += chunk
        if len(out) > max_bytes:
            raise _too_large(max_bytes)
    if decoder is not None:
        try:
            out += decoder.flush()
        except zlib.error:
            raise FetchError("corrupt compressed response", "encoding") from None
        if len(out) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(out)


def _too_large(max_bytes: int) -> FetchError:
    return FetchError(f"response larger than {max_bytes} bytes; not read further", "too_large")


def _perform(ex: _Exchange, session: requests.Session, method: str, url: str,
             params: Optional[Mapping[str, str]], headers: Mapping[str, str],
             timeout_s: float, deadline: float, max_bytes: int, max_redirects: int) -> Response:
    sent = {"Accept-Encoding": "gzip, deflate", **headers}
    current, current_params = url, params
    for _ in range(max_redirects + 1):
        try:
            resp = session.request(method, current, params=current_params, headers=sent,
                                   timeout=(timeout_s, timeout_s), allow_redirects=False,
                                   stream=True)
        except requests.Timeout:
            raise FetchError("timeout", "timeout") from None
        except requests.RequestException as exc:
            # the exception text may echo the URL or headers; keep only its type
            raise FetchError(f"connection failed ({type(exc).__name__})", "connection") from None
        try:
            location = resp.headers.get("Location")
            if resp.status_code in _REDIRECTS and location:
                target = urljoin(resp.url or current, location)
                if not same_origin(target, resp.url or current):
                    raise FetchError("redirected to another host; not followed", "redirect")
                if method != "GET":   # a PUT's headers are a credential request: not re-sent
                    raise FetchError(f"{method} redirected; not followed", "redirect")
                current, current_params = target, None   # the query is in the target
                continue
            body = _read_body(resp, ex, deadline, max_bytes)
            return Response(resp.status_code, resp.headers, body)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError) as exc:
            if ex.cancelled.is_set():
                raise FetchError("stopped", "stopped") from None
            if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError,
                                socket.timeout)):
                raise FetchError("timeout", "timeout") from None
            raise FetchError(f"connection failed ({type(exc).__name__})", "connection") from None
        finally:
            resp.close()
    raise FetchError(f"more than {max_redirects} redirects; not followed", "redirect")


def _work(ex: _Exchange, *args: Any) -> None:
    global _hanging
    try:
        ex.result = _perform(ex, *args)
    except FetchError as exc:
        ex.error = exc
    except Exception as exc:   # this thread must end quietly whatever happens
        ex.error = FetchError(f"request failed ({type(exc).__name__})", "connection")
    finally:
        with _hanging_lock:
            ex.done.set()
            if ex.abandoned:
                _hanging -= 1


def fetch(session: requests.Session, url: str, *, method: str = "GET",
          params: Optional[Mapping[str, str]] = None,
          headers: Optional[Mapping[str, str]] = None, timeout_s: float,
          max_bytes: int = MAX_BYTES, max_redirects: int = MAX_REDIRECTS,
          stop: Optional[threading.Event] = None) -> Response:
    """One HTTP exchange that ends within `timeout_s` (connect, headers and body together),
    reads at most `max_bytes` of body, follows only same-origin GET redirects, and returns
    early when `stop` is set. Any failure is a FetchError with a safe message."""
    global _hanging
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    with _hanging_lock:
        if _hanging >= MAX_HANGING:
            raise FetchError(f"{_hanging} earlier requests still hang; none sent", "busy")
    deadline = time.monotonic() + timeout_s
    ex = _Exchange()
    worker = threading.Thread(
        target=_work, name="energy-tracker-http", daemon=True,
        args=(ex, session, method, url, params, dict(headers or {}), timeout_s, deadline,
              max_bytes, max_redirects))
    worker.start()
    while not ex.done.wait(min(_POLL_S, max(0.0, deadline - time.monotonic()))):
        stopped = stop is not None and stop.is_set()
        if stopped or time.monotonic() >= deadline:
            with _hanging_lock:
                if not ex.done.is_set():
                    ex.abandoned = True
                    _hanging += 1
            ex.abort()
            if stopped:
                raise FetchError("stopped", "stopped")
            raise FetchError("timeout", "timeout")
    if ex.error is not None:
        raise ex.error
    assert ex.result is not None
    return ex.result


def fetch_json(session: requests.Session, url: str,
               headers: Optional[Mapping[str, str]] = None, *,
               params: Optional[Mapping[str, str]] = None, timeout_s: float,
               max_bytes: int = MAX_BYTES, max_redirects: int = MAX_REDIRECTS,
               stop: Optional[threading.Event] = None) -> Any:
    """GET `url` with `fetch`'s bounds and return its strict JSON (FetchError unless HTTP 200;
    ValueError if the body is not strict JSON)."""
    resp = fetch(session, url, params=params, headers=headers, timeout_s=timeout_s,
                 max_bytes=max_bytes, max_redirects=max_redirects, stop=stop)
    if resp.status != 200:
        raise FetchError(f"HTTP {resp.status}", "status")
    return resp.json()

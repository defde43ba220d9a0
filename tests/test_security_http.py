"""Hostile provider and metadata servers: tokens stay on their host, answers are bounded.

Real HTTP servers on loopback (http.server in a thread). "Another host" is a second server on
127.0.0.2 (all of 127/8 is loopback on Linux), so the host differs, not only the port. Large
and endless bodies are generated on the fly, never held in memory; peak RSS is measured in a
subprocess (VmHWM).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tracker.carbon import LiveIntensity, detect_region, resolve_factor
from tracker.carbon import http as carbon_http
from tracker.errors import ConfigError

TOKEN = "em-secret-token-7d41b09e"
REPO = Path(__file__).resolve().parents[1]
EMAPS = "/v3/carbon-intensity/latest"
UK = {"data": [{"from": "2024-05-01T12:00Z", "to": "2024-05-01T12:30Z",
                "intensity": {"forecast": 130, "actual": 127, "index": "low"}}]}
EMAPS_ANSWER = {"zone": "DE", "carbonIntensity": 302, "datetime": "2024-05-01T12:00:00.000Z"}


class Server:
    """A loopback HTTP/1.1 server; `route(handler)` answers every request. Records each
    request's method, path and headers; handlers that stream check `closing`."""

    def __init__(self, host: str, route: Callable[[Any], None]):
        self.route = route
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self.sent_bytes = 0
        self.finished = threading.Event()   # a streaming handler saw its client go away
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                server.requests.append({"method": self.command, "path": self.path,
                                        "headers": dict(self.headers.items())})
                try:
                    server.route(self)
                except (BrokenPipeError, ConnectionResetError):
                    server.finished.set()

            do_GET = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass   # a client that hangs up mid-answer is what these tests do

        self.httpd = Quiet((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def saw_token(self) -> bool:
        return any(TOKEN in f"{r['path']} {r['headers']}" for r in self.requests)


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(route: Callable[[Any], None], host: str = "127.0.0.1") -> Server:
        made.append(Server(host, route))
        return made[-1]

    yield make
    for s in made:
        s.close()


# -- answers --------------------------------------------------------------------------------
def send_json(h: Any, obj: Any, status: int = 200) -> None:
    body = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def redirect(h: Any, location: str, status: int = 302) -> None:
    h.send_response(status)
    h.send_header("Location", location)
    h.send_header("Content-Length", "0")
    h.end_headers()


def stream(server: Server, h: Any, total: float, *, declared: bool, pause_s: float = 0.0,
           chunk: int = 64 * 1024) -> None:
    """`total` bytes of '[' (inf: endless), made on the fly, chunked unless `declared`."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    if declared:
        h.send_header("Content-Length", str(int(total)))
    else:
        h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    block = b"[" * chunk
    sent = 0
    while sent < total and not server.closing.is_set():
        if declared:
            h.wfile.write(block)
        else:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        h.wfile.flush()
        sent += len(block)
        server.sent_bytes = sent
        if pause_s:
            time.sleep(pause_s)
    if not declared and not server.closing.is_set():
        h.wfile.write(b"0\r\n\r\n")


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def emaps(base: str, **kw: Any) -> LiveIntensity:
    kw.setdefault("retries", 0)
    return LiveIntensity("electricitymaps", "DE", resolve_factor("DE"), token=TOKEN,
                         base_url=base + "/v3", **kw)


def fetched(live: LiveIntensity, count: int = 1) -> LiveIntensity:
    live.start()
    wait_for(lambda: live.status()["ok_count"] + live.status()["error_count"] >= count)
    live.stop()
    return live


NOT_FOLLOWED = ("provider electricitymaps redirected to another host; not followed, the token "
                "stays with electricitymaps")


# -- redirects: the token stays with its host -------------------------------------------------
@pytest.mark.parametrize("other", ["127.0.0.2", "127.0.0.1"])
def test_a_redirect_to_another_origin_is_not_followed(servers, other, caplog):
    """Another host (127.0.0.2), or the same host on another port: neither gets the token."""
    caplog.set_level(logging.DEBUG)
    evil = servers(lambda h: send_json(h, {"zone": "DE", "carbonIntensity": 999}), host=other)
    good = servers(lambda h: redirect(h, evil.url + h.path))
    live = fetched(emaps(good.url))
    assert len(good.requests) == 1 and good.saw_token()   # the token went to its own host
    assert evil.requests == [] and not evil.saw_token()
    [p] = live.periods()
    assert p.fallback and p.gco2_per_kwh == resolve_factor("DE").gco2_per_kwh != 999
    assert p.note.startswith(f"electricitymaps:DE: {NOT_FOLLOWED}; offline annual factor")
    status = live.status()
    assert status["last_error"] == NOT_FOLLOWED
    shown = caplog.text + json.dumps(status) + repr(live) + json.dumps(p.to_dict())
    assert TOKEN not in shown and NOT_FOLLOWED in caplog.text


def test_a_redirect_after_a_good_value_keeps_that_value(servers):
    evil = servers(lambda h: send_json(h, {"zone": "DE", "carbonIntensity": 999}),
                   host="127.0.0.2")

    def route(h: Any) -> None:
        if len(good.requests) == 1:
            send_json(h, EMAPS_ANSWER)
        else:
            redirect(h, evil.url + h.path, status=307)

    good = servers(route)
    live = fetched(emaps(good.url, refresh_s=0.01), count=3)
    assert evil.requests == []
    assert [(p.gco2_per_kwh, p.fallback) for p in live.periods()] == [(302.0, False)]
    assert live.status()["last_error"] == NOT_FOLLOWED


def test_a_same_origin_redirect_is_followed(servers):
    def route(h: Any) -> None:
        if h.path.startswith("/old"):
            redirect(h, h.path.replace("/old", "/v3", 1), status=301)   # a relative Location
        else:
            send_json(h, EMAPS_ANSWER)

    server = servers(route)
    live = fetched(LiveIntensity("electricitymaps", "DE", resolve_factor("DE"), token=TOKEN,
                                 base_url=server.url + "/old", retries=0))
    assert [r["path"].split("?")[0] for r in server.requests] == ["/old/carbon-intensity/latest",
                                                                 EMAPS]
    assert server.requests[1]["headers"].get("auth-token") == TOKEN
    assert "zone=DE" in server.requests[1]["path"]
    assert [p.gco2_per_kwh for p in live.periods()] == [302.0]


def test_a_redirect_loop_on_one_origin_ends(servers):
    server = servers(lambda h: redirect(h, h.path))
    live = fetched(emaps(server.url))
    assert len(server.requests) == carbon_http.MAX_REDIRECTS + 1
    assert live.status()["last_error"] == (
        f"provider electricitymaps: more than {carbon_http.MAX_REDIRECTS} redirects; "
        "not followed")


def test_a_tokenless_provider_says_not_followed_without_a_token_clause(servers):
    evil = servers(lambda h: send_json(h, UK), host="127.0.0.2")
    good = servers(lambda h: redirect(h, evil.url + h.path))
    live = fetched(LiveIntensity("uk", None, resolve_factor("GB"), base_url=good.url,
                                 retries=0))
    assert evil.requests == []
    assert live.status()["last_error"] == "provider uk redirected to another host; not followed"


def test_metadata_token_is_not_sent_to_another_host(servers):
    """region="auto": the IMDSv2 session token is a credential too."""
    evil = servers(lambda h: send_json(h, "us-east-1"), host="127.0.0.2")

    def route(h: Any) -> None:
        if h.command == "PUT" and h.path == "/aws/latest/api/token":
            body = TOKEN.encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        elif h.path.startswith("/aws/"):
            redirect(h, evil.url + h.path)
        else:
            send_json(h, {}, status=404)

    server = servers(route)
    urls = {c: f"{server.url}/{c}" for c in ("aws", "gcp", "azure")}
    with pytest.raises(ConfigError) as err:
        detect_region(timeout_s=2.0, base_urls=urls)
    assert evil.requests == []
    assert "aws: redirected to another host; not followed" in str(err.value)
    assert TOKEN not in str(err.value)


def test_a_tracked_run_with_a_redirecting_provider_keeps_the_token_out_of_every_file(
        servers, fake_h100, tmp_path, caplog):
    from tracker import track

    caplog.set_level(logging.DEBUG)
    evil = servers(lambda h: send_json(h, {"zone": "DE", "carbonIntensity": 999}),
                   host="127.0.0.2")
    good = servers(lambda h: redirect(h, evil.url + h.path))
    with track("redirected", region="DE", live_intensity="electricitymaps:DE",
               intensity_token=TOKEN, intensity_base_url=good.url + "/v3",
               output_dir=tmp_path, cpu=False, ram=False, rate_hz=50) as run:
        wait_for(lambda: good.requests)
        time.sleep(0.3)
    summary = run.summary.to_dict()
    assert evil.requests == []
    assert run.summary.gco2_per_kwh == pytest.approx(resolve_factor("DE").gco2_per_kwh)
    assert summary["carbon"]["live"]["last_error"].startswith(
        "provider electricitymaps redirected to another host; not followed")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in json.dumps(summary) and TOKEN not in caplog.text
    assert TOKEN not in repr(run._live)


def test_status_shows_the_base_url_without_credentials_or_query():
    live = LiveIntensity("uk", None, resolve_factor("GB"),
                         base_url=f"http://user:{TOKEN}@127.0.0.1:9/api?key={TOKEN}")
    assert live.status()["base_url"] == "http://127.0.0.1:9/api"
    assert TOKEN not in json.dumps(live.status()) and TOKEN not in repr(live)


# -- size caps and one deadline ---------------------------------------------------------------
MEMORY_PROBE = textwrap.dedent("""
    import json, sys, time
    from tracker.carbon import LiveIntensity, resolve_factor
    live = LiveIntensity("uk", None, resolve_factor("GB"), base_url=sys.argv[1], retries=0,
                         timeout_s=5)
    live.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = live.status()
        if s["ok_count"] + s["error_count"]:
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    live.stop()
    stop_s = time.monotonic() - t0
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
                  if line.startswith("VmHWM:"))
    [p] = live.periods()
    print(json.dumps({"hwm_mb": hwm_kb / 1024, "stop_s": stop_s, "fallback": p.fallback,
                      "value": p.gco2_per_kwh, "error": live.status()["last_error"]}))
""")

GB = 1_500_000_000


@pytest.mark.parametrize(("total", "declared"), [(GB, True), (GB, False), (float("inf"), False)],
                         ids=["1.5GB-content-length", "1.5GB-chunked", "endless-chunked"])
def test_a_huge_or_endless_body_is_capped_in_a_subprocess(servers, total, declared):
    server = servers(lambda h: stream(server, h, total, declared=declared))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, server.url], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"peak RSS {got['hwm_mb']:.1f} MiB, stop() {got['stop_s']:.3f} s, "
          f"server sent {server.sent_bytes / 2**20:.1f} MiB")
    assert got["hwm_mb"] < 200
    assert got["stop_s"] <= 2.0
    assert got["fallback"] and got["value"] == resolve_factor("GB").gco2_per_kwh
    assert "response larger than 1048576 bytes" in got["error"]
    assert server.sent_bytes < 64 * 2**20   # the client hung up: nothing like 1.5 GB went out


def test_the_cap_counts_decoded_bytes(servers):
    """A gzip body of 10 MiB of zeros is ~10 KiB on the wire: the cap is on what it inflates to."""
    import gzip

    packed = gzip.compress(b"0" * (10 * 2**20))

    def route(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(packed)))
        h.end_headers()
        h.wfile.write(packed)

    server = servers(route)
    with requests.Session() as s, pytest.raises(carbon_http.FetchError) as err:
        carbon_http.fetch(s, server.url, timeout_s=5)
    assert err.value.kind == "too_large"
    small = gzip.compress(json.dumps(UK).encode())

    def small_route(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(small)))
        h.end_headers()
        h.wfile.write(small)

    server.route = small_route
    with requests.Session() as s:
        assert carbon_http.fetch(s, server.url, timeout_s=5).json() == UK


def test_a_trickling_body_hits_the_overall_deadline(servers):
    """A byte every 50 ms never trips a per-read timeout; the 1 s budget is for the whole."""
    server = servers(lambda h: stream(server, h, 10_000, declared=True, chunk=1, pause_s=0.05))
    live = LiveIntensity("uk", None, resolve_factor("GB"), base_url=server.url, retries=0,
                         timeout_s=1)
    t0 = time.monotonic()
    live.start()
    wait_for(lambda: live.status()["error_count"] == 1)
    took = time.monotonic() - t0
    live.stop()
    assert took < 4   # 1 s budget; generous for a loaded machine, far below 10_000 * 50 ms
    assert live.status()["last_error"] == "timeout (1 s) after 1 try"
    wait_for(server.finished.is_set)   # and the connection was closed: the server noticed
    assert live.periods()[0].fallback


def test_trickling_headers_hit_the_overall_deadline(servers):
    def route(h: Any) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not server.closing.is_set():
            h.wfile.write(b"X")   # one endless header line, a byte at a time
            h.wfile.flush()
            time.sleep(0.05)

    server = servers(route)
    with requests.Session() as s:
        t0 = time.monotonic()
        with pytest.raises(carbon_http.FetchError) as err:
            carbon_http.fetch(s, server.url, timeout_s=0.5)
        assert time.monotonic() - t0 < 3
    assert err.value.kind == "timeout"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_stop_is_fast_while_a_provider_trickles_endlessly(servers, declared):
    server = servers(lambda h: stream(server, h, float("inf") if not declared else 100_000,
                                      declared=declared, chunk=1, pause_s=0.05))
    live = LiveIntensity("uk", None, resolve_factor("GB"), base_url=server.url, retries=2,
                         timeout_s=5)
    live.start()
    wait_for(lambda: server.sent_bytes >= 3)   # the body is on its way
    t0 = time.monotonic()
    live.stop()
    assert time.monotonic() - t0 <= 2.0
    assert not live.status()["running"]
    [p] = live.periods()
    assert p.fallback and p.end_wall is not None
    wait_for(server.finished.is_set)   # the worker closed the connection


def test_a_failure_is_noted_once(servers, caplog):
    caplog.set_level(logging.WARNING, logger="tracker.carbon.live")
    server = servers(lambda h: stream(server, h, 2 * 2**20, declared=False))
    live = fetched(LiveIntensity("uk", None, resolve_factor("GB"), base_url=server.url,
                                 retries=0, refresh_s=0.01), count=3)
    assert live.status()["error_count"] >= 3 and len(server.requests) >= 3
    warnings = [r for r in caplog.records if "response larger than" in r.getMessage()]
    assert len(warnings) == 1


def test_max_bytes_is_checked():
    with pytest.raises(ConfigError, match="max_bytes must be an integer >= 1, got 0"):
        LiveIntensity("uk", None, resolve_factor("GB"), max_bytes=0)


# -- strict JSON and plausible values ---------------------------------------------------------
@pytest.mark.parametrize(("body", "error"), [
    ('{"zone": "DE", "carbonIntensity": NaN}', "malformed JSON in the response (non-finite "
                                               "number NaN in the JSON)"),
    ('{"zone": "DE", "carbonIntensity": Infinity}', "non-finite number Infinity"),
    ('{"zone": "DE", "carbonIntensity": 1e999}', "non-finite number 1e999"),
    ('{"zone": "DE", "carbonIntensity": 999999}',
     "unexpected response (intensity 999999 gCO2e/kWh is outside 0..2000)"),
    ('{"zone": "DE", "carbonIntensity": -5}',
     "unexpected response (intensity -5 gCO2e/kWh is outside 0..2000)"),
    ('{"zone": "DE", "carbonIntensity": 1' + "0" * 400 + "}",
     "unexpected response (intensity inf gCO2e/kWh is outside 0..2000)"),
    ('{"zone": "DE", "carbonIntensity": "302"}',
     "unexpected response (intensity is not a number (got a str))"),
    ("[" * 100_000 + "]" * 100_000, "malformed JSON in the response (JSON nested too deeply)"),
])
def test_bad_numbers_are_refused_with_a_note(servers, body, error):
    server = servers(lambda h: send_json(h, body))
    live = fetched(emaps(server.url))
    [p] = live.periods()
    assert p.fallback and error in p.note
    assert error in live.status()["last_error"]


def test_parse_json_is_strict():
    assert carbon_http.parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    for bad in (b"NaN", b"-Infinity", b"[1e400]", b"\xff\xfe{", b"{"):
        with pytest.raises(ValueError):
            carbon_http.parse_json(bad)


def test_same_origin_and_safe_url():
    assert carbon_http.same_origin("http://127.0.0.1/a", "http://127.0.0.1:80/b?x=1")
    assert carbon_http.same_origin("HTTPS://Example.org/a", "https://example.org:443/")
    assert not carbon_http.same_origin("http://127.0.0.1/a", "http://127.0.0.2/a")
    assert not carbon_http.same_origin("http://127.0.0.1:8080/", "http://127.0.0.1:8081/")
    assert not carbon_http.same_origin("https://h/", "http://h/")
    assert carbon_http.safe_url("https://u:p@h.example:8443/v3?token=x#f") == (
        "https://h.example:8443/v3")

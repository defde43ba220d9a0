"""Opt-in live grid intensity: poll one provider on a daemon thread, keep intensity periods.

Providers come from the registry in `tracker.carbon.providers`: built in are `uk` (UK Carbon
Intensity API, no key), `electricitymaps` (token) and `energidataservice` (Energinet, DK1/DK2,
no key); plugins add more through the `energy_tracker.carbon_providers` entry point. Any
failure falls back to the run's annual factor, and the period says why. Tokens never leave this
module except in the request a provider builds (its header), sent through `http.fetch`, which
follows no redirect to another origin and bounds every answer in size and time.

Periods are placed on the run's monotonic clock (`t`, seconds since the run started): a wall
clock stepped by NTP or by hand during a run must not move, merge or drop them. Their
`start_wall`/`end_wall` are the run's start wall time plus `t` (what every reader of a run
subtracts the run's start from); the wall clock read when a value arrived is kept only as a
label, `received_wall`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import requests

from ..errors import ConfigError
from . import http
from .gridfactor import GridFactor
from .providers import PROVIDERS, Provider, Reading, plausible
from .providers import get as get_provider
from .providers.electricitymaps import TOKEN_ENV

log = logging.getLogger(__name__)

__all__ = ["PROVIDERS", "TOKEN_ENV", "IntensityPeriod", "LiveIntensity", "make_live_intensity"]

MAX_TIMEOUT_S = 5.0
STOP_WAIT_S = 1.0   # the most stop() waits for an HTTP call in flight


@dataclass(frozen=True)
class IntensityPeriod:
    """A span of a run with one grid intensity.

    start_t/end_t: run seconds on the monotonic run clock (None in logs written before they
    existed, and before a run starts); start_wall/end_wall (Unix s): the run's start wall time
    plus those run seconds, so a wall-clock step never moves a period (older logs hold the wall
    clock read at the time). end_* is None while the period is still open. received_wall: the
    wall clock when the value arrived, a label only. fallback=True: the annual factor was used
    because no live value was available; `note` says why.
    """

    start_wall: float
    end_wall: Optional[float]
    gco2_per_kwh: float
    provider: str
    zone: str
    fallback: bool
    note: str = ""
    start_t: Optional[float] = None
    end_t: Optional[float] = None
    received_wall: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntensityPeriod:
        def opt(key: str) -> Optional[float]:
            value = d.get(key)
            return None if value is None else float(value)

        return cls(
            start_wall=float(d["start_wall"]),
            end_wall=opt("end_wall"),
            gco2_per_kwh=float(d["gco2_per_kwh"]),
            provider=str(d["provider"]),
            zone=str(d["zone"]),
            fallback=bool(d["fallback"]),
            note=str(d.get("note", "")),
            start_t=opt("start_t"),
            end_t=opt("end_t"),
            received_wall=opt("received_wall"),
        )


class _FetchError(Exception):
    """A failed fetch; the message is safe to show (never holds a token)."""


def _zone_of(provider: Provider, zone: Optional[str]) -> str:
    """The provider's canonical zone; a plugin's bug here is a ConfigError that says so."""
    try:
        normalised = provider.normalise_zone(zone)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"live intensity provider {provider.name!r} failed to read zone {zone!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(normalised, str):
        raise ConfigError(
            f"live intensity provider {provider.name!r} gave zone {normalised!r}, not a string."
        )
    return normalised


def _checked(reading: object) -> Reading:
    """A provider's reading, checked (TypeError/ValueError: an unexpected answer)."""
    if not isinstance(reading, Reading):
        raise TypeError(f"parse() gave a {type(reading).__name__}, not a Reading")
    plausible(reading.gco2_per_kwh)
    return reading


def _retry_after_s(header: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None if unusable."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LiveIntensity:
    """Polls one provider on a daemon thread and turns its answers into IntensityPeriods.

    start() returns at once; the first fetch happens on the thread. Until a value arrives, or
    whenever fetching fails and no recent value is known, the `fallback` annual factor is used
    and the period is marked fallback=True with the reason.
    """

    def __init__(
        self,
        provider: str,
        zone: Optional[str],
        fallback: GridFactor,
        *,
        refresh_s: float = 900,
        timeout_s: float = 5,
        retries: int = 2,
        token: Optional[str] = None,
        base_url: Optional[str] = None,
        cache_dir: Optional[Path] = None,
        on_update: Optional[Callable[[IntensityPeriod], None]] = None,
        clock: Callable[[], float] = time.time,
        run_clock: Optional[Callable[[], float]] = None,
        backoff_s: float = 1.0,
        max_retry_after_s: float = 60.0,
        max_age_s: float = 3600.0,
        max_bytes: int = http.MAX_BYTES,
    ):
        """`clock`: the wall clock (labels, cache ages, Retry-After dates). `run_clock`: run
        seconds on a monotonic clock, which places the periods (default: time.monotonic()
        from start(); the tracker passes its own run clock to start()). `max_bytes`: the
        largest answer read (a larger one is a failed fetch)."""
        self._provider: Provider = get_provider(provider)
        self.provider = provider
        self.zone = _zone_of(self._provider, zone)
        if not isinstance(fallback, GridFactor):
            raise ConfigError("fallback must be a GridFactor (see resolve_factor()).")
        self.fallback = fallback
        needs_token, token_env = self._provider.needs_token, self._provider.token_env
        if not token and needs_token and token_env:
            token = os.environ.get(token_env)
        if needs_token and not token:
            where = (f"pass token= or set the {token_env} environment variable" if token_env
                     else "pass token=")
            token_url = self._provider.token_url
            get_one = f" (get one at {token_url})" if token_url else ""
            raise ConfigError(f"{provider} needs an API token: {where}{get_one}.")
        self._token = token or None
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ConfigError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}] s, got {timeout_s!r}.")
        if not refresh_s > 0:
            raise ConfigError(f"refresh_s must be > 0, got {refresh_s!r}.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {retries!r}.")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ConfigError(f"max_bytes must be an integer >= 1, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self.refresh_s = float(refresh_s)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.max_age_s = float(max_age_s)
        url_env = self._provider.base_url_env
        url = base_url or (os.environ.get(url_env) if url_env else None) or ""
        self.base_url = (url or self._provider.default_base_url).rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._on_update = on_update
        self._clock = clock
        self._run_clock = run_clock

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._session: Optional[requests.Session] = None
        self._start_wall: Optional[float] = None
        self._periods: list[IntensityPeriod] = []
        self._fetch_count = 0
        self._ok_count = 0
        self._error_count = 0
        self._last_error: Optional[str] = None
        self._last_good: Optional[tuple[float, float, str]] = None  # value, run t, observed
        self._cache_used: Optional[str] = None
        self._logged_errors: set[str] = set()

    def __repr__(self) -> str:
        token = ", token=***" if self._token else ""
        return f"LiveIntensity(provider={self.provider!r}, zone={self.zone!r}{token})"

    @property
    def spec(self) -> str:
        """"uk", "uk:13", "electricitymaps:DE": the provider, and the zone unless it is the
        provider's default."""
        if not self.zone or self.zone == self._provider.default_zone:
            return self.provider
        return f"{self.provider}:{self.zone}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, start_wall: Optional[float] = None,
              run_clock: Optional[Callable[[], float]] = None) -> LiveIntensity:
        """Start polling on a daemon thread; returns at once. `start_wall` (Unix s): when the
        tracked run began, so the first value fetched covers it from its very start.
        `run_clock`: the run's monotonic clock (seconds since `start_wall`), so periods sit
        on the same `t` as the run's samples."""
        with self._lock:
            if self._thread is not None:
                return self
            self._start_wall = self._clock() if start_wall is None else start_wall
            if run_clock is not None:
                self._run_clock = run_clock
            elif self._run_clock is None:
                origin = time.monotonic()
                self._run_clock = lambda: time.monotonic() - origin
            self._session = requests.Session()
            self._thread = threading.Thread(
                target=self._run, name=f"energy-tracker-live-{self.provider}", daemon=True
            )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and close the open period; safe to call twice."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A request in flight returns within ~50 ms of stop (http.fetch gives up on its
            # worker, which closes the connection at its next read); the join is bounded by
            # STOP_WAIT_S anyway, and a late answer is then ignored (see _set_value).
            thread.join(timeout=min(STOP_WAIT_S, self.timeout_s + 1.0))
        with self._lock:
            if not self._periods and self._start_wall is not None:
                # nothing arrived: the run ends on the annual factor, closed like any period
                reason = self._last_error or "no value fetched yet"
                self._periods.append(self._fallback_period(0.0, self._start_wall, reason))
            if self._periods and self._periods[-1].end_wall is None:
                self._periods[-1] = self._closed(self._periods[-1], self._now_t())
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> LiveIntensity:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results -----------------------------------------------------------------------------

    def periods(self) -> list[IntensityPeriod]:
        """A copy of the intensity periods so far (one fallback period if nothing arrived)."""
        with self._lock:
            if self._periods:
                return list(self._periods)
            reason = self._last_error or "no value fetched yet"
            if self._start_wall is None:   # not started: no run clock yet
                return [self._fallback_period(None, self._clock(), reason)]
            return [self._fallback_period(0.0, self._start_wall, reason)]

    def status(self) -> dict[str, Any]:
        """What happened, for the run summary (never includes the token)."""
        periods = self.periods()
        with self._lock:
            last = self._last_good
            return {
                "provider": self.provider,
                "zone": self.zone,
                "base_url": http.safe_url(self.base_url),
                "fetch_count": self._fetch_count,
                "ok_count": self._ok_count,
                "error_count": self._error_count,
                "last_error": self._last_error,
                "last_gco2_per_kwh": last[0] if last else None,
                "last_observed": last[2] if last else None,
                "cache": self._cache_used,
                "fallback_used": any(p.fallback for p in periods),
                "fallback_factor": self.fallback.label,
                "running": self._thread is not None and not self._stop.is_set(),
            }

    # -- the polling thread ------------------------------------------------------------------

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                if not (first and self._use_fresh_cache()):
                    self._poll_once()
            except Exception as exc:  # the one catch-all of this thread: record, fall back
                self._record_failure(f"internal error ({type(exc).__name__})")
            first = False
            if self._stop.wait(self.refresh_s):
                break

    def _poll_once(self) -> None:
        with self._lock:
            self._fetch_count += 1
        try:
            reading, payload = self._fetch()
        except _FetchError as exc:
            self._record_failure(str(exc))
            return
        now = self._clock()
        with self._lock:
            t = self._now_t()
            self._ok_count += 1
            self._last_error = None
            self._last_good = (reading.gco2_per_kwh, t, reading.observed)
            self._cache_used = None
            self._set_value(t, now, reading.gco2_per_kwh, False,
                            f"{self.spec} at {reading.observed}")
        self._write_cache(reading, payload, now)

    def _fetch(self) -> tuple[Reading, Any]:
        url, params, headers = self._provider.request(self.base_url, self.zone, self._token)
        attempts = self.retries + 1
        last = "no attempt made"
        retry_after: Optional[float] = None
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                if retry_after is not None:
                    delay = min(retry_after, self.max_retry_after_s)
                if self._stop.wait(delay):
                    raise _FetchError(f"{last}; stopped before retry {attempt}")
            retry_after = None
            try:
                resp = self._get(url, params, headers)
            except http.FetchError as exc:
                if exc.kind == "timeout":
                    last = f"timeout ({self.timeout_s:g} s)"
                    continue
                if exc.kind == "connection":
                    last = str(exc)
                    continue
                if exc.kind == "redirect":
                    raise _FetchError(self._redirect_note(str(exc))) from None
                if exc.kind == "stopped":
                    raise _FetchError("stopped while a request was in flight") from None
                raise _FetchError(str(exc)) from None   # too large, busy: not retried
            status = resp.status
            if status == 429:
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
                last = "HTTP 429 (rate limited)"
                continue
            if status in (401, 403):
                hint = ""
                if self._provider.needs_token:
                    env = self._provider.token_env
                    hint = f"; check the token ({env})" if env else "; check the token"
                raise _FetchError(f"HTTP {status} (not authorised{hint})")
            if status >= 500:
                last = f"HTTP {status}"
                continue
            if status != 200:
                raise _FetchError(f"HTTP {status}")
            try:
                payload = resp.json()
            except ValueError as exc:
                raise _FetchError(f"malformed JSON in the response ({exc})") from None
            try:
                return _checked(self._provider.parse(payload, self.zone)), payload
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise _FetchError(f"unexpected response ({exc})") from None
        tries = "try" if attempts == 1 else "tries"
        raise _FetchError(f"{last} after {attempts} {tries}")

    def _get(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]
             ) -> http.Response:
        """One bounded GET (see http.fetch): it returns within timeout_s, or as soon as
        stop() is called, whatever the server does."""
        session = self._session
        own = session is None
        if session is None:   # a fetch outside start()/stop()
            session = requests.Session()
        try:
            return http.fetch(session, url, params=params, headers=headers,
                              timeout_s=self.timeout_s, max_bytes=self.max_bytes,
                              stop=self._stop)
        finally:
            if own:
                session.close()

    def _redirect_note(self, what: str) -> str:
        name = self.provider
        if not what.startswith("redirected to another host"):
            return f"provider {name}: {what}"   # too many redirects on its own host
        keeps = f", the token stays with {name}" if self._token else ""
        return f"provider {name} redirected to another host; not followed{keeps}"

    def _record_failure(self, message: str) -> None:
        if self._stop.is_set():   # the run is ending: nothing to warn about
            log.debug("live grid intensity %s: %s", self.spec, message)
        elif message not in self._logged_errors:   # each distinct failure is noted once
            self._logged_errors.add(message)
            log.warning("live grid intensity %s: %s", self.spec, message)
        now = self._clock()
        with self._lock:
            t = self._now_t()
            self._error_count += 1
            self._last_error = message
            last = self._last_good
            if self._stop.is_set():
                return  # the run is ending: the periods stay as they are
            if last is not None and t - last[1] <= self.max_age_s:
                return  # keep the recent live value; status() shows the error
        cached = self._read_cache()
        with self._lock:
            t = self._now_t()
            # the cache is shared across processes: its age can only be told by the wall clock
            if cached is not None and now - cached["fetched_wall"] <= self.max_age_s:
                self._cache_used = "used after error"
                note = (
                    f"{self.spec}: {message}; cached value from {cached['observed']} "
                    f"(fetched {now - cached['fetched_wall']:.0f} s ago) used"
                )
                self._set_value(t, now, float(cached["gco2_per_kwh"]), False, note)
                return
            period = self._fallback_period(t, now, message)
            self._set_value(t, now, period.gco2_per_kwh, True, period.note)

    def _now_t(self) -> float:
        """Run seconds now (0.0 before start())."""
        return self._run_clock() if self._run_clock is not None else 0.0

    def _wall_at(self, t: float) -> float:
        """The wall time of run second `t`: the run's start plus `t`, whatever the wall clock
        has done since."""
        return (self._start_wall if self._start_wall is not None else self._clock()) + t

    def _closed(self, period: IntensityPeriod, t: float) -> IntensityPeriod:
        start_t = period.start_t if period.start_t is not None else 0.0
        end_t = max(t, start_t)
        d = period.to_dict()
        d["end_t"] = end_t
        d["end_wall"] = max(self._wall_at(end_t), period.start_wall)
        return IntensityPeriod.from_dict(d)

    def _fallback_period(self, t: Optional[float], wall: float, reason: str) -> IntensityPeriod:
        return IntensityPeriod(
            start_wall=wall if t is None else self._wall_at(t),
            end_wall=None,
            gco2_per_kwh=self.fallback.gco2_per_kwh,
            provider=self.provider,
            zone=self.zone,
            fallback=True,
            note=f"{self.spec}: {reason}; offline annual factor for {self.fallback.label} used",
            start_t=t,
            received_wall=wall,
        )

    def _set_value(self, t: float, wall: float, value: float, fallback: bool, note: str
                   ) -> None:
        """Start a new period at run second `t` when the value changes (`wall`: the wall
        clock now, a label); call with the lock held."""
        if self._stop.is_set() and self._periods and self._periods[-1].end_wall is not None:
            return   # the run has ended: an answer that came too late changes nothing
        current = self._periods[-1] if self._periods else None
        if current is not None and current.gco2_per_kwh == value and current.fallback == fallback:
            return
        if current is None:
            # the first answer stands for the whole run so far (fetched within timeout_s)
            start_t = 0.0
        else:
            start_t = max(t, current.start_t if current.start_t is not None else 0.0)
            self._periods[-1] = self._closed(current, start_t)
        period = IntensityPeriod(self._wall_at(start_t), None, value, self.provider, self.zone,
                                 fallback, note, start_t=start_t, received_wall=wall)
        self._periods.append(period)
        if self._on_update is not None:
            try:
                self._on_update(period)
            except Exception:  # a user callback must not stop the polling
                log.exception("on_update callback failed")

    # -- disk cache --------------------------------------------------------------------------

    def _cache_path(self) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.provider}-{self.zone}")
        return self.cache_dir / f"{safe}.json"

    def _write_cache(self, reading: Reading, payload: Any, now: float) -> None:
        path = self._cache_path()
        if path is None:
            return
        record = {
            "provider": self.provider,
            "zone": self.zone,
            "fetched_wall": now,
            "gco2_per_kwh": reading.gco2_per_kwh,
            "observed": reading.observed,
            "response": payload,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot write live intensity cache %s: %s", path, exc)

    def _read_cache(self) -> Optional[dict[str, Any]]:
        path = self._cache_path()
        if path is None or not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                return None
            plausible(record["gco2_per_kwh"])
            float(record["fetched_wall"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record

    def _use_fresh_cache(self) -> bool:
        """At start, a cached answer younger than refresh_s saves a request."""
        cached = self._read_cache()
        if cached is None:
            return False
        age = self._clock() - float(cached["fetched_wall"])
        if not 0 <= age < self.refresh_s:
            return False
        value = float(cached["gco2_per_kwh"])
        with self._lock:
            t = self._now_t()
            self._cache_used = "hit"
            # its age in run time: as old at this run's start as it was by the wall clock
            self._last_good = (value, t - age, str(cached["observed"]))
            note = f"{self.spec} at {cached['observed']} (cached {age:.0f} s ago)"
            self._set_value(t, self._clock(), value, False, note)
        return True


def make_live_intensity(
    spec: Optional[str], fallback: GridFactor, **kwargs: Any
) -> Optional[LiveIntensity]:
    """A (not yet started) LiveIntensity from "uk", "uk:13", "electricitymaps:DE",
    "energidataservice:DK1"; None for None."""
    if spec is None:
        return None
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"live intensity spec must look like 'uk', 'uk:13', 'electricitymaps:DE' or "
            f"'energidataservice:DK1', got {spec!r}."
        )
    provider, _, zone = spec.strip().partition(":")
    return LiveIntensity(provider.strip().lower(), zone.strip() or None, fallback, **kwargs)

"""The registry of live grid-intensity providers: built in (one module each) or plugged in.

`live_intensity="name:zone"` looks `name` up here. A provider is anything that satisfies
`Provider` (see `base.py`; subclassing `BaseProvider` gives the defaults): its name, where it
asks and whether it needs a token, how a zone is written, the one GET for the current value and
how the JSON answer becomes a `Reading`, and its source, licence and URL. Polling, retries,
rate limits, the cache, the fallback to the annual factor and keeping tokens out of logs are
`LiveIntensity`'s, the same for every provider.

Built-in providers are the modules next to this one (`uk`, `electricitymaps`,
`energidataservice`), each with a module-level `PROVIDER`. Third-party providers register
through the entry-point group `energy_tracker.carbon_providers`: the entry point is a provider,
a provider class, a list of them, or a callable returning either. Entry points are loaded on
the first lookup (and again, for ones not tried yet, when a name is not found); one that fails
to load or is not a usable provider is a logged note (`plugin_notes()`), never an exception.
`register()` adds one from code.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from ...errors import ConfigError
from . import electricitymaps, energidataservice, uk
from .base import BaseProvider, Provider, Reading, Request, plausible

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVIDERS",
    "BaseProvider",
    "Provider",
    "Reading",
    "Request",
    "describe",
    "get",
    "load_plugins",
    "names",
    "plausible",
    "plugin_notes",
    "register",
    "reload_plugins",
    "unregister",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "energy_tracker.carbon_providers"
BUILTIN = "built-in"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_TEXT_MEMBERS = ("default_base_url", "base_url_env", "token_env", "token_url", "source",
                 "licence", "url")
_METHODS = ("normalise_zone", "request", "parse")

_lock = threading.RLock()
_registry: dict[str, Provider] = {}
_registered_by: dict[str, str] = {}   # name -> "built-in", "register()" or the entry point
_tried: set[str] = set()              # entry points already loaded (or failed), "name = value"
_notes: list[str] = []
_plugins_looked_up = False


def _problem(provider: object) -> Optional[str]:
    """Why `provider` cannot be registered (None: it can)."""
    if isinstance(provider, type):
        return f"{provider.__name__} is a class; register an instance of it"
    name = getattr(provider, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (f"its name {name!r} is not a lower-case word (letters, digits, '_', '.', '-'; "
                "it is the part before ':' in live_intensity=)")
    lacking = [m for m in (*_TEXT_MEMBERS, "needs_token", "default_zone", *_METHODS)
               if not hasattr(provider, m)]
    if lacking:
        return (f"it lacks {', '.join(lacking)} (subclass "
                "tracker.carbon.providers.BaseProvider for the defaults)")
    member = {m: getattr(provider, m) for m in (*_TEXT_MEMBERS, "needs_token", "default_zone",
                                                *_METHODS)}
    bad = [m for m in _TEXT_MEMBERS if not isinstance(member[m], str)]
    if not isinstance(member["needs_token"], bool):
        bad.append("needs_token (a bool)")
    if member["default_zone"] is not None and not isinstance(member["default_zone"], str):
        bad.append("default_zone (a str or None)")
    bad += [f"{m}() (a method)" for m in _METHODS if not callable(member[m])]
    if bad:
        return f"wrong type of {', '.join(bad)}"
    return None


def register(provider: Provider, *, replace: bool = False, registered_by: str = "register()"
             ) -> Provider:
    """Add a provider (an instance) under its name; returns it. ConfigError if it is not a
    usable provider, or if the name is taken and `replace` is False."""
    problem = _problem(provider)
    if problem is not None:
        raise ConfigError(f"live intensity provider {provider!r} not registered: {problem}.")
    with _lock:
        taken = _registered_by.get(provider.name)
        if taken is not None and not replace:
            raise ConfigError(f"a live intensity provider named {provider.name!r} is already "
                              f"registered ({taken}); pass replace=True to replace it.")
        _registry[provider.name] = provider
        _registered_by[provider.name] = registered_by
    return provider


def unregister(name: str) -> Optional[Provider]:
    """Remove a provider; returns it (None if no provider has that name)."""
    with _lock:
        _registered_by.pop(name, None)
        return _registry.pop(name, None)


def get(name: str) -> Provider:
    """The provider called `name`. ConfigError naming the known ones (and a close match, and
    any plugin that failed to load) if there is none."""
    with _lock:
        _look_up_plugins()
        found = _registry.get(name)
        if found is None:
            load_plugins()   # an entry point installed since the first lookup
            found = _registry.get(name)
        if found is not None:
            return found
        known = sorted(_registry)
        notes = list(_notes)
    message = f"Unknown live intensity provider {name!r}. Known: {', '.join(known)}."
    close = difflib.get_close_matches(str(name).strip().lower(), known, n=1, cutoff=0.6)
    if close:
        message += f" Did you mean {close[0]!r}?"
    if notes:
        message += " Not loaded: " + "; ".join(notes) + "."
    raise ConfigError(message)


def names() -> list[str]:
    """The registered providers' names, sorted (plugins included)."""
    with _lock:
        _look_up_plugins()
        return sorted(_registry)


def describe(name: str) -> dict[str, Any]:
    """What a provider is, for listings: name, source, licence, url, token and base URL."""
    p = get(name)
    with _lock:
        by = _registered_by.get(name, "")
    return {"name": p.name, "source": p.source, "licence": p.licence, "url": p.url,
            "needs_token": p.needs_token, "token_env": p.token_env or None,
            "base_url": p.default_base_url, "base_url_env": p.base_url_env or None,
            "registered_by": by}


def plugin_notes() -> list[str]:
    """Why entry points of `energy_tracker.carbon_providers` were not used (so far)."""
    with _lock:
        return list(_notes)


# -- plugins ----------------------------------------------------------------------------------
def _look_up_plugins() -> None:
    global _plugins_looked_up
    if not _plugins_looked_up:
        _plugins_looked_up = True
        load_plugins()


def load_plugins() -> list[str]:
    """Load the entry points not tried yet; returns the notes of those that were not used."""
    new: list[str] = []
    with _lock:
        try:
            from importlib.metadata import entry_points
            if sys.version_info >= (3, 10):
                eps = list(entry_points(group=ENTRY_POINT_GROUP))
            else:   # Python 3.9: a dict of groups
                eps = list(entry_points().get(ENTRY_POINT_GROUP, ()))
        except Exception as e:
            eps = []
            new.append(f"listing entry points failed: {_err(e)}")
        for ep in sorted(eps, key=lambda e: (e.name, e.value)):
            key = f"{ep.name} = {ep.value}"
            if key in _tried:
                continue
            _tried.add(key)
            where = f"entry point {ep.name!r} ({ep.value})"
            try:
                found = _providers_in(ep.load())
            except Exception as e:
                new.append(f"carbon provider plugin {where} not used: {_err(e)}")
                continue
            for p in found:
                problem = _problem(p)
                if problem is None and p.name in _registry:
                    problem = (f"a provider named {p.name!r} is already registered "
                               f"({_registered_by.get(p.name)})")
                if problem is not None:
                    new.append(f"carbon provider plugin {where} not used: {problem}")
                    continue
                _registry[p.name] = p
                _registered_by[p.name] = where
        _notes.extend(new)
    for note in new:
        log.warning("%s", note)
    return new


def reload_plugins() -> list[str]:
    """Forget every provider that came from an entry point and look again (after installing
    or removing a plugin in a running process); returns the notes."""
    with _lock:
        for name in [n for n, by in _registered_by.items() if by.startswith("entry point")]:
            unregister(name)
        _tried.clear()
        _notes.clear()
        return load_plugins()


def _providers_in(obj: Any) -> list[Any]:
    """The providers an entry point gives: one, a class (instantiated), a list, or a callable
    returning one of those."""
    if isinstance(obj, type) or (callable(obj) and _problem(obj) is not None):
        obj = obj()
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    if not items:
        raise TypeError("it gives no provider")
    return items


def _err(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"


class _RegistryView(Mapping[str, Provider]):
    """A read-only mapping of the registry (name -> provider), plugins included."""

    def __getitem__(self, name: str) -> Provider:
        with _lock:
            _look_up_plugins()
            return _registry[name]

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())

    def __repr__(self) -> str:
        return f"PROVIDERS({', '.join(names())})"


PROVIDERS: Mapping[str, Provider] = _RegistryView()

for _builtin in (uk.PROVIDER, electricitymaps.PROVIDER, energidataservice.PROVIDER):
    register(_builtin, registered_by=BUILTIN)

"""The exporters' options, checked without starting anything: the `log_to=` names (the
registry of tools, `register()` for more), `log_every_steps=` and `log_min_interval_s=`.

Below the configuration, which checks these options through this module at construction
(tracker/config.py imports nothing above it); the hub in `tracker.exporters` builds on it.
It imports no exporter module statically (a registered tool's class is imported by name, to
ask whether its library is installed), and never a tool's library.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Optional, Union

from ..errors import ConfigError

__all__ = ["AUTO", "DEFAULT_EVERY_STEPS", "DEFAULT_MIN_INTERVAL_S", "EXPORTER_MEMBERS",
           "check_every_steps", "check_log_to", "check_min_interval", "check_named_once",
           "known_names", "register", "resolve"]

DEFAULT_EVERY_STEPS = 50
DEFAULT_MIN_INTERVAL_S = 10.0


# name -> "module:Class", imported when a run asks for it. register() adds more.
_REGISTRY: dict[str, Union[str, Callable[[], Any]]] = {
    "mlflow": "tracker.exporters.mlflow:MlflowExporter",
    "wandb": "tracker.exporters.wandb:WandbExporter",
    "tensorboard": "tracker.exporters.tensorboard:TensorBoardExporter",
}
AUTO = "auto"


def register(name: str, factory: Callable[[], Any]) -> None:
    """Make `log_to=name` build `factory()` (an object with on_progress and on_stop)."""
    if not isinstance(name, str) or not name.strip() or name == AUTO:
        raise ConfigError(f"an exporter name must be a non-empty string other than 'auto', "
                          f"got {name!r}")
    _REGISTRY[name] = factory


def known_names() -> list[str]:
    return [*_REGISTRY, AUTO]


def _exporter_class(name: str) -> Any:
    spec = _REGISTRY[name]
    if not isinstance(spec, str):
        return spec
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)


# What an exporter object has (exporters.base.Exporter, a runtime-checkable Protocol: an
# isinstance check is these hasattr checks; spelt out so this module needs no exporter module)
EXPORTER_MEMBERS = ("name", "on_progress", "on_stop")


def resolve(log_to: Any) -> list[tuple[str, Any]]:
    """What `log_to=` asks for, item by item: ("auto", None), ("tool", its class or factory:
    its library looked for, not imported) or ("object", an exporter object); ConfigError
    naming the option, the value and what it accepts."""
    accepts = (f"log_to must be one of {', '.join(repr(n) for n in known_names())}, a list "
               "of them, or an exporter object with on_progress(metrics, step) and "
               "on_stop(summary, files)")
    if log_to is None or log_to is False:
        return []
    items = list(log_to) if isinstance(log_to, (list, tuple)) else [log_to]
    out: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            name = item.strip().lower()
            if name == AUTO:
                out.append((AUTO, None))
            elif name in _REGISTRY:
                cls = _exporter_class(name)
                if hasattr(cls, "check_available"):
                    cls.check_available()
                out.append(("tool", cls))
            else:
                import difflib
                close = difflib.get_close_matches(name, known_names(), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"log_to={log_to!r}: unknown tool {item!r}.{hint} {accepts}.")
        elif all(hasattr(item, m) for m in EXPORTER_MEMBERS):
            out.append(("object", item))
        else:
            raise ConfigError(f"log_to={log_to!r}: {accepts}; got {type(item).__name__} "
                              f"{item!r}.")
    return out


def check_named_once(log_to: Any, key: str, seen: set[str]) -> None:
    """ConfigError when `key` (an exporter's name) was already given in this log_to."""
    if key in seen:
        raise ConfigError(f"log_to={log_to!r} names {key!r} twice; name each tool once.")
    seen.add(key)


def check_log_to(log_to: Any) -> None:
    """ConfigError unless `log_to` names known tools whose libraries are installed, or is an
    exporter object: the configuration's check of the option (nothing is built and no tool's
    library imported; exporters.make_exporters builds them when the tracker is assembled)."""
    seen: set[str] = set()
    for kind, value in resolve(log_to):
        key = (AUTO if kind == AUTO else str(getattr(value, "name", repr(value))))
        check_named_once(log_to, key, seen)


def check_every_steps(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"log_every_steps must be a whole number of steps >= 1, or None to "
                          f"log at epoch ends only; got {value!r}")
    return value


def check_min_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0 <= value <= 86400:
        raise ConfigError(f"log_min_interval_s must be a number of seconds in [0, 86400] (the "
                          f"least time between two step-triggered logs); got {value!r}")
    return float(value)


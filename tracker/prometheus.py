"""Prometheus metrics of a running tracker (optional: `pip install 'trainjoule[prometheus]'`).

Metrics are computed when Prometheus scrapes, from the tracker's curves: nothing is added to the
sampler's work. The server listens on 127.0.0.1 unless another address is asked for.

In a distributed job every process serves only the devices it measures (its claims), on
`port + local rank` (several processes share a node), labelled `job` (the job id), `node` and
`rank`, so `sum by (job) (...)` is the job and `sum by (node) (...)` a machine. A run outside a
job is a job of one: `job` is its name, `rank` 0. Scrape with `honor_labels: true`, else
Prometheus renames our `job` to `exported_job` (its own `job` is the scrape job's name).

Where a whole-node meter is measured (component "node"), it is in
`energy_tracker_energy_joules` like any device, and the devices inside the machine (GPUs, CPU,
RAM) move to `energy_tracker_part_energy_joules{part_of="node"}`: the sum of the first is the
IT energy in every case, and the parts stay visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import ConfigError
from .run_view import RunView
from .sensors.base import INCLUDED_IN


def run_view(run: Any) -> RunView:
    """The read-only view the endpoint reads: `run` itself, or a Tracker's `view` (nothing
    here reads a Tracker's private parts, nor can change the run)."""
    view = run if isinstance(run, RunView) else getattr(run, "view", None)
    if not isinstance(view, RunView):
        raise TypeError(f"the Prometheus endpoint reads a run_view.RunView or a Tracker, got "
                        f"{type(run).__name__}")
    return view


def identity_labels(run: Any) -> tuple[str, str, str]:
    """(job, node, rank) of a run's process."""
    view = run_view(run)
    member = view.job
    if member is not None:
        ident = member.identity
        return ident.job_id, ident.node, str(ident.rank)
    import socket
    return view.name, (socket.gethostname() or "localhost").split(".")[0], "0"


def port_for(run: Any, port: int) -> int:
    """The port this process serves on: `port` plus its local rank in a job (0 = the OS
    picks a free port, as prometheus_client does)."""
    member = run_view(run).job
    local = member.identity.local_rank if member is not None else None
    return port + local if port and local else port


def serve(run: Any, port: int, addr: str = "127.0.0.1") -> Any:
    """Start an HTTP endpoint with the metrics of `run` (a RunView, or a Tracker: its view);
    returns the server (call .shutdown())."""
    view = run_view(run)
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as e:
        raise ConfigError("prometheus_port= needs prometheus-client: "
                          "pip install 'trainjoule[prometheus]'") from e
    registry = CollectorRegistry()
    registry.register(_Collector(view))
    port = port_for(view, port)
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise ConfigError(f"cannot serve Prometheus metrics on {addr}:{port}: {e.strerror or e}"
                          ) from e
    return server


class _Collector:
    """Reads the run's view at scrape time (thread-safe: curves lock their own reads)."""

    def __init__(self, run: Any):
        self.run = run_view(run)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        tr = self.run
        ident = list(identity_labels(tr))
        labels = ["job", "node", "rank", "run", "device", "component", "method"]
        energy = CounterMetricFamily("energy_tracker_energy_joules",
                                     "Energy measured per device since the run started (J)",
                                     labels=labels)
        power = GaugeMetricFamily("energy_tracker_power_watts",
                                  "Mean power per device over the last 2 s (W)", labels=labels)
        # Devices included in a whole-node meter are parts of its energy: their own families
        # (labelled with the meter), so that summing the main ones never counts them twice.
        part_energy = CounterMetricFamily(
            "energy_tracker_part_energy_joules", "Energy of a device whose energy is included "
            "in a whole-node meter's (J; not to be added to it)", labels=[*labels, "part_of"])
        part_power = GaugeMetricFamily(
            "energy_tracker_part_power_watts", "Mean power over the last 2 s of a device "
            "included in a whole-node meter (W)", labels=[*labels, "part_of"])
        until = tr.measured_until()
        for d in tr.devices:
            if d.curve.empty:
                continue
            key = [*ident, tr.name, d.sensor.name, d.sensor.component, d.sensor.method]
            part_of = (d.sensor.info.details or {}).get(INCLUDED_IN)
            e, w = (energy, power) if not part_of else (part_energy, part_power)
            if part_of:
                key.append(str(part_of))
            e.add_metric(key, d.curve.energy_at(until))
            recent_w = d.curve.recent_power_w(until)
            if recent_w is not None:
                w.add_metric(key, recent_w)
        yield energy
        yield power
        yield part_energy
        yield part_power
        grams = CounterMetricFamily("energy_tracker_emissions_grams",
                                    "CO2e of the facility energy so far (g), of the devices "
                                    "this process measures", labels=["job", "node", "rank", "run"])
        grams.add_metric([*ident, tr.name], tr.emissions_kg(0.0, until) * 1000.0)
        yield grams
        g = tr.factor
        factor = GaugeMetricFamily("energy_tracker_grid_gco2_per_kwh",
                                   "Annual grid factor of the run's region (gCO2e/kWh)",
                                   labels=["job", "node", "rank", "run", "region", "source",
                                           "year"])
        factor.add_metric([*ident, tr.name, g.region_code, g.source[:80], str(g.year or "")],
                          g.gco2_per_kwh)
        yield factor

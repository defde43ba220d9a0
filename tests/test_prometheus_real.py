"""The Prometheus endpoint scraped by a real Prometheus server (Debian's `prometheus`, on
loopback): the stored series carry job/node/rank labels, and the PromQL from the README gives the
run's energy and power. Skipped, with the reason printed, where the binary is missing
(scripts/ci_services.sh installs it); under CI=true that is a failure."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests
from services import require_service

from tracker import track

pytestmark = pytest.mark.slow
WATTS = 200.0   # the fake_gpu fixture's constant draw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path):
    """A Prometheus scraping 127.0.0.1:<port> every second; yields (port, query function)."""
    binary = shutil.which("prometheus")
    require_service("Prometheus", binary is not None,
                    "no `prometheus` binary (apt-get install prometheus; scripts/ci_services.sh)")
    assert binary is not None
    pytest.importorskip("prometheus_client")
    target, web = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    # honor_labels: our `job` label (the job id) wins over the scrape job's name
    config.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: energy-tracker
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{target}"]
""")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))

    def query(promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql, **({"time": at} if at is not None else {})}
        r = requests.get(f"http://127.0.0.1:{web}/api/v1/query", params=params, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    try:
        deadline = time.monotonic() + 30
        while True:   # bounded wait for the server to answer
            try:
                query("up")
                break
            except requests.RequestException as e:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("prometheus did not start: " + (
                        tmp_path / "prometheus.log").read_text()[-2000:]) from e
                time.sleep(0.2)
        yield target, query
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prometheus_scrapes_the_run(tmp_path, fake_gpu, prometheus):
    port, query = prometheus
    with track("scraped", sensors=fake_gpu, cpu=False, ram=False, rate_hz=50, region="FR",
               prometheus_port=port, output_dir=tmp_path / "runs", emissions_csv=False) as run:
        deadline = time.monotonic() + 40
        while True:   # six scrapes stored: rate() over 4 s then has points all through it
            got = query("count_over_time(energy_tracker_energy_joules_total[1m])")
            if got and float(got[0]["value"][1]) >= 6:
                break
            assert time.monotonic() < deadline, "no scrapes stored within 40 s"
            time.sleep(0.5)
        # the raw samples, with the time each scrape was made (an instant query's timestamp
        # is the evaluation time, up to a scrape interval later)
        (series,) = query("energy_tracker_energy_joules_total[30s]")
        at, value = series["values"][-1]
        stored = float(value)
        labels = series["metric"]
        # energy per job, as the README's PromQL sums it, at a time Prometheus stored
        (job,) = query("sum by (job) (energy_tracker_energy_joules_total)", at=at)
        (rate,) = query("sum by (job) (rate(energy_tracker_energy_joules_total[4s]))")
        (node_power,) = query("sum by (node) (energy_tracker_power_watts)")
        (grams,) = query("sum by (job) (energy_tracker_emissions_grams_total)")
        # wall time of run time 0, read off both clocks now (start_wall is taken a little
        # before the sampler's clock starts)
        wall0 = time.time() - run.clock()
        measured = run.energy_j(0.0, at - wall0)
    assert (labels["job"], labels["rank"], labels["device"]) == ("scraped", "0", "gpu0")
    assert labels["node"] and labels["method"] == "sampled"
    assert float(job["value"][1]) == stored
    # the scrape read E(t) up to its last reading (<= 1 tick of 20 ms before the sample time)
    assert stored == pytest.approx(measured, abs=WATTS * 0.1)
    assert float(rate["value"][1]) == pytest.approx(WATTS, rel=0.05)
    assert float(node_power["value"][1]) == pytest.approx(WATTS, rel=0.05)
    assert float(grams["value"][1]) > 0
    print(f"prometheus stored {stored:.1f} J (tracker: {measured:.1f} J), "
          f"rate {float(rate['value'][1]):.1f} W")

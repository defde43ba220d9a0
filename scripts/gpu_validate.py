"""Checks that need a real NVIDIA GPU, in one process, writing one JSON object.

0. meta: GPU names, driver, torch/CUDA versions; the NVML energy counter's update period (time
   between counter changes over ~1 s) and the cost of one counter read, one
   nvmlDeviceGetPowerUsage read and one instant-power field read (medians of 200 reads);
1. accuracy: two tracked runs with a varying GPU load (busy/idle phases, one window each):
   "counter" (the tracker's default: the NVML energy counter) and "sampled" (the tracker is
   shown a pynvml whose energy counter raises NotSupported, so it integrates power, while this
   script keeps reading the real counter). Per GPU and method: the tracker's J against the
   counter delta read directly around the run (just before start(), and in an on_stop hook right
   after the tracker's final reading); per phase window: the window's GPU energy against counter
   reads taken by this script at the window's edges;
2. hf: a small GPT-2 trained by a real transformers Trainer with EnergyCallback; the run's GPU
   J against counter reads at on_train_begin/on_train_end, and each epoch
   window's GPU energy against counter reads at on_epoch_begin/on_epoch_end (callbacks placed
   just before / just after EnergyCallback); the counter delta around train() for scale;
3. overhead: scripts/bench_overhead.py (step time with/without tracking, interleaved; sampler
   CPU; step-window cost; import time), with fewer repeats/steps when the budget is short.

Every section is guarded: a failing one records {"error": ...} and the others still run. The
JSON file is rewritten after each section and a "SECTION <name> ..." line printed, so a run cut
short still leaves the figures of the finished sections.
Usage (on the GPU machine):
  python scripts/gpu_validate.py --json $OUT/gpu_validate.json [--seconds 30] [--budget-s 420]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Optional

FI_DEV_POWER_INSTANT = 186


# -- direct NVML reads (the reference, outside the tracker) -----------------------------------
def counters_j(nvml: Any) -> list[float]:
    n = nvml.nvmlDeviceGetCount()
    return [nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(i))
            / 1000.0 for i in range(n)]


def wait_for_counter_tick(nvml: Any, timeout_s: float = 0.5) -> None:
    """Return right after GPU 0's counter advances, so its ~100 ms updates line up with an edge."""
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    first = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    give_up = time.monotonic() + timeout_s
    while nvml.nvmlDeviceGetTotalEnergyConsumption(h) == first and time.monotonic() < give_up:
        time.sleep(0.002)


def pct(value: Optional[float], ref: float) -> Optional[float]:
    if value is None or not ref:
        return None
    return (value - ref) / ref * 100


def _median_us(fn: Callable[[], Any], n: int = 200) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def meta(nvml: Any, nvml_error: str = "") -> dict:
    import torch

    out: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda,
                           "cuda_available": torch.cuda.is_available()}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except Exception as e:
        out["transformers"] = f"not importable: {e}"
    if nvml is None:  # the versions above still come back
        out["error"] = f"NVML unavailable: {nvml_error[:500]}"
        return out
    drv = nvml.nvmlSystemGetDriverVersion()
    out["driver"] = drv.decode() if isinstance(drv, bytes) else str(drv)
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    names = [nvml.nvmlDeviceGetName(h) for h in handles]
    out["gpus"] = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    h = handles[0]
    # counter update period: times at which GPU 0's counter changes over ~1 s of polling
    changes, last, t_end = [], nvml.nvmlDeviceGetTotalEnergyConsumption(h), time.monotonic() + 1.0
    polls = 0
    while time.monotonic() < t_end:
        v = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
        polls += 1
        if v != last:
            changes.append(time.monotonic())
            last = v
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    out["counter_update_period_ms"] = statistics.median(gaps) * 1000 if gaps else None
    out["counter_changes_in_1s"] = len(changes)
    out["counter_polls_in_1s"] = polls
    out["counter_read_us"] = _median_us(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h))
    out["power_usage_read_us"] = _median_us(lambda: nvml.nvmlDeviceGetPowerUsage(h))
    try:
        out["power_instant_field_read_us"] = _median_us(
            lambda: nvml.nvmlDeviceGetFieldValues(h, [FI_DEV_POWER_INSTANT]))
        field = nvml.nvmlDeviceGetFieldValues(h, [FI_DEV_POWER_INSTANT])[0]
        out["power_instant_w"] = (field.value.uiVal / 1000.0 if field.nvmlReturn == 0
                                  else f"nvmlReturn {field.nvmlReturn}")
    except Exception as e:
        out["power_instant_field_read_us"] = f"error: {e!r}"
    out["power_usage_w"] = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
    return out


# -- 1. accuracy ---------------------------------------------------------------------------------
class NoCounterNVML(types.ModuleType):
    """The real pynvml, except that the energy counter is NotSupported (as on pre-Volta GPUs)."""

    def __init__(self, real: Any):
        super().__init__("pynvml")
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._real.NVMLError(self._real.NVML_ERROR_NOT_SUPPORTED)


def tracked_load(method: str, seconds: float, out_dir: str, nvml: Any) -> dict:
    import torch

    from tracker import track

    cuda = torch.cuda.is_available()  # (CPU only for a dry run of this script)
    a = torch.randn(8192 if cuda else 256, 8192 if cuda else 256,
                    device="cuda" if cuda else "cpu", dtype=torch.bfloat16)
    scale = min(1.0, seconds / 15.0)  # short (dry) runs: shorter phases, still several windows
    busy_s, idle_s = 2.0 * scale, 0.7 * scale
    saved = sys.modules.get("pynvml")
    if method == "sampled":
        sys.modules["pynvml"] = NoCounterNVML(nvml)  # what the tracker imports from now on
    try:
        run = track(f"gpu-accuracy-{method}", output_dir=out_dir)  # sensors are found here
        after: list[float] = []
        run.on_stop(lambda _t: after.extend(counters_j(nvml)))  # right after the final reading
        edges: list[tuple[list[float], list[float]]] = []
        wait_for_counter_tick(nvml)
        before = counters_j(nvml)
        t_before = time.monotonic()
        with run:
            t_end = time.monotonic() + seconds
            phase = 0
            while time.monotonic() < t_end:
                e0 = counters_j(nvml)
                with run.window(f"phase {phase}"):
                    busy_until = time.monotonic() + (busy_s if phase % 2 == 0 else idle_s)
                    while time.monotonic() < busy_until:
                        if phase % 2 == 0:
                            a @ a
                            if cuda:  # keep the queue short, so phases last what they say
                                torch.cuda.synchronize()
                        else:
                            time.sleep(0.05 * scale)  # idle phase: power drops
                    if cuda:
                        torch.cuda.synchronize()
                    wait_for_counter_tick(nvml)  # so the end edge meets a fresh counter value
                e1 = counters_j(nvml)
                edges.append((e0, e1))
                phase += 1
    finally:
        if saved is not None:
            sys.modules["pynvml"] = saved
        else:
            sys.modules.pop("pynvml", None)
    ref_wall_s = time.monotonic() - t_before  # (after is read in on_stop: a little earlier)
    s = run.summary
    rows = []
    gpu_indices = []
    for d in (d for d in s.devices if d.component == "gpu"):
        i = d.details["index"]
        gpu_indices.append(i)
        ref = after[i] - before[i]
        rows.append({"gpu": d.name, "model": d.details.get("model"), "method": d.method,
                     "power_source": d.details.get("power_source"),
                     "tracker_j": d.energy_j, "nvml_delta_j": ref,
                     "error_pct": pct(d.energy_j, ref)})
    windows = []
    phase_windows = [w for w in s.windows if w.name.startswith("phase ")]
    for w, (e0, e1) in zip(phase_windows, edges):
        ref = sum(e1[i] - e0[i] for i in gpu_indices)
        got = w.by_component_j.get("gpu")
        windows.append({"name": w.name, "duration_s": w.duration_s, "tracker_gpu_j": got,
                        "nvml_edges_j": ref, "error_pct": pct(got, ref),
                        "method": w.method_by_component.get("gpu"),
                        "uncertainty_j": w.uncertainty_j})
    errs = [abs(w["error_pct"]) for w in windows if w["error_pct"] is not None]
    return {"method": method, "duration_s": s.duration_s, "ref_wall_s": ref_wall_s,
            "gpus": rows,
            "windows": windows, "windows_count": len(windows),
            "windows_gpu_j": sum(w["tracker_gpu_j"] or 0.0 for w in windows),
            "window_abs_error_pct_median": statistics.median(errs) if errs else None,
            "window_abs_error_pct_max": max(errs) if errs else None,
            "phase_s": [busy_s, idle_s], "run_dir": s.run_dir}


def accuracy(seconds: float, out_dir: str, nvml: Any) -> dict:
    out: dict[str, Any] = {}
    for method in ("counter", "sampled"):
        try:
            out[method] = tracked_load(method, seconds, out_dir, nvml)
        except Exception as e:
            out[method] = {"error": _error(e)}
    errors = [out[m]["error"] for m in out if "error" in out[m]]
    if errors:
        out["error"] = "; ".join(f"{m}: {out[m]['error'][:300]}" for m in out
                                 if "error" in out[m])
    return out


# -- 2. hf ----------------------------------------------------------------------------------------
def hf(out_dir: str, nvml: Any, deadline: float, epochs: int = 3) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tracker.integrations.huggingface import EnergyCallback

    edges: list[dict[str, list[float]]] = []
    stopped = {"early": False}

    run_edges: dict[str, list[float]] = {}

    class EpochBeginReader(TrainerCallback):  # placed before EnergyCallback
        def on_train_begin(self, args, state, control, **kwargs):
            run_edges["begin"] = counters_j(nvml)

        def on_epoch_begin(self, args, state, control, **kwargs):
            edges.append({"begin": counters_j(nvml)})

    class EpochEndReader(TrainerCallback):  # placed after EnergyCallback
        def on_train_end(self, args, state, control, **kwargs):
            run_edges["end"] = counters_j(nvml)

        def on_epoch_end(self, args, state, control, **kwargs):
            edges[-1]["end"] = counters_j(nvml)

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() > deadline:  # the section's budget: end the training cleanly
                stopped["early"] = True
                control.should_training_stop = True

    cuda = torch.cuda.is_available()
    size = (6, 512, 8000, 256, 8192) if cuda else (1, 32, 100, 16, 256)
    cfg = GPT2Config(n_layer=size[0], n_embd=size[1], n_head=8 if cuda else 2,
                     vocab_size=size[2], n_positions=size[3])
    model = GPT2LMHeadModel(cfg)
    data = [{"input_ids": ids, "labels": ids}
            for ids in torch.randint(0, cfg.vocab_size, (size[4], size[3]))]
    args = TrainingArguments(output_dir=out_dir, num_train_epochs=epochs,
                             per_device_train_batch_size=32, logging_steps=10, report_to=[],
                             save_strategy="no", bf16=cuda, disable_tqdm=True,
                             use_cpu=not cuda)
    cb = EnergyCallback("hf-gpu", output_dir=out_dir)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[EpochBeginReader(), cb, EpochEndReader()])
    wait_for_counter_tick(nvml)
    before = counters_j(nvml)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    after = counters_j(nvml)
    s = cb.summary
    gpu_indices = [d.details["index"] for d in s.devices if d.component == "gpu"]
    epoch_windows = [w for w in s.windows if w.kind == "epoch"]
    per_epoch = []
    for w, e in zip(epoch_windows, edges):
        got = w.by_component_j.get("gpu")
        ref = (sum(e["end"][i] - e["begin"][i] for i in gpu_indices) if "end" in e
               else float("nan"))
        per_epoch.append({"name": w.name, "duration_s": w.duration_s, "tracker_gpu_j": got,
                          "nvml_edges_j": ref, "error_pct": pct(got, ref)})
    epochs_gpu = [w.by_component_j.get("gpu", 0.0) for w in epoch_windows]
    around = sum(after[i] - before[i] for i in gpu_indices)
    ref = sum(run_edges["end"][i] - run_edges["begin"][i] for i in gpu_indices)
    epoch_refs = [e["nvml_edges_j"] for e in per_epoch]
    gpu_total = sum(d.energy_j or 0.0 for d in s.devices if d.component == "gpu")
    logged = [r for r in trainer.state.log_history if "energy_kwh" in r]
    return {"epochs": per_epoch, "epochs_gpu_j": epochs_gpu, "sum_epochs_j": sum(epochs_gpu),
            "sum_epochs_nvml_j": sum(epoch_refs),
            "sum_epochs_error_pct": pct(sum(epochs_gpu), sum(epoch_refs)),
            # the run: on_train_begin .. on_train_end, read just outside EnergyCallback's hooks
            "run_gpu_j": gpu_total, "nvml_delta_j": ref, "error_pct": pct(gpu_total, ref),
            "duration_s": s.duration_s,
            # trainer.train() as a whole also holds its setup before on_train_begin
            "nvml_around_train_j": around, "train_wall_s": wall,
            "stopped_early_for_budget": stopped["early"],
            "log_rows_with_energy": len(logged), "last_log": logged[-1] if logged else None,
            "run_dir": s.run_dir}


# -- 3. overhead ----------------------------------------------------------------------------------
def overhead(tmp: str, budget_s: float) -> dict:
    """bench_overhead.py in a subprocess, sized to the budget (the full run takes ~2-3 min)."""
    bench = Path(__file__).with_name("bench_overhead.py")
    if budget_s >= 200:
        sizing = ["--repeats", "9", "--steps", "3000"]
    elif budget_s >= 90:
        sizing = ["--repeats", "5", "--steps", "1000", "--quick"]
    else:
        sizing = ["--repeats", "3", "--steps", "200" if budget_s >= 30 else "50", "--quick"]
    out_json = f"{tmp}/overhead.json"
    try:
        res = subprocess.run([sys.executable, str(bench), "--json", out_json, *sizing],
                             capture_output=True, text=True, check=False,
                             timeout=max(budget_s, 10.0))
    except subprocess.TimeoutExpired as e:
        return {"error": f"timed out after {e.timeout:.0f} s", "args": sizing}
    if res.returncode != 0 or not Path(out_json).exists():
        return {"error": f"rc {res.returncode}: {res.stderr[-2000:]}", "args": sizing}
    result: dict = json.loads(Path(out_json).read_text())
    result["args"] = sizing
    return result


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="length of each accuracy run (counter, then sampled); default 30")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall-time budget for everything (s); sections shrink to fit")
    ap.add_argument("--json", default=None, help="write the JSON here (after each section too)")
    ap.add_argument("--skip", default="", help="comma list of: meta,accuracy,hf,overhead")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    t_start = time.monotonic()
    deadline = t_start + args.budget_s
    tmp = tempfile.mkdtemp(prefix="gpu_validate_")
    json_path = Path(args.json) if args.json else Path(tmp) / "gpu_validate.json"
    out: dict[str, Any] = {"budget_s": args.budget_s, "seconds": args.seconds,
                           "json": str(json_path), "sections_s": {}}

    def left() -> float:
        return deadline - time.monotonic()

    def section(name: str, fn: Callable[[], dict]) -> None:
        if name in skip:
            return
        t = time.monotonic()
        try:
            out[name] = fn()
        except Exception as e:
            out[name] = {"error": _error(e)}
        out["sections_s"][name] = round(time.monotonic() - t, 2)
        out["elapsed_s"] = round(time.monotonic() - t_start, 2)
        json_path.write_text(json.dumps(_finite(out), indent=1, default=str))
        status = "error" if "error" in out[name] else "ok"
        print(f"SECTION {name} {status} {out['sections_s'][name]} s "
              f"{json.dumps(_finite(out[name]), default=str)[:1500]}", flush=True)

    nvml: Any = None
    try:
        import pynvml  # the validator's own reference: the sampled run hides only the tracker's
        pynvml.nvmlInit()
        nvml = pynvml
    except Exception as e:
        out["nvml_error"] = _error(e)

    def need_nvml() -> Any:
        if nvml is None:
            raise RuntimeError(f"NVML unavailable: {out.get('nvml_error', '')[:300]}")
        return nvml

    section("meta", lambda: meta(nvml, out.get("nvml_error", "")))
    # shares of what is left: accuracy ~2 x seconds (capped at 40% of it), hf up to 35%
    seconds = max(1.0, min(args.seconds, left() * 0.2))
    section("accuracy", lambda: accuracy(seconds, tmp, need_nvml()))
    section("hf", lambda: hf(tmp, need_nvml(), deadline=time.monotonic() + left() * 0.55))
    section("overhead", lambda: overhead(tmp, left() - 5.0))
    out["elapsed_s"] = round(time.monotonic() - t_start, 2)
    text = json.dumps(_finite(out), indent=1, default=str)
    json_path.write_text(text)
    print(text)
    print(f"JSON written to {json_path}")


if __name__ == "__main__":
    main()

"""Checks that need a real NVIDIA GPU, in one process, printing one JSON object.

1. accuracy: a ~30 s tracked run with a varying GPU load; the tracker's GPU energy against the
   NVML energy counter read directly (outside the tracker) just before start() and just after
   the tracker's final reading (an on_stop hook);
2. hf: a small GPT-2 trained by a real transformers Trainer on the GPU with EnergyCallback; the
   sum of its per-epoch GPU energies against the counter delta read around trainer.train();
3. overhead: scripts/bench_overhead.py (step time with/without tracking, interleaved; sampler
   CPU; step-window cost; import time).
Usage (on the GPU machine): python scripts/gpu_validate.py [--seconds 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def counters_j(pynvml) -> list[float]:
    n = pynvml.nvmlDeviceGetCount()
    return [pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
            / 1000.0 for i in range(n)]


def wait_for_counter_tick(pynvml) -> None:
    """Start right after the counter advances, so its ~100 ms updates line up at both ends."""
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    first = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    while pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == first:
        time.sleep(0.002)


def accuracy(seconds: float, out_dir: str) -> dict:
    import pynvml
    import torch

    from tracker import track

    pynvml.nvmlInit()
    cuda = torch.cuda.is_available()  # (CPU only for a dry run of this script)
    a = torch.randn(8192 if cuda else 256, 8192 if cuda else 256,
                    device="cuda" if cuda else "cpu", dtype=torch.bfloat16)
    run = track("gpu-accuracy", output_dir=out_dir)  # sensors are found here, not in start()
    after: list[float] = []
    run.on_stop(lambda _t: after.extend(counters_j(pynvml)))  # right after the final reading
    wait_for_counter_tick(pynvml)
    before = counters_j(pynvml)
    with run:
        t_end = time.monotonic() + seconds
        phase = 0
        while time.monotonic() < t_end:
            with run.window(f"phase {phase}"):
                busy_until = time.monotonic() + (2.0 if phase % 2 == 0 else 0.7)
                while time.monotonic() < busy_until:
                    if phase % 2 == 0:
                        a @ a
                    else:
                        time.sleep(0.05)  # idle phase: power drops
                if cuda:
                    torch.cuda.synchronize()
            phase += 1
    s = run.summary
    gpus = [d for d in s.devices if d.component == "gpu"]
    rows = []
    for d in gpus:
        i = d.details["index"]
        ref = after[i] - before[i]
        rows.append({"gpu": d.name, "model": d.details.get("model"), "method": d.method,
                     "tracker_j": d.energy_j, "nvml_delta_j": ref,
                     "error_pct": (d.energy_j - ref) / ref * 100})
    windows_j = sum(w.by_component_j.get("gpu", 0.0) for w in s.windows)
    return {"duration_s": s.duration_s, "gpus": rows, "windows": len(s.windows),
            "windows_gpu_j": windows_j, "run_dir": s.run_dir}


def hf(out_dir: str, epochs: int = 3) -> dict:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pynvml
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from tracker.integrations.huggingface import EnergyCallback

    pynvml.nvmlInit()
    cuda = torch.cuda.is_available()
    size = (6, 512, 8000, 256, 8192) if cuda else (1, 32, 100, 16, 64)
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
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    wait_for_counter_tick(pynvml)
    before = counters_j(pynvml)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    after = counters_j(pynvml)
    s = cb.summary
    epochs_gpu = [w.by_component_j.get("gpu", 0.0) for w in s.windows if w.kind == "epoch"]
    ref = sum(after[d.details["index"]] - before[d.details["index"]]
              for d in s.devices if d.component == "gpu")
    logged = [r for r in trainer.state.log_history if "energy_kwh" in r]
    return {"epochs_gpu_j": epochs_gpu, "sum_epochs_j": sum(epochs_gpu), "nvml_delta_j": ref,
            "error_pct": (sum(epochs_gpu) - ref) / ref * 100, "train_wall_s": wall,
            "log_rows_with_energy": len(logged), "last_log": logged[-1] if logged else None,
            "run_dir": s.run_dir}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip", default="", help="comma list of: accuracy,hf,overhead")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    out: dict = {}
    tmp = tempfile.mkdtemp()
    if "accuracy" not in skip:
        out["accuracy"] = accuracy(args.seconds, tmp)
    if "hf" not in skip:
        out["hf"] = hf(tmp)
    if "overhead" not in skip:
        bench = Path(__file__).with_name("bench_overhead.py")
        res = subprocess.run([sys.executable, str(bench), "--json", f"{tmp}/overhead.json"],
                             capture_output=True, text=True, check=False)
        out["overhead"] = (json.loads(Path(f"{tmp}/overhead.json").read_text())
                           if res.returncode == 0 else {"error": res.stderr[-2000:]})
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()

"""A tiny GPT-2 trained with the Hugging Face Trainer under torchrun (gloo, CPU), with the
EnergyCallback as a user attaches it. Rank 0 writes its Trainer log history to
$TRAIN_OUT/log_history.json for the test to read."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from tracker.integrations.huggingface import EnergyCallback


def main() -> None:
    out = os.environ["TRAIN_OUT"]
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                       n_positions=32))
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 100, (64, 16), generator=g).tolist()
    data = [{"input_ids": r, "labels": r} for r in rows]
    args = TrainingArguments(output_dir=os.path.join(out, "hf"), num_train_epochs=2,
                             per_device_train_batch_size=4, logging_steps=2, report_to=[],
                             use_cpu=True, disable_tqdm=True, save_strategy="no",
                             dataloader_num_workers=0, seed=0, ddp_backend="gloo")
    cb = EnergyCallback("hf-ddp", output_dir=out, region="FR")
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    trainer.train()
    if trainer.is_world_process_zero():
        with open(os.path.join(out, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)


if __name__ == "__main__":
    main()

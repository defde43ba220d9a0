"""A real, short, tracked training run: a small GPT-style language model on synthetic tokens.

Runs on the GPU when there is one (bf16 autocast), else on the CPU, for a fixed wall-clock
budget; prints the energy summary and where the run logs are.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from tracker import track


class TinyLM(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, ctx: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        return self.head(self.blocks(h, mask=self.mask[: x.shape[1], : x.shape[1]], is_causal=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--region", default="DE", help="grid region (default DE)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="training time budget")
    ap.add_argument("--output-dir", default="energy-runs")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    vocab, ctx = 512, 64
    dim, layers, heads, batch = (512, 6, 8, 64) if cuda else (128, 2, 4, 16)
    torch.manual_seed(0)
    model = TinyLM(vocab, dim, layers, heads, ctx).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    data = torch.randint(0, vocab, (256, ctx + 1))
    print(f"demo: training a {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M-parameter "
          f"model on {device} for ~{args.seconds:g} s, {args.epochs} epochs")

    sync = torch.cuda.synchronize if cuda else None
    with track("demo-tinylm", region=args.region, output_dir=args.output_dir) as run:
        budget = args.seconds / args.epochs
        for epoch in run.epochs(range(args.epochs)):
            t_end = time.monotonic() + budget
            batches = (data[torch.randint(0, len(data), (batch,))] for _ in iter(int, 1))
            for xy in run.steps(batches, samples=lambda b: b.shape[0],
                                tokens=lambda b: b.shape[0] * ctx):
                xy = xy.to(device)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
                    loss = nn.functional.cross_entropy(model(xy[:, :-1]).flatten(0, 1),
                                                       xy[:, 1:].flatten())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if time.monotonic() >= t_end:
                    break
            if sync:
                sync()
            print(f"  epoch {epoch}: loss {loss.item():.3f}, "
                  f"{run.energy_j() / 3600:.3f} Wh so far")
            with run.window("eval", kind="eval"), torch.no_grad():
                model(data[:batch, :-1].to(device))
    print()
    print(run.summary.format())


if __name__ == "__main__":
    main()

"""Plain PyTorch loops: small helpers for `run.steps(...)`; torch is imported only when needed.

    from tracker import track
    from tracker.integrations.torch import count_samples, count_tokens, cuda_synchronize

    with track("my-loop", region="DE") as run:
        for epoch in run.epochs(range(3)):
            for batch in run.steps(loader, samples=count_samples, tokens=count_tokens,
                                   synchronize=cuda_synchronize()):
                train_step(batch)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

TOKEN_KEYS = ("input_ids",)


def _noop() -> None:
    return None


def cuda_synchronize(device: Union[int, str, Any, None] = None) -> Callable[[], None]:
    """`torch.cuda.synchronize` bound to `device`, for `run.steps(..., synchronize=...)`.

    CUDA kernels run asynchronously: without a sync, a step's GPU work lands in the next
    step's window. A no-op callable when torch or CUDA is missing.
    """
    try:
        import torch
    except ImportError:
        return _noop
    if not torch.cuda.is_available():
        return _noop

    def synchronize() -> None:
        torch.cuda.synchronize(device)

    return synchronize


def _leading_dim(x: Any) -> Optional[int]:
    shape = getattr(x, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 else None
    return None


def count_samples(batch: Any) -> int:
    """Samples in a batch: the leading dimension of its first tensor (or array).

    Handles a tensor, a tuple/list (first element: `(inputs, labels)`), a mapping or
    `BatchEncoding` (`input_ids` first, else the first tensor value) and a list of plain items
    (its length). 0 when it cannot tell, which the summary treats as "unknown".
    """
    n = _leading_dim(batch)
    if n is not None:
        return n
    if isinstance(batch, Mapping):
        for key in (*TOKEN_KEYS, *batch.keys()):
            if key in batch:
                n = _leading_dim(batch[key])
                if n is not None:
                    return n
        return 0
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        if batch and (_leading_dim(batch[0]) is not None or isinstance(batch[0], (Mapping, list,
                                                                                 tuple))):
            return count_samples(batch[0])
        return len(batch)
    return 0


def count_tokens(batch: Any, key: str = "input_ids") -> int:
    """Tokens in a batch: the element count of `batch[key]` (padding included: counting only
    real tokens would sum the attention mask, a device sync per step). 0 without `key`."""
    x = batch.get(key) if isinstance(batch, Mapping) else getattr(batch, key, None)
    if x is None:
        return 0
    numel = getattr(x, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(x, "size", None)   # numpy
    return int(size) if isinstance(size, int) else 0


def process_gpus(device: Any = None, env: Optional[Mapping[str, str]] = None
                 ) -> Optional[list[Union[int, str]]]:
    """The physical GPU of this process's CUDA device, as `Tracker(gpus=...)` takes it.

    In a multi-process job each process measures its own GPU: `device` ("cuda:1",
    torch.device or an index; default LOCAL_RANK) is mapped through CUDA_VISIBLE_DEVICES to the
    NVML index or UUID. None when the process has no CUDA device (measure what discovery finds).
    """
    env = os.environ if env is None else env
    index: Optional[int] = None
    if device is None:
        rank = env.get("LOCAL_RANK")
        index = int(rank) if rank is not None and rank.strip().isdigit() else None
    elif isinstance(device, int):
        index = device
    else:
        text = str(device)
        if not text.startswith("cuda"):
            return None
        _, _, idx = text.partition(":")
        index = int(idx) if idx.isdigit() else getattr(device, "index", None) or 0
    if index is None:
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [index]
    specs = [s.strip() for s in visible.split(",") if s.strip()]
    if index >= len(specs):
        return None
    spec = specs[index]
    return [int(spec) if spec.isdigit() else spec]


__all__ = ["count_samples", "count_tokens", "cuda_synchronize", "process_gpus"]

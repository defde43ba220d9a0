"""Read an offline W&B run back from its files: the `.wandb` record log (LevelDB log format:
7-byte header, 32 KiB blocks, records split in FULL/FIRST/MIDDLE/LAST chunks, each a
`wandb_internal_pb2.Record`) and its files/ directory. wandb 0.31 has no reader of its own."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def records(run_dir: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("*.wandb")
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", raw[:7]
    pos, buf, out = HEADER, b"", []
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:      # block trailer: padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        data = raw[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            out.append(data)
        elif kind == 2:
            buf = data
        elif kind == 3:
            buf += data
        elif kind == 4:
            out.append(buf + data)
    recs = []
    for data in out:
        rec = pb.Record()
        rec.ParseFromString(data)
        recs.append(rec)
    return recs


def read_run(run_dir: Path, timeout_s: float = 15.0) -> dict[str, Any]:
    """{"name", "history": [rows], "summary": {...}, "config": {...}, "files": [paths]}.
    wandb's service process may still be writing after finish() returned: waits (bounded)
    for the run's closing `exit` record."""
    import time

    deadline = time.monotonic() + timeout_s
    recs = records(run_dir)
    while not any(r.WhichOneof("record_type") == "exit" for r in recs):
        assert time.monotonic() < deadline, f"{run_dir}: no exit record after {timeout_s} s"
        time.sleep(0.2)
        recs = records(run_dir)
    got: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "files": []}

    def items(seq: Any) -> dict[str, Any]:
        return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in seq}

    for rec in recs:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            got["name"] = rec.run.display_name
        elif kind == "history":
            got["history"].append(items(rec.history.item))
        elif kind == "summary":
            got["summary"].update(items(rec.summary.update))
        elif kind == "config":
            got["config"].update(items(rec.config.update))
        elif kind == "files":
            got["files"] += [f.path for f in rec.files.files]
    return got

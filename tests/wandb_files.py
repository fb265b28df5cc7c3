"""Read a W&B offline run back from its .wandb file (LevelDB log format of protobuf records),
so tests check what W&B really stored, not what we meant to send."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # b":W&B" + 2-byte magic + 1-byte version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(path: Path):
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # trailer of a block is zero padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload


def read_offline_run(run_dir: Path) -> dict:
    """{'run': RunRecord, 'config': {...}, 'history': [{...}], 'summary': {...}, 'metrics':
    [MetricRecord], 'artifacts': [ArtifactRecord]} of one offline run."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    out: dict = {"run": None, "config": {}, "history": [], "summary": {}, "metrics": [], "artifacts": []}
    for payload in _payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "metric":
            out["metrics"].append(record.metric)
        elif kind == "artifact":
            out["artifacts"].append(record.artifact)
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return out

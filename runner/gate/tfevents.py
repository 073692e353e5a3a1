"""A run's metrics as TensorBoard event files, written directly: no TensorFlow or tensorboard needed.

An event file is a TFRecord stream (length, masked CRC-32C of the length, payload, masked CRC-32C of
the payload; little-endian) of `Event` protobufs: the first holds file_version "brain.Event:2", each
later one a step and a Summary with one `simple_value` per metric at that step. The field numbers
are those of tensorflow/core/util/event.proto and summary.proto (Event: wall_time 1, step 2,
file_version 3, summary 5; Summary.value 1; Value: tag 1, simple_value 2); the record framing is
tensorflow/core/lib/io/record_writer.cc's. tests/test_tfevents.py reads the files back with
tensorboard's own reader.

Metrics carry steps, not times: every event gets the run's start time as its wall time.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from runner.atomicfile import write_bytes_atomic
from runner.gate.metrics import Series

FILE_VERSION = b"brain.Event:2"


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1   # Castagnoli, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc(length)) + payload + struct.pack("<I", masked_crc(payload))


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1   # int64 as protobuf encodes it: two's complement for a negative step
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def event(wall_time: float, step: int | None = None, summary: bytes | None = None,
          file_version: bytes | None = None) -> bytes:
    out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time)
    if step is not None:
        out += _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _field_bytes(3, file_version)
    if summary is not None:
        out += _field_bytes(5, summary)
    return out


def scalar_summary(values: dict[str, float]) -> bytes:
    """Summary{value: [{tag, simple_value}, ...]}; NaN and inf are kept (float32 holds them)."""
    out = b""
    for tag, v in values.items():
        value = _field_bytes(1, tag.encode("utf-8")) + _varint(2 << 3 | 5) + struct.pack("<f", _f32(v))
        out += _field_bytes(1, value)
    return out


def _f32(v: float) -> float:
    # a finite value beyond float32's range would not pack; it is shown as the infinity it rounds to
    if math.isfinite(v) and abs(v) > 3.4028234663852886e38:
        return math.copysign(math.inf, v)
    return v


def events_bytes(series: Series, wall_time: float) -> bytes:
    by_step: dict[int, dict[str, float]] = {}
    for metric, steps in sorted(series.values.items()):
        for step, v in steps.items():
            by_step.setdefault(step, {})[metric] = v
    out = record(event(wall_time, file_version=FILE_VERSION))
    for step in sorted(by_step):
        out += record(event(wall_time, step=step, summary=scalar_summary(by_step[step])))
    return out


def write_events(series: Series, out_dir: Path, run_name: str, wall_time: float) -> Path:
    """out_dir/<run_name>/events.out.tfevents.<time>.recipe, written atomically; an export of the same run
    again replaces it (the same name), so TensorBoard never shows a run's points twice."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in run_name) or "run"
    path = Path(out_dir) / safe / f"events.out.tfevents.{int(wall_time)}.recipe"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, events_bytes(series, wall_time))
    return path

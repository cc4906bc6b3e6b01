"""Event timestamps for user encoders that read them (``Encoder.reads_event_times``).

Encoders that ask get two more batch tensors beside ``history`` [B, L]:

- ``history_ts`` [B, L] int64: each history position's event time in epoch seconds (UTC),
  aligned with ``history`` (0 on padding);
- ``query_ts`` [B] int64: when the prediction from the newest position is made: the target
  event's time in training and evaluation, the request's time in serving.

Seconds, not the store's microseconds: the gaps these feed are bucketed on a log2 scale, where
a second is the finest bucket that matters. Other encoders get neither tensor and pay nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

__all__ = ["HISTORY_TS", "QUERY_TS", "TIMES_MISSING", "epoch_seconds"]

HISTORY_TS = "history_ts"
QUERY_TS = "query_ts"
TIMES_MISSING = ("this user encoder reads event timestamps (time_bias = true) but none reached it: "
                 "they come from the store's events (training, evaluation) and the snapshot's histories (serving)")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_seconds(times: Sequence[datetime] | np.ndarray) -> np.ndarray:
    """int64 epoch seconds of datetimes (naive ones are UTC, as the store keeps them) or of a
    ``datetime64`` array."""
    if isinstance(times, np.ndarray) and times.dtype.kind == "M":
        return times.astype("datetime64[s]").astype(np.int64)
    second = timedelta(seconds=1)
    aware = (t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times)
    return np.fromiter(((t - _EPOCH) // second for t in aware), dtype=np.int64, count=len(times))

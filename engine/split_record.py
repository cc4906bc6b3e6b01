"""What a bundle records of the split it was trained and evaluated on, so a report can say
whether it is reproducing that evaluation or looking at a store that has moved on.

The fingerprint hashes the split in the bundle's own id space (training events, the test users
and their held-out items): the same store, protocol and seed give the same hash; one event added,
removed or moved between train and test changes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from recengine.config import PipelineConfig
from recengine.training_data import Interactions

__all__ = ["split_fingerprint", "split_record"]


def split_fingerprint(interactions: Interactions) -> str:
    """SHA-256 (hex, first 16 characters) of the split's training events and test positives."""
    digest = hashlib.sha256()
    test = interactions.test
    for array in (interactions.users, interactions.items, test.users,
                  np.fromiter((p.size for p in test.positives), dtype=np.int64, count=len(test.positives))):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    for positives in test.positives:
        digest.update(np.sort(np.asarray(positives, dtype=np.int64)).tobytes())
    return digest.hexdigest()[:16]


def split_record(config: PipelineConfig, interactions: Interactions) -> dict[str, Any]:
    """The manifest's ``split`` entry: protocol, seed, fold and what it held."""
    train = config.train
    return {"protocol": train.protocol, "seed": train.split_seed, "fold": train.fold, "folds": train.folds,
            "train_events": int(interactions.users.size), "test_users": len(interactions.test),
            "fingerprint": split_fingerprint(interactions)}

"""The arrays the training loop consumes, and their Parquet export: no polars, DuckDB or Ray.

``recengine.data`` builds these from store frames; a training snapshot written by
:func:`export_training_data` can be read back with :func:`load_training_data` on a machine
that has only torch, numpy and pyarrow (plus recengine's pure-Python core), which is how a
single-GPU run trains (``python -m recengine.train_standalone``). Dense index 0 is reserved
(padding item / unknown user), so item indices run 1..N and user indices 1..M.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recengine.components import FeatureSpec
from recengine.disk_space import disk_full_is_engine_error
from recengine.errors import DataError
from recengine.searches import SearchLog

if TYPE_CHECKING:
    import polars as pl


@dataclass
class IdMap:
    """External ids ↔ dense indices (1-based; 0 is padding/unknown)."""

    ids: list[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {external: i + 1 for i, external in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, external: pl.Series | list[str]) -> np.ndarray:
        """Dense indices of external ids; unknown ids map to 0."""
        import polars as pl  # only where the store's frames are: the training loop never encodes ids

        series = external if isinstance(external, pl.Series) else pl.Series(external, dtype=pl.String)
        mapping = pl.DataFrame({"id": self.ids, "idx": np.arange(1, len(self.ids) + 1, dtype=np.int64)})
        joined = pl.DataFrame({"id": series.cast(pl.String)}).join(mapping, on="id", how="left", maintain_order="left")
        return joined["idx"].fill_null(0).to_numpy().astype(np.int64)

    def decode(self, indices: np.ndarray) -> list[str]:
        return [self.ids[i - 1] if i > 0 else "" for i in np.asarray(indices).tolist()]


@dataclass
class FeatureTable:
    """Per-entity feature arrays indexed by dense index (row 0 = padding), and their spec.

    ``vocabularies`` keeps the string → code maps so serving encodes new requests alike.
    """

    categorical: dict[str, np.ndarray]  # [n+1] or [n+1, K] int64 codes (0 = missing)
    numeric: dict[str, np.ndarray]  # [n+1] float32, standardised
    vectors: dict[str, np.ndarray]  # [n+1, d] float32
    vocabularies: dict[str, list[str]]
    numeric_stats: dict[str, tuple[float, float]]

    def spec(self, num_ids: int) -> FeatureSpec:
        return FeatureSpec(
            num_ids=num_ids,
            categorical={name: len(self.vocabularies[name]) + 1 for name in self.categorical},
            numeric=list(self.numeric),
            vectors={name: matrix.shape[1] for name, matrix in self.vectors.items()},
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``cat:/num:/vec:`` arrays, the names encoders receive in batches."""
        out: dict[str, np.ndarray] = {}
        out.update({f"cat:{k}": v for k, v in self.categorical.items()})
        out.update({f"num:{k}": v for k, v in self.numeric.items()})
        out.update({f"vec:{k}": v for k, v in self.vectors.items()})
        return out

    @classmethod
    def empty(cls) -> FeatureTable:
        return cls({}, {}, {}, {}, {})


@dataclass
class EvalSet:
    """One evaluation split: per user, the history fed to the model, positives and exclusions."""

    users: np.ndarray  # [U] dense user indices
    histories: list[np.ndarray]  # item indices, oldest first
    positives: list[np.ndarray]
    exclude: list[np.ndarray]  # items masked before ranking (training items, for P-gen)
    candidates: np.ndarray | None = None  # rank only among these items (P-cold: the cold items)
    # only for user encoders that read event times (recengine.event_times): epoch seconds of each
    # history item, and when each user's prediction is made (the phase's first target event)
    history_times: list[np.ndarray] | None = None
    query_times: np.ndarray | None = None  # [U] int64

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class PairSet:
    """Held-out (user, history before the event, item, value) rows, for rating prediction."""

    users: np.ndarray
    histories: list[np.ndarray]
    items: np.ndarray
    values: np.ndarray
    history_times: list[np.ndarray] | None = None  # epoch seconds of each history (time-reading encoders)
    times: np.ndarray | None = None  # [P] int64 epoch seconds of each held-out event

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class Interactions:
    """Training interactions sorted by (user, time), plus the eval sets of the split."""

    users: np.ndarray  # [E] dense user index
    items: np.ndarray  # [E] dense item index
    weights: np.ndarray  # [E] float32 training weight (event weight x value where configured)
    values: np.ndarray  # [E] float32 raw value (rating, completion...)
    valid: EvalSet
    test: EvalSet
    test_unmasked: bool  # True for P-seq: RecBole's convention ranks seen items too
    valid_pairs: PairSet | None = None
    test_pairs: PairSet | None = None
    times: np.ndarray | None = None  # [E] int64 epoch seconds, only for time-reading user encoders

    def user_sequences(self) -> list[np.ndarray]:
        """Each user's training items in time order (index = dense user index)."""
        return self._per_user(self.items)

    def user_sequence_times(self) -> list[np.ndarray] | None:
        """The event times aligned with :meth:`user_sequences` (None when not gathered)."""
        return None if self.times is None else self._per_user(self.times)

    def _per_user(self, values: np.ndarray) -> list[np.ndarray]:
        num_users = int(self.users.max()) + 1 if self.users.size else 1
        bounds = np.searchsorted(self.users, np.arange(num_users + 1))
        return [values[bounds[u]:bounds[u + 1]] for u in range(num_users)]


@dataclass
class PreparedData:
    """Everything training, evaluation and the recommender need from the store."""

    users: IdMap
    items: IdMap
    user_features: FeatureTable
    item_features: FeatureTable
    interactions: Interactions
    popularity: np.ndarray  # [N+1] training-event count per item index
    item_frame: pl.DataFrame | None = None  # current item attributes (None in an exported snapshot)
    searches: SearchLog | None = None  # the users' searches, for a user tower that reads them (model.searches)

    @property
    def num_items(self) -> int:
        return len(self.items)


def pad_histories(histories: list[np.ndarray], length: int) -> np.ndarray:
    """Right-aligned [B, length] matrix of the last ``length`` items (0 = padding on the left)."""
    out = np.zeros((len(histories), length), dtype=np.int64)
    for row, history in enumerate(histories):
        tail = history[-length:]
        if tail.size:
            out[row, length - tail.size:] = tail
    return out


# ---------------------------------------------------------------------------------------
# training snapshot: the arrays above as Parquet files plus a JSON manifest
# ---------------------------------------------------------------------------------------

SNAPSHOT_FORMAT = "recengine-training-snapshot/1"


def export_training_data(data: PreparedData, directory: str | Path) -> Path:
    """Write ``data`` as a training snapshot (Parquet + ``manifest.json``) into ``directory``.

    ``manifest.json`` goes last (and an older one first), so an export that fails part-way,
    on a full disk say (``DiskFullError`` naming the directory), is never read as whole."""
    out = Path(directory)
    with disk_full_is_engine_error(out, "the snapshot there is incomplete (no manifest.json)"):
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)
        _write_snapshot(data, out)
    return out


def _write_snapshot(data: PreparedData, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    inter = data.interactions
    times = {} if inter.times is None else {"ts": inter.times}
    pq.write_table(pa.table({"user": inter.users, "item": inter.items, "weight": inter.weights,
                             "value": inter.values, **times}), out / "interactions.parquet")
    pq.write_table(pa.table({"count": data.popularity}), out / "popularity.parquet")
    for name, eval_set in (("valid", inter.valid), ("test", inter.test)):
        eval_times = {} if eval_set.history_times is None or eval_set.query_times is None else {
            "history_ts": _lists(eval_set.history_times), "query_ts": eval_set.query_times}
        pq.write_table(pa.table({"user": eval_set.users, "history": _lists(eval_set.histories),
                                 "positives": _lists(eval_set.positives), "exclude": _lists(eval_set.exclude),
                                 **eval_times}),
                       out / f"{name}.parquet")
    for name, pairs in (("valid_pairs", inter.valid_pairs), ("test_pairs", inter.test_pairs)):
        if pairs is not None:
            pair_times = {} if pairs.history_times is None or pairs.times is None else {
                "history_ts": _lists(pairs.history_times), "ts": pairs.times}
            pq.write_table(pa.table({"user": pairs.users, "history": _lists(pairs.histories), "item": pairs.items,
                                     "value": pairs.values, **pair_times}), out / f"{name}.parquet")
    features = {}
    for role, table in (("user", data.user_features), ("item", data.item_features)):
        arrays = table.to_arrays()
        columns = {key: _column(value) for key, value in arrays.items()}
        pq.write_table(pa.table(columns) if columns else pa.table({"_": pa.array([], pa.int8())}),
                       out / f"{role}_features.parquet")
        features[role] = {"vocabularies": table.vocabularies,
                          "numeric_stats": {k: list(v) for k, v in table.numeric_stats.items()}}
    manifest = {
        "format": SNAPSHOT_FORMAT, "users": data.users.ids, "items": data.items.ids,
        "test_unmasked": inter.test_unmasked, "features": features,
        "candidates": {name: None if s.candidates is None else s.candidates.tolist()
                       for name, s in (("valid", inter.valid), ("test", inter.test))},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))


def load_training_data(directory: str | Path) -> PreparedData:
    """Read a snapshot written by :func:`export_training_data` (needs pyarrow, not polars)."""
    import pyarrow.parquet as pq

    source = Path(directory)
    manifest_path = source / "manifest.json"
    if not manifest_path.exists():
        raise DataError(f"{source} is not a training snapshot: no manifest.json "
                                "(write one with `recengine train --export-snapshot DIR`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise DataError(f"{manifest_path}: format {manifest.get('format')!r}, expected {SNAPSHOT_FORMAT!r}")
    events = pq.read_table(source / "interactions.parquet")
    inter = {name: _array(events[name]) for name in events.column_names}
    eval_sets = {}
    for name in ("valid", "test"):
        table = pq.read_table(source / f"{name}.parquet")
        eval_sets[name] = EvalSet(_array(table["user"]), _unlists(table["history"]), _unlists(table["positives"]),
                                  _unlists(table["exclude"]))
        if "query_ts" in table.column_names:
            eval_sets[name].history_times = _unlists(table["history_ts"])
            eval_sets[name].query_times = _array(table["query_ts"])
        candidates = manifest["candidates"][name]
        if candidates is not None:
            eval_sets[name].candidates = np.asarray(candidates, dtype=np.int64)
    pairs: dict[str, PairSet | None] = {}
    for name in ("valid_pairs", "test_pairs"):
        path = source / f"{name}.parquet"
        table = pq.read_table(path) if path.exists() else None
        pairs[name] = None if table is None else PairSet(
            _array(table["user"]), _unlists(table["history"]), _array(table["item"]), _array(table["value"]),
            *((_unlists(table["history_ts"]), _array(table["ts"])) if "ts" in table.column_names else ()))
    tables = {}
    for role in ("user", "item"):
        table = pq.read_table(source / f"{role}_features.parquet")
        arrays = {name: _array(table[name]) for name in table.column_names if name != "_"}
        meta = manifest["features"][role]
        tables[role] = FeatureTable(
            categorical={k[4:]: v for k, v in arrays.items() if k.startswith("cat:")},
            numeric={k[4:]: v for k, v in arrays.items() if k.startswith("num:")},
            vectors={k[4:]: v for k, v in arrays.items() if k.startswith("vec:")},
            vocabularies=meta["vocabularies"],
            numeric_stats={k: tuple(v) for k, v in meta["numeric_stats"].items()},
        )
    interactions = Interactions(
        users=inter["user"], items=inter["item"], weights=inter["weight"], values=inter["value"],
        valid=eval_sets["valid"], test=eval_sets["test"],
        test_unmasked=manifest["test_unmasked"], valid_pairs=pairs["valid_pairs"], test_pairs=pairs["test_pairs"],
        times=inter.get("ts"))
    return PreparedData(users=IdMap(manifest["users"]), items=IdMap(manifest["items"]),
                        user_features=tables["user"], item_features=tables["item"], interactions=interactions,
                        popularity=_array(pq.read_table(source / "popularity.parquet")["count"]))


def _lists(rows: list[np.ndarray]) -> Any:
    import pyarrow as pa

    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _unlists(column: Any) -> list[np.ndarray]:
    array = column.combine_chunks()
    offsets, values = array.offsets.to_numpy(), np.array(array.values.to_numpy())
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(array))]


def _column(array: np.ndarray) -> Any:
    import pyarrow as pa

    if array.ndim == 1:
        return pa.array(array)
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(array).reshape(-1)), array.shape[1])


def _array(column: Any) -> np.ndarray:
    import pyarrow as pa

    array = column.combine_chunks()  # copies below: Arrow's buffers are read-only, torch wants writable
    if isinstance(array.type, pa.FixedSizeListType):
        return np.array(array.values.to_numpy()).reshape(len(array), array.type.list_size)
    return np.array(array.to_numpy(zero_copy_only=False))

"""From store tables (polars) to model-ready arrays: id maps, feature tables, sequences and
eval sets. The array containers themselves live in ``recengine.training_data`` (no polars), so
the training loop can run where only torch, numpy and pyarrow are installed; they are
re-exported here. Dense index 0 is reserved (padding item / unknown user), so item indices
run 1..N and user indices 1..M.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recengine.errors import ConfigError
from recengine.eval_sets import PHASES, build_eval_set
from recengine.training_data import EvalSet, FeatureTable, IdMap, Interactions, PairSet, pad_histories

__all__ = ["EvalSet", "FeatureTable", "IdMap", "Interactions", "PairSet", "pad_histories", "auto_feature_columns",
           "build_feature_table", "build_interactions", "encode_rows"]

TEXT_COLUMNS = {"title", "description", "body", "text"}
MAX_AUTO_CARDINALITY = 200
MAX_LIST_LENGTH = 8


def auto_feature_columns(frame: pl.DataFrame, id_column: str) -> list[str]:
    """Columns worth feeding an encoder: low-cardinality categories, lists, numbers.

    Free text (title, description...) is left to text encoders and item vectors.
    """
    chosen = []
    for name, dtype in frame.schema.items():
        if name in (id_column, "valid_from", "created_at") or name in TEXT_COLUMNS:
            continue
        if dtype.is_numeric():
            chosen.append(name)
        elif dtype == pl.String and 1 < frame[name].n_unique() <= MAX_AUTO_CARDINALITY:
            chosen.append(name)
        elif isinstance(dtype, pl.List) and dtype.inner == pl.String:
            chosen.append(name)
    return chosen


def build_feature_table(frame: pl.DataFrame, id_map: IdMap, id_column: str, columns: list[str],
                        vectors: dict[str, tuple[list[str], np.ndarray]] | None = None) -> FeatureTable:
    """Learn vocabularies/statistics of ``columns`` and encode them into arrays aligned with
    ``id_map`` indices (row 0 and entities without a row stay zero)."""
    vocabularies, stats = {}, {}
    for name in columns:
        if name not in frame.columns:
            raise ConfigError(f"feature column {name!r} not found; columns are {frame.columns}")
        series = frame[name]
        if series.dtype.is_numeric():
            values = series.cast(pl.Float64).to_numpy()
            mean = float(np.nanmean(values)) if values.size else 0.0
            stats[name] = (mean, float(np.nanstd(values)) or 1.0)
        else:
            flat = series.explode() if isinstance(series.dtype, pl.List) else series
            vocabularies[name] = sorted(flat.drop_nulls().unique().to_list())
    learned = FeatureTable({}, {}, {}, vocabularies, stats)
    rows = id_map.encode(frame[id_column])
    encoded = encode_rows(frame, learned, vectors, id_column)
    size = len(id_map) + 1
    arrays = {}
    for key, values in encoded.items():
        target = np.zeros((size, *values.shape[1:]), dtype=values.dtype)
        target[rows[rows > 0]] = values[rows > 0]
        arrays[key] = target
    pick = lambda prefix: {k[4:]: v for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
    return FeatureTable(pick("cat:"), pick("num:"), pick("vec:"), vocabularies, stats)


MAX_Z = 10.0  # standardised numeric features are clipped here: an outlier (a posted price of 1e300) cannot
# overflow float32 into inf, and so NaN scores, nor dominate an item's vector


def encode_rows(frame: pl.DataFrame, table: FeatureTable, vectors: dict[str, tuple[list[str], np.ndarray]] | None,
                id_column: str) -> dict[str, np.ndarray]:
    """``cat:/num:/vec:`` arrays for the rows of ``frame``, in order, with ``table``'s learned
    vocabularies and statistics; values it has not seen encode as 0 ("missing").

    Training uses it to build feature tables; serving uses it to encode items that arrived
    after training (cold items), exactly as training would have.
    """
    out: dict[str, np.ndarray] = {}
    for name, (mean, std) in table.numeric_stats.items():
        values = frame[name].cast(pl.Float64).to_numpy() if name in frame.columns else np.full(frame.height, mean)
        standard = np.nan_to_num((values - mean) / std)  # float64: a value near 1e308 stays finite here
        out[f"num:{name}"] = np.clip(standard, -MAX_Z, MAX_Z).astype(np.float32)
    for name, vocabulary in table.vocabularies.items():
        codes = {value: i + 1 for i, value in enumerate(vocabulary)}
        series = frame[name] if name in frame.columns else pl.Series([None] * frame.height)
        if isinstance(series.dtype, pl.List):
            column = np.zeros((frame.height, MAX_LIST_LENGTH), dtype=np.int64)
            for row, values in enumerate(series.to_list()):
                found = [codes[v] for v in (values or []) if v in codes][:MAX_LIST_LENGTH]
                column[row, : len(found)] = found
        else:
            column = np.array([codes.get(v, 0) for v in series.to_list()], dtype=np.int64)
        out[f"cat:{name}"] = column
    for name, (ids, matrix) in (vectors or {}).items():
        lookup = {item: i for i, item in enumerate(ids)}
        column = np.zeros((frame.height, matrix.shape[1]), dtype=np.float32)
        for row, item in enumerate(frame[id_column].to_list()):
            position = lookup.get(item)
            if position is not None:
                column[row] = matrix[position]
        out[f"vec:{name}"] = column
    return out


def build_interactions(split: pl.DataFrame, users: IdMap, items: IdMap, protocol: str,
                       event_weights: dict[str, float] | None = None, weight_by_value: bool = False,
                       max_history: int = 50, with_times: bool = False) -> Interactions:
    """Arrays for training and evaluation from a store split (columns user_id, item_id, ...,
    split), ordered by user then (ts, seq) so sequences keep the store's stable time order.
    ``with_times``: also the events' epoch seconds (for user encoders that read event times)."""
    frame = split.with_columns(
        pl.Series("u", users.encode(split["user_id"])), pl.Series("i", items.encode(split["item_id"]))
    ).filter((pl.col("u") > 0) & (pl.col("i") > 0)).sort("u", "ts", "seq")
    weight = pl.lit(1.0)
    if event_weights:
        weight = pl.col("event_type").replace_strict(event_weights, default=1.0, return_dtype=pl.Float64)
    if weight_by_value:
        weight = weight * pl.col("value")
    frame = frame.with_columns(weight.cast(pl.Float32).alias("w"))
    train = frame.filter(pl.col("split") == "train")
    codes = dict(zip(PHASES, range(len(PHASES))))
    phases = frame["split"].replace_strict(codes, default=len(PHASES), return_dtype=pl.Int8).to_numpy()
    rows = frame["u"].to_numpy(), frame["i"].to_numpy()
    times = frame["ts"].dt.epoch("s").to_numpy().astype(np.int64) if with_times else None
    valid = build_eval_set(*rows, phases, "valid", protocol, max_history, times)
    test = build_eval_set(*rows, phases, "test", protocol, max_history, times)
    if protocol == "cold":  # held-out items are ranked among themselves, for the users who had them
        test.candidates = np.unique(frame.filter(pl.col("split") == "test")["i"].to_numpy()).astype(np.int64)
        valid.candidates = np.unique(frame.filter(pl.col("split") == "valid")["i"].to_numpy()).astype(np.int64)
    pairs = _pair_sets(frame, max_history, times) if protocol == "rating" else {}
    return Interactions(
        users=train["u"].to_numpy().astype(np.int64),
        items=train["i"].to_numpy().astype(np.int64),
        weights=train["w"].to_numpy(),
        values=train["value"].cast(pl.Float32).to_numpy(),
        valid=valid, test=test, test_unmasked=protocol == "seq",
        valid_pairs=pairs.get("valid"), test_pairs=pairs.get("test"),
        times=None if times is None else times[(frame["split"] == "train").to_numpy()],
    )


def _pair_sets(frame: pl.DataFrame, max_history: int, times: np.ndarray | None = None) -> dict[str, PairSet]:
    """Valid/test rows with each row's history: the user's training items before it in time
    (with ``times``: the history's and the row's epoch seconds too)."""
    users = frame["u"].to_numpy()
    items = frame["i"].to_numpy()
    splits = frame["split"].to_numpy()
    values = frame["value"].cast(pl.Float32).to_numpy()
    stamps = np.zeros(users.size, dtype=np.int64) if times is None else times
    out: dict[str, list] = {"valid": [], "test": []}
    trained: list[int] = []
    trained_at: list[int] = []
    for row in range(users.size):
        if row and users[row] != users[row - 1]:
            trained, trained_at = [], []
        if splits[row] == "train":
            trained.append(items[row])
            trained_at.append(stamps[row])
        elif splits[row] in out:
            history = np.asarray(trained[-max_history:], dtype=np.int64)
            history_at = np.asarray(trained_at[-max_history:], dtype=np.int64)
            out[splits[row]].append((users[row], history, items[row], values[row], history_at, stamps[row]))
    return {
        name: PairSet(np.asarray([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows],
                      np.asarray([r[2] for r in rows], dtype=np.int64),
                      np.asarray([r[3] for r in rows], dtype=np.float32),
                      history_times=None if times is None else [r[4] for r in rows],
                      times=None if times is None else np.asarray([r[5] for r in rows], dtype=np.int64))
        for name, rows in out.items()
    }

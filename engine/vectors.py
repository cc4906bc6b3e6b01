"""Item vectors: embed item text with a pretrained encoder, or load vectors made elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from recengine.errors import ConfigError
from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError

Progress = Callable[[int, int], None]


def item_texts(frame: pl.DataFrame, fields: list[str]) -> list[str]:
    """One text per item: the fields joined by '. ' (lists by ', '), missing values skipped."""
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise ConfigError(f"text field(s) {missing} not in the items table; columns: {frame.columns}")
    parts = []
    for field in fields:
        series = frame[field]
        if isinstance(series.dtype, pl.List):
            series = series.list.join(", ")
        parts.append(series.cast(pl.String).fill_null(""))
    texts = pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator=". ").str.strip_chars(". ")).to_series()
    return texts.to_list()


def build_text_vectors(store: FeatureStore, embed: Callable[[list[str]], np.ndarray], fields: list[str],
                       name: str = "text", chunk: int = 512, rebuild: bool = False,
                       progress: Progress | None = None, encoder: str | None = None) -> tuple[int, int]:
    """Embed the items that have no vector in set ``name`` yet, committing chunk by chunk
    (an interrupted build resumes where it stopped). Returns (embedded, already present).
    With ``encoder`` (its registered name), the set remembers how it was made, and items
    posted while serving are embedded the same way (:func:`posted_item_vectors`)."""
    if encoder is not None:
        store.set_vector_source(name, {"encoder": encoder, "fields": fields})
    items = store.latest("items")
    if not rebuild:
        have = store.sql("SELECT item_id FROM item_vectors WHERE name = ?", [name])["item_id"]
        todo = items.filter(~pl.col("item_id").is_in(have.implode()))
    else:
        todo = items
    done_before = items.height - todo.height
    for begin in range(0, todo.height, chunk):
        part = todo.slice(begin, chunk)
        vectors = embed(item_texts(part, fields))
        store.write_vectors(name, part["item_id"].to_list(), vectors, source=f"text embedding of {fields}")
        if progress:
            progress(min(begin + chunk, todo.height), todo.height)
    return todo.height, done_before


def read_vector_file(path: str | Path, id_column: str = "item_id",
                     vector_column: str = "vector") -> tuple[list[str], np.ndarray]:
    """Ids and vectors from Parquet (an id column and a list column) or NumPy ``.npz``
    (arrays ``ids`` and ``vectors``), checked for shape before the store validates ids."""
    path = Path(path)
    if not path.exists():
        raise IngestError(str(path), "no such file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if "ids" not in arrays or "vectors" not in arrays:
                raise IngestError(str(path), f"arrays {sorted(arrays.files)} found",
                                  expected="arrays named 'ids' and 'vectors'")
            ids, vectors = [str(i) for i in arrays["ids"].tolist()], np.asarray(arrays["vectors"])
    elif path.suffix in (".parquet", ".pq"):
        frame = pl.read_parquet(path)
        for column in (id_column, vector_column):
            if column not in frame.columns:
                raise IngestError(str(path), f"missing column {column!r}", column=column,
                                  expected=f"columns {id_column!r} and {vector_column!r}; found {frame.columns}")
        lengths = frame[vector_column].list.len()
        if lengths.n_unique() > 1:
            first_bad = int((lengths != lengths[0]).arg_max())
            raise IngestError(str(path), f"vector has {lengths[first_bad]} values", row=first_bad + 1,
                              column=vector_column, expected=f"{lengths[0]} values, like row 1")
        ids = frame[id_column].cast(pl.String).to_list()
        vectors = np.asarray(frame[vector_column].to_list(), dtype=np.float32)
    else:
        raise IngestError(str(path), f"unsupported vector file type {path.suffix!r}", expected=".parquet or .npz")
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise IngestError(str(path), f"vectors of shape {vectors.shape} for {len(ids)} ids",
                          expected="one vector per id")
    if len(set(ids)) != len(ids):
        raise IngestError(str(path), "an item id appears more than once", column=id_column, expected="unique ids")
    return ids, vectors


def posted_item_vectors(store: FeatureStore) -> Callable[[pl.DataFrame], dict[str, np.ndarray]] | None:
    """What gives posted items their vectors: each text vector set of the store embedded with
    the encoder and fields that made it (None when the store has none)."""
    from recengine.plugin_manager import get_plugin_manager

    sources = {name: source for name, source in store.vector_sources().items() if source.get("encoder")}
    if not sources:
        return None
    manager = get_plugin_manager()
    encoders = {name: manager.get("encoders", source["encoder"]) for name, source in sources.items()}

    def vectorize(items: pl.DataFrame) -> dict[str, np.ndarray]:
        present = {name: [f for f in sources[name]["fields"] if f in items.columns] for name in sources}
        return {name: np.asarray(encoders[name].embed_texts(item_texts(items, fields)), dtype=np.float32)
                for name, fields in present.items() if fields}

    return vectorize

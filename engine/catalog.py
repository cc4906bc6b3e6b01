"""The catalogue a Recommender serves: every item it can recommend, aligned to dense indices.

The bundle's items keep the indices they trained with (1..N, 0 = padding). Items that reached
the published snapshot after training (no events, so no learned id embedding) follow them,
encoded by the item tower from their attributes and vectors: cold items are recommendable
from the first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import polars as pl
import torch

from recengine.bundle import Bundle
from recengine.components import Catalog, l2_normalise
from recengine.data import encode_rows


@dataclass(frozen=True)
class AssembledCatalog:
    """What :func:`assemble_catalog` builds: trained items first, then cold ones."""

    item_ids: list[str]  # dense index i + 1 is item_ids[i]
    item_matrix: np.ndarray  # [N+1, d] float32 item vectors, row 0 = padding (zeros)
    item_index: dict[str, int]  # item id → dense index
    catalog: Catalog  # attributes, normalised vectors and popularity for rankers
    cold_items: int  # items the model never saw (encoded from their features)


def assemble_catalog(bundle: Bundle, online: Any | None = None) -> AssembledCatalog:
    """The bundle's items, plus the cold items of ``online``'s snapshot when given (whose
    item attributes then replace the ones the bundle trained with)."""
    with torch.no_grad():
        matrix = bundle.model.item_matrix().float().cpu().numpy()
    matrix[0] = 0.0
    item_ids = list(bundle.items.ids)
    popularity = bundle.popularity.astype(np.float64)
    frame = bundle.item_frame
    if online is not None:
        frame = online.data.items
        cold = frame.filter(~pl.col("item_id").is_in(bundle.items.ids))
        if cold.height:
            matrix = np.vstack([matrix, encode_cold_items(bundle, online, cold)])
            popularity = np.concatenate([popularity, np.zeros(cold.height)])
            item_ids += cold["item_id"].to_list()
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    trained = len(bundle.items)
    item_index = dict(bundle.items.index)  # a copy: cold items join it
    item_index.update((item, i) for i, item in enumerate(item_ids[trained:], start=trained + 1))
    catalog = build_catalog(item_ids, frame, matrix, popularity, item_index)
    return AssembledCatalog(item_ids, matrix, item_index, catalog, cold_items=len(item_ids) - trained)


def encode_cold_items(bundle: Bundle, online: Any, cold: pl.DataFrame, ids: np.ndarray | None = None,
                      given: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """[len(cold), d] vectors from the item tower for items the model never saw (id 0), from
    their attributes and the snapshot's vectors (zeros for a vector set it lacks); ``ids``:
    the items' trained indices instead (an item the model saw, with new attributes);
    ``given``: vectors of these rows by set name (posted items, embedded by the writer)."""
    table = bundle.item_table
    vectors: dict[str, tuple[list[str], np.ndarray]] = {}
    for name in table.vectors:
        if given is not None and name in given:
            vectors[name] = (cold["item_id"].to_list(), given[name])
            continue
        try:
            found = online.item_vectors(name)
        except KeyError:
            continue
        vectors[name] = (found.ids, found.matrix)
    arrays = encode_rows(cold, table, vectors, "item_id")
    for name, width in ((n, v.shape[1]) for n, v in table.vectors.items()):
        arrays.setdefault(f"vec:{name}", np.zeros((cold.height, width), dtype=np.float32))
    device = bundle.model.device
    with torch.no_grad():
        trained = torch.zeros(cold.height, dtype=torch.long) if ids is None else torch.as_tensor(ids)
        batch = {"ids": trained.to(device),
                 **{k: torch.as_tensor(v, device=device) for k, v in arrays.items()}}
        return bundle.model.item_encoder(batch).vector.float().cpu().numpy()


def extend_catalog(current: AssembledCatalog, bundle: Bundle, online: Any | None,
                   rows: pl.DataFrame) -> AssembledCatalog:
    """``current`` with posted item rows merged in: new items appended (the item tower encodes
    them from their attributes, as cold items), known ones given their new attributes and
    re-encoded. Dense indices never change meaning, so a request that read the old catalogue
    can rank with the new one."""
    rows = rows.unique("item_id", keep="last", maintain_order=True)
    vector_columns = [c for c in rows.columns if c.startswith("vector:")]
    given = {c.split(":", 1)[1]: np.asarray(rows[c].to_list(), dtype=np.float32) for c in vector_columns
             if rows[c].null_count() == 0}
    rows = rows.drop(vector_columns)
    known = np.array([current.item_index.get(i, 0) for i in rows["item_id"].to_list()], dtype=np.int64)
    new = rows.filter(pl.Series(known == 0))
    trained = len(bundle.items)
    ids = np.where(known <= trained, known, 0)  # learned id embeddings only for trained items
    vectors = encode_cold_items(bundle, online, rows, ids, given)
    item_ids = current.item_ids + new["item_id"].to_list()
    item_index = dict(current.item_index)
    item_index.update((item, i) for i, item in enumerate(new["item_id"].to_list(), start=len(current.item_ids) + 1))
    positions = np.array([item_index[i] for i in rows["item_id"].to_list()], dtype=np.int64)
    matrix = np.zeros((len(item_ids) + 1, current.item_matrix.shape[1]), dtype=np.float32)
    matrix[: current.item_matrix.shape[0]] = current.item_matrix
    matrix[positions] = vectors
    old = current.catalog
    popularity = np.concatenate([old.popularity, np.zeros(new.height)])
    catalog = build_catalog(item_ids, rows, matrix, popularity, item_index)
    for name, column in catalog.columns.items():  # the rows posted now, over the stored columns
        merged = _grown(old.columns[name], len(item_ids) + 1) if name in old.columns else column
        merged[positions] = column[positions]
        catalog.columns[name] = merged
    for name, column in old.columns.items():  # columns the posted rows did not name
        if name not in catalog.columns:
            grown = _grown(column, len(item_ids) + 1)
            grown[positions[known == 0]] = np.datetime64("NaT") if grown.dtype.kind == "M" else None
            catalog.columns[name] = grown
    catalog.titles = catalog.columns.get("title")
    return AssembledCatalog(item_ids, matrix, item_index, catalog, current.cold_items + new.height)


def _grown(column: np.ndarray, size: int) -> np.ndarray:
    """A copy of ``column`` with room for ``size`` cells (the new ones empty)."""
    grown = np.full(size, np.datetime64("NaT"), dtype=column.dtype) if column.dtype.kind == "M" \
        else np.empty(size, dtype=column.dtype)
    grown[: column.shape[0]] = column
    return grown


def build_catalog(item_ids: list[str], frame: pl.DataFrame, item_matrix: np.ndarray, popularity: np.ndarray,
                  index: dict[str, int] | None = None) -> Catalog:
    """Item attributes aligned to dense indices (row 0 = padding) for rankers.

    ``index`` maps item id → dense index (built from ``item_ids`` when not given). Cells keep
    the Python values of ``Series.to_list()`` (str, int, list, None), filled without a Python
    loop per item: at 1M items such loops cost seconds of start-up.
    """
    size = len(item_ids) + 1
    if index is None:
        index = {item: i + 1 for i, item in enumerate(item_ids)}
    frame_ids = frame["item_id"].to_list()
    rows = np.fromiter(map(index.get, frame_ids, repeat(0)), dtype=np.int64, count=len(frame_ids))
    columns: dict[str, np.ndarray] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.is_temporal():
            column = np.full(size, np.datetime64("NaT"), dtype="datetime64[us]")
            column[rows] = series.to_numpy().astype("datetime64[us]")
        else:
            column = np.empty(size, dtype=object)
            column[rows] = np.fromiter(series.to_list(), dtype=object, count=series.len())
        column[0] = np.datetime64("NaT") if column.dtype.kind == "M" else None
        columns[name] = column
    ids = np.empty(size, dtype=object)
    ids[0] = ""
    ids[1:] = item_ids
    return Catalog(item_ids=ids, columns=columns, vectors=l2_normalise(item_matrix),
                   popularity=popularity.astype(np.float64), titles=columns.get("title"))

"""Item vectors: embed item text with a pretrained encoder, or load vectors made elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recengine.errors import ConfigError
from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError
from recengine.feature_store.vector_transforms import VectorTransform
from recengine.vector_transform import TransformSpec, check_fittable, fit_transform

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
                       progress: Progress | None = None, encoder: str | None = None,
                       transform: TransformSpec | None = None) -> tuple[int, int]:
    """Embed the items that have no vector in set ``name`` yet, committing chunk by chunk
    (an interrupted build resumes where it stopped). Returns (embedded, already present).
    With ``encoder`` (its registered name), the set remembers how it was made, and items
    posted while serving are embedded the same way (:func:`posted_item_vectors`).

    ``transform`` (None: keep the set's) says what the set's vectors go through
    (:func:`plan_transform`): a new ``pca``/``whiten`` is fitted on the whole catalogue (every
    item embedded first, then the set replaced in one transaction, so that build is not
    resumable); otherwise new items get the saved transform, never a silent refit."""
    saved = store.vector_transform(name)
    have = store.sql("SELECT item_id FROM item_vectors WHERE name = ?", [name])["item_id"]
    plan = plan_transform(name, saved, transform, rebuild=rebuild, has_vectors=have.len() > 0)
    model = text_model_of(encoder)
    if have.len() > 0 and not rebuild and plan is None:
        check_same_model(name, store.vector_sources().get(name), encoder, model)
    items = store.latest("items")
    todo = items if rebuild or plan is not None else items.filter(~pl.col("item_id").is_in(have.implode()))
    source = f"text embedding of {fields}"
    if plan is not None:  # the whole set replaced at once: fitted, or raw again
        if plan.kind != "none":
            check_fittable(plan, todo.height)  # before embedding anything
        matrix = _stack([embed(item_texts(part, fields)) for part in _chunks(todo, chunk, progress)])
        fitted = fit_transform(matrix, plan) if plan.kind != "none" else None
        store.replace_vector_set(name, todo["item_id"].to_list(), matrix if fitted is None else fitted.apply(matrix),
                                 transform=fitted, source=source)
    if encoder is not None:
        store.set_vector_source(name, {"encoder": encoder, "fields": fields, "model": model})
    if plan is None:
        for part in _chunks(todo, chunk, progress):
            vectors = embed(item_texts(part, fields))
            store.write_vectors(name, part["item_id"].to_list(), through_saved(saved, name, vectors, source),
                                source=source)
    return todo.height, items.height - todo.height


def build_query_vectors(store: FeatureStore, embed: Callable[[list[str]], np.ndarray], name: str = "text",
                        chunk: int = 512, progress: Progress | None = None) -> int:
    """Embed the searched queries that have no vector in set ``name`` yet with the model that
    embeds its items (``embed``) and through the set's saved transform, so a query and an
    item compare in one space; commits chunk by chunk (resumable). Returns how many."""
    queries = store.unembedded_queries(name)
    saved = store.vector_transform(name)
    source = f"query embedding into {name!r}"
    for start in range(0, len(queries), chunk):
        part = queries[start:start + chunk]
        store.write_query_vectors(name, part, through_saved(saved, name, embed(part), source), source=source)
        if progress is not None:
            progress(start + len(part), len(queries))
    return len(queries)


def text_model_of(encoder: str | None) -> str | None:
    """The pretrained model (name and weights hash) the registered text encoder ``encoder`` embeds with."""
    if encoder is None:
        return None
    from recengine.plugin_manager import get_plugin_manager

    return get_plugin_manager().get("encoders", encoder).text_model


def check_same_model(name: str, recorded: dict[str, Any] | None, encoder: str | None, model: str | None) -> None:
    """Refuse to add vectors of ``encoder`` (None: a file's) and ``model`` to set ``name`` when it
    holds another's (``recorded``, its vector source): two models' vectors live in different
    spaces, and a set that mixes them ranks nonsense. A side without a model name is not compared."""
    recorded_encoder, recorded_model = (recorded or {}).get("encoder"), (recorded or {}).get("model")
    if recorded_encoder == encoder and (recorded_model is None or model is None or recorded_model == model):
        return

    def described(who: str | None, what: str | None) -> str:
        return "vectors ingested from files" if who is None else f"encoder {who!r}" + (f" ({what})" if what else "")

    raise ConfigError(f"vector set {name!r} holds {described(recorded_encoder, recorded_model)}; adding "
                      f"{described(encoder, model)} would mix two models' vectors in one set: rebuild it "
                      f"(`recengine vectors build --vector {name} --rebuild`) or use another --vector name")


def plan_transform(name: str, saved: VectorTransform | None, requested: TransformSpec | None, *,
                   rebuild: bool, has_vectors: bool) -> TransformSpec | None:
    """How a build treats set ``name``'s transform. None: embed chunk by chunk, new vectors
    through the saved transform (if any); a spec: replace the whole set at once, fitted
    with it (``pca``/``whiten``) or raw (``none``, dropping a saved transform).

    ``requested`` None keeps what the set has (with ``rebuild``: refits the saved kind and
    dim). A fit happens only on a set rebuilt or still empty: asking an incremental build
    for anything other than what the stored vectors went through is refused, since it
    would change every stored vector (that takes ``rebuild``)."""
    current = TransformSpec.of_saved(saved)
    wanted = current if requested is None else requested
    if rebuild or not has_vectors:
        if wanted.kind != "none" or saved is not None:
            return wanted
        return None
    if wanted != current:
        raise ConfigError(f"vector set {name!r} holds {_describe(saved)}; {wanted.label()} would change every "
                          f"stored vector: add --rebuild to embed and fit the whole catalogue again")
    return None


def _describe(saved: VectorTransform | None) -> str:
    if saved is None:
        return "raw vectors"
    return (f"{saved.kind} to {saved.dim} dimensions (of {saved.input_dim}, fitted on {saved.fitted_items} "
            f"item(s) at {saved.fitted_at:%Y-%m-%d %H:%M} UTC)")


def _chunks(frame: pl.DataFrame, chunk: int, progress: Progress | None) -> Iterator[pl.DataFrame]:
    for begin in range(0, frame.height, chunk):
        yield frame.slice(begin, chunk)
        if progress:
            progress(min(begin + chunk, frame.height), frame.height)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts]) if parts else np.zeros((0, 0), np.float32)


def through_saved(saved: VectorTransform | None, name: str, raw: np.ndarray, source: str) -> np.ndarray:
    """Raw vectors for set ``name`` after its saved transform (unchanged when it has none)."""
    if saved is None:
        return raw
    matrix = np.asarray(raw)
    if matrix.ndim != 2 or matrix.shape[1] != saved.input_dim:
        raise IngestError(source, f"vectors of shape {matrix.shape}", column="vector",
                          expected=f"raw {saved.input_dim}-d vectors: set {name!r} stores them after "
                                   f"{saved.kind} to {saved.dim} dimensions")
    return saved.apply(matrix)


def store_raw_vectors(store: FeatureStore, name: str, item_ids: list[str], raw: np.ndarray,
                      source: str = "<vectors>") -> int:
    """Write raw vectors into set ``name`` through its saved transform (as given when it has
    none): what ingests into an existing set do, so every vector of a set is comparable."""
    if store.sql("SELECT count(*) AS n FROM item_vectors WHERE name = ?", [name])["n"][0] > 0:
        check_same_model(name, store.vector_sources().get(name), None, None)
    matrix = through_saved(store.vector_transform(name), name, raw, source)
    return store.write_vectors(name, item_ids, matrix, source=source)


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
    the encoder and fields that made it, through the set's saved transform (PCA, whitening)
    like the catalogue's vectors (None when the store has no text set)."""
    from recengine.plugin_manager import get_plugin_manager

    sources = {name: source for name, source in store.vector_sources().items() if source.get("encoder")}
    if not sources:
        return None
    manager = get_plugin_manager()
    encoders = {name: manager.get("encoders", source["encoder"]) for name, source in sources.items()}
    mixed = {}  # sets the installed model did not build: their posted items are refused, the rest go on
    for name, source in sources.items():
        try:
            check_same_model(name, source, source["encoder"], encoders[name].text_model)
        except ConfigError as exc:
            mixed[name] = str(exc)
    transforms = store.vector_transforms()

    def vectorize(items: pl.DataFrame) -> dict[str, np.ndarray]:
        if mixed:  # an IngestError: the store refuses this batch alone, not its whole group
            raise IngestError("posted items", "; ".join(mixed.values()), column="vector")
        present = {name: [f for f in sources[name]["fields"] if f in items.columns] for name in sources}
        out = {}
        for name, fields in present.items():
            if fields:
                raw = np.asarray(encoders[name].embed_texts(item_texts(items, fields)), dtype=np.float32)
                out[name] = through_saved(transforms.get(name), name, raw, f"posted items ({name})")
        return out

    return vectorize

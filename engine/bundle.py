"""Model bundles: ``models/<name>/<version>/`` with everything needed to serve a model.

    config.json          the pipeline config (validated on load)
    weights.safetensors  model weights and feature buffers (never pickle)
    extras.safetensors   popularity and each user's last training items
    ids.json             dense index → external id, for users and items
    features.json        feature vocabularies and numeric statistics
    items.parquet        item attributes at training time (for rankers and reasons)
    metrics.json         validation/test metrics and the popularity baseline
    manifest.json        name, version, creation time, store, training summary
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from recengine.config import PipelineConfig, RankingConfig, validate_components
from recengine.data import FeatureTable, IdMap, pad_histories
from recengine.disk_space import disk_full_is_engine_error
from recengine.errors import ConfigError, DataError, EngineError, NotFoundError, UnknownComponentError
from recengine.feature_store.vector_transforms import VectorTransform
from recengine.model import RecModel
from recengine.searches import SEARCH_FEATURE, SearchLog

DEFAULT_MODELS_DIR = "models"
FEATURE_META_KEYS = ("categorical", "numeric", "vectors", "vocabularies", "numeric_stats")


def models_root(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("RECENGINE_MODELS", DEFAULT_MODELS_DIR))


@dataclass
class Bundle:
    """A loaded bundle: the model in eval mode plus its id maps and side data."""

    path: Path
    config: PipelineConfig
    model: RecModel
    users: IdMap
    items: IdMap
    popularity: np.ndarray
    histories: np.ndarray  # [M+1, L] right-aligned training items per user index
    item_table: FeatureTable  # item feature vocabularies/statistics, to encode cold items alike
    item_frame: pl.DataFrame
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    # [M+1, L] epoch seconds aligned with ``histories``; only for user encoders that read event times
    history_times: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def _feature_meta(table: FeatureTable) -> dict[str, Any]:
    return {
        "categorical": {name: list(array.shape) for name, array in table.categorical.items()},
        "numeric": list(table.numeric),
        "vectors": {name: list(array.shape) for name, array in table.vectors.items()},
        "vocabularies": table.vocabularies,
        "numeric_stats": table.numeric_stats,
    }


@contextmanager
def _new_version(base: Path) -> Iterator[tuple[Path, int]]:
    """A hidden staging folder for the next version under ``base`` and that version, renamed
    into place when the block completes and removed if it fails."""
    base.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    version = max(versions, default=0) + 1
    staging = base / f".{version}.tmp-{os.getpid()}"
    staging.mkdir()
    try:
        yield staging, version
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, base / str(version))


def save_bundle(root: str | Path | None, config: PipelineConfig, model: RecModel, *, users: IdMap, items: IdMap,
                user_features: FeatureTable, item_features: FeatureTable, popularity: np.ndarray,
                user_sequences: list[np.ndarray], item_frame: pl.DataFrame, metrics: dict[str, Any],
                extra_manifest: dict[str, Any] | None = None,
                user_sequence_times: list[np.ndarray] | None = None) -> Path:
    """Write a new version of bundle ``config.name``; returns its directory.
    ``user_sequence_times`` (epoch seconds aligned with ``user_sequences``) is kept for a user
    encoder that reads event times, so the bundle serves without a snapshot too.

    The files go into a hidden staging folder beside the versions, renamed into place once
    complete: a failure (a full disk raises ``DiskFullError`` naming the folder) removes it,
    so no half-written version is ever left to load."""
    base = models_root(root) / config.name
    with disk_full_is_engine_error(base, "no bundle version was written"), _new_version(base) as (staging, version):
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / "weights.safetensors"))
        feature_arrays = {f"user.{k}": v for k, v in user_features.to_arrays().items()}
        feature_arrays.update({f"item.{k}": v for k, v in item_features.to_arrays().items()})
        unseen = [np.zeros(0, dtype=np.int64)] * (len(users) + 1 - len(user_sequences))
        histories = pad_histories(user_sequences + unseen, config.model.max_history)
        times = {} if user_sequence_times is None else {
            "history_times": pad_histories(user_sequence_times + unseen, config.model.max_history)}
        log = model.search_log if model.reads_searches else None
        searched = {} if log is None else {
            "search_users": log.users, "search_times": log.times, "search_query_index": log.query_index,
            "search_query_vectors": np.ascontiguousarray(log.query_vectors, dtype=np.float32)}
        if log is not None and log.transform is not None:
            searched.update({"search_transform_mean": np.ascontiguousarray(log.transform.mean, dtype=np.float32),
                             "search_transform_projection": np.ascontiguousarray(log.transform.projection,
                                                                                 dtype=np.float32)})
        save_numpy({"popularity": popularity.astype(np.float32), "histories": histories, **times, **searched,
                    **{k: np.ascontiguousarray(v) for k, v in feature_arrays.items()}},
                   str(staging / "extras.safetensors"))
        if log is not None:  # the searches it trained with: it serves and re-evaluates without a snapshot too
            (staging / "searches.json").write_text(json.dumps({
                "queries": log.queries, "encoder": log.encoder,
                "transform": None if log.transform is None else {
                    "kind": log.transform.kind, "fitted_items": log.transform.fitted_items,
                    "fitted_at": log.transform.fitted_at.isoformat()}}))
        (staging / "config.json").write_text(config.model_dump_json(indent=2))
        (staging / "ids.json").write_text(json.dumps({"users": users.ids, "items": items.ids}))
        (staging / "features.json").write_text(json.dumps({"user": _feature_meta(user_features),
                                                           "item": _feature_meta(item_features)}))
        item_frame.write_parquet(staging / "items.parquet")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        manifest = {"name": config.name, "version": version, "created_at": datetime.now(UTC).isoformat(),
                    "domain": config.domain, "num_users": len(users), "num_items": len(items),
                    **(extra_manifest or {})}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return base / str(version)


def _table(meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> FeatureTable:
    """Rebuild a feature table in the saved field order (encoders concatenate in that order)."""
    return FeatureTable(
        {name: arrays[f"{prefix}.cat:{name}"] for name in meta["categorical"]},
        {name: arrays[f"{prefix}.num:{name}"] for name in meta["numeric"]},
        {name: arrays[f"{prefix}.vec:{name}"] for name in meta["vectors"]},
        meta["vocabularies"],
        {k: tuple(v) for k, v in meta["numeric_stats"].items()},
    )


def _damaged(path: Path, file: str, problem: str) -> DataError:
    return DataError(f"bundle {path}: {file} {problem}")


@contextmanager
def _reading(path: Path, file: str) -> Iterator[None]:
    """Turn a failure to read or decode ``file`` into one ``DataError`` line naming the
    bundle and the file, so a damaged or half-written bundle is refused, never half-loaded."""
    try:
        yield
    except EngineError:
        raise
    except FileNotFoundError:
        raise _damaged(path, file, "is missing") from None
    except ValidationError as exc:
        raise _damaged(path, file, f"is not a valid pipeline config ({_problems(exc)})") from None
    except KeyError as exc:
        raise _damaged(path, file, f"lacks {exc}") from None
    except (OSError, ValueError, TypeError, SafetensorError, pl.exceptions.PolarsError) as exc:
        reason = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise _damaged(path, file, f"is unreadable (truncated or corrupt?): {reason}") from None


def _problems(exc: ValidationError) -> str:
    """A validation error's first problems, on one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:3])


@contextmanager
def _building(path: Path) -> Iterator[None]:
    """Turn a config.json that validates but cannot build its model (an unknown component,
    parameters the component refuses, sizes a torch layer cannot take) into one ``DataError``
    line naming the bundle, config.json and the fault."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc.__context__, ValidationError):  # a ConfigError over a component's parameters
            reason = f"{str(exc).splitlines()[0]} {_problems(exc.__context__)}"
        elif isinstance(exc, EngineError):
            reason = " ".join(str(exc).split())
        else:  # torch's own refusal (a negative layer size...), or a component's bug
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        message = str(_damaged(path, "config.json", f"describes a model that cannot be built: {reason}"))
        if isinstance(exc, UnknownComponentError):
            raise UnknownBundleComponent(message, exc.family, exc.name, exc.known) from exc
        raise DataError(message) from exc


class UnknownBundleComponent(DataError, UnknownComponentError):
    """config.json names a component no loaded plugin registers (its plugin is not installed
    here, say): a bundle that cannot load, and still the ``UnknownComponentError`` it is."""

    def __init__(self, message: str, family: str, name: str, known: list[str]) -> None:
        Exception.__init__(self, message)
        self.family, self.name, self.known = family, name, known

    def __reduce__(self) -> tuple[type[UnknownBundleComponent], tuple[str, str, str, list[str]]]:
        return type(self), (str(self), self.family, self.name, self.known)  # pickles across processes (Ray)


def _check_weights(path: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse weights that do not fit the model config.json describes, naming the tensors."""
    problems = [f"tensor {name!r} has shape {list(found[name].shape)}, the config's model expects "
                f"{list(tensor.shape)}" for name, tensor in expected.items()
                if name in found and found[name].shape != tensor.shape]
    problems += [f"tensor {name!r} is missing" for name in expected if name not in found]
    problems += [f"tensor {name!r} is not in the config's model" for name in found if name not in expected]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise _damaged(path, "weights.safetensors", f"does not match config.json: {'; '.join(problems[:3])}{more}")


def resolve_bundle(name_or_path: str | Path, root: str | Path | None = None, version: int | None = None) -> Path:
    """A bundle directory from a path, or from a name (latest version unless given)."""
    path = Path(name_or_path)
    if any((path / file).exists() for file in ("manifest.json", "config.json", "weights.safetensors")):
        return path  # a bundle directory, whole or not (load_bundle says what is missing)
    base = models_root(root) / str(name_or_path)
    if not base.is_dir():
        known = sorted(p.name for p in models_root(root).iterdir()) if models_root(root).is_dir() else []
        raise NotFoundError(f"no model bundle {str(name_or_path)!r} under {models_root(root)}; "
                          f"known: {known or 'none'} (train one with `recengine train`)")
    versions = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise NotFoundError(f"model {name_or_path!r} has no versions under {base}")
    chosen = version if version is not None else versions[-1]
    if chosen not in versions:
        raise NotFoundError(f"model {name_or_path!r} has no version {chosen}; versions: {versions}")
    return base / str(chosen)


def resolve_bundle_label(models: str | Path, given: str) -> Path:
    """``name/version`` (e.g. ``news/4``), ``name`` (its newest version) or a bundle directory,
    resolved to the bundle's directory under ``models``."""
    path = Path(given)
    if path.is_dir():
        return path.resolve()
    name, _, version = given.partition("/")
    if version and not version.isdigit():
        raise ConfigError(f"bundle {given!r}: expected <name>/<version> with a whole-number version, e.g. news/4")
    return resolve_bundle(name, models, int(version) if version else None).resolve()


def read_manifest(path: Path) -> dict[str, Any]:
    """A bundle's manifest (``DataError`` when it is missing or damaged: a half-written bundle)."""
    with _reading(path, "manifest.json"):
        manifest = json.loads((path / "manifest.json").read_text())
        _ = manifest["name"], int(manifest["version"])
    return dict(manifest)


def load_bundle(name_or_path: str | Path, root: str | Path | None = None, version: int | None = None,
                device: str = "cpu") -> Bundle:
    """Rebuild the model from its config, feature buffers and weights (safetensors only).

    A missing, truncated or inconsistent file (weights that do not fit the config's model, or
    a config.json whose model cannot be built, included) raises ``DataError`` naming the
    bundle, the file and the fault."""
    path = resolve_bundle(name_or_path, root, version)
    with _reading(path, "manifest.json"):  # written last: without it the bundle is half-written
        manifest = json.loads((path / "manifest.json").read_text())
        _ = manifest["name"], int(manifest["version"])  # what Bundle.name and .version read
    with _reading(path, "config.json"):
        config = PipelineConfig.model_validate_json((path / "config.json").read_text())
    with _reading(path, "ids.json"):
        ids = json.loads((path / "ids.json").read_text())
        users, items = IdMap(list(ids["users"])), IdMap(list(ids["items"]))
    with _reading(path, "features.json"):
        raw_meta = json.loads((path / "features.json").read_text())
        meta = {side: {key: raw_meta[side][key] for key in FEATURE_META_KEYS} for side in ("user", "item")}
    with _reading(path, "extras.safetensors"):
        extras = load_numpy(str(path / "extras.safetensors"))
        user_table, item_table = _table(meta["user"], extras, "user"), _table(meta["item"], extras, "item")
        popularity, histories = extras["popularity"], extras["histories"]
        history_times = extras.get("history_times")
    search_log = _search_log(path, config, extras) if config.model.searches is not None else None
    user_spec = user_table.spec(len(users))
    if search_log is not None:
        user_spec.vectors[SEARCH_FEATURE] = search_log.dim
    with _building(path):
        # the model's components as training checks them (names, parameters, roles, the sequence an
        # interactor needs); not the rankers: the recommender builds those, and evaluation needs none
        validate_components(config.model_copy(update={"ranking": RankingConfig(rankers=[])}))
        model = RecModel(config.model, user_spec, item_table.spec(len(items)),
                         user_table.to_arrays(), item_table.to_arrays(), normalize=config.train.normalize,
                         initialise=False)
    with _reading(path, "weights.safetensors"):
        state = load_file(str(path / "weights.safetensors"), device=device)
    state.setdefault("known_items", model.known_items)  # bundles from before cold-item masking
    _check_weights(path, state, model.state_dict())
    model.load_state_dict(state)
    model.search_log = search_log
    model.to(device).eval()
    with _reading(path, "items.parquet"):
        item_frame = pl.read_parquet(path / "items.parquet")
    with _reading(path, "metrics.json"):
        metrics = json.loads((path / "metrics.json").read_text())
    return Bundle(
        path=path, config=config, model=model, users=users, items=items,
        popularity=popularity, histories=histories, item_table=item_table,
        item_frame=item_frame, metrics=metrics, manifest=manifest, history_times=history_times,
    )


def _search_log(path: Path, config: PipelineConfig, extras: dict[str, np.ndarray]) -> SearchLog:
    """The searches a ``model.searches`` bundle trained with (``searches.json`` + its extras)."""
    settings = config.model.searches
    assert settings is not None
    with _reading(path, "searches.json"):
        saved = json.loads((path / "searches.json").read_text())
        queries = list(saved["queries"])
        users, times, query_index, vectors = (extras[f"search_{name}"]
                                              for name in ("users", "times", "query_index", "query_vectors"))
        transform = None
        if saved.get("transform"):
            described = saved["transform"]
            transform = VectorTransform(described["kind"], extras["search_transform_mean"],
                                        extras["search_transform_projection"], int(described["fitted_items"]),
                                        datetime.fromisoformat(described["fitted_at"]))
    age = None if settings.max_age_days is None else int(settings.max_age_days * 86_400)
    return SearchLog(users, times, query_index, queries, vectors, settings.last, age,
                     encoder=saved.get("encoder"), transform=transform)


def list_bundles(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every bundle version under the models root, with its manifest and headline metric."""
    base = models_root(root)
    rows: list[dict[str, Any]] = []
    if not base.is_dir():
        return rows
    for manifest in sorted(base.glob("*/*/manifest.json")):
        info = json.loads(manifest.read_text())
        metrics_file = manifest.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        info["path"] = str(manifest.parent)
        info["test_ndcg@10"] = metrics.get("test", {}).get("ndcg@10")
        rows.append(info)
    return sorted(rows, key=lambda r: (r["name"], int(r["version"])))


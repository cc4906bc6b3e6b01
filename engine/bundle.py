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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from recengine.config import PipelineConfig
from recengine.data import FeatureTable, IdMap, pad_histories
from recengine.errors import NotFoundError
from recengine.model import RecModel

DEFAULT_MODELS_DIR = "models"


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


def save_bundle(root: str | Path | None, config: PipelineConfig, model: RecModel, *, users: IdMap, items: IdMap,
                user_features: FeatureTable, item_features: FeatureTable, popularity: np.ndarray,
                user_sequences: list[np.ndarray], item_frame: pl.DataFrame, metrics: dict[str, Any],
                extra_manifest: dict[str, Any] | None = None) -> Path:
    """Write a new version of bundle ``config.name``; returns its directory."""
    base = models_root(root) / config.name
    base.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    version = max(versions, default=0) + 1
    staging = base / f".{version}.tmp-{os.getpid()}"
    staging.mkdir()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(staging / "weights.safetensors"))
    feature_arrays = {f"user.{k}": v for k, v in user_features.to_arrays().items()}
    feature_arrays.update({f"item.{k}": v for k, v in item_features.to_arrays().items()})
    histories = pad_histories(user_sequences + [np.zeros(0, dtype=np.int64)] * (len(users) + 1 - len(user_sequences)),
                              config.model.max_history)
    save_numpy({"popularity": popularity.astype(np.float32), "histories": histories,
                **{k: np.ascontiguousarray(v) for k, v in feature_arrays.items()}},
               str(staging / "extras.safetensors"))
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
    final = base / str(version)
    os.replace(staging, final)
    return final


def _table(meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> FeatureTable:
    """Rebuild a feature table in the saved field order (encoders concatenate in that order)."""
    return FeatureTable(
        {name: arrays[f"{prefix}.cat:{name}"] for name in meta["categorical"]},
        {name: arrays[f"{prefix}.num:{name}"] for name in meta["numeric"]},
        {name: arrays[f"{prefix}.vec:{name}"] for name in meta["vectors"]},
        meta["vocabularies"],
        {k: tuple(v) for k, v in meta["numeric_stats"].items()},
    )


def resolve_bundle(name_or_path: str | Path, root: str | Path | None = None, version: int | None = None) -> Path:
    """A bundle directory from a path, or from a name (latest version unless given)."""
    path = Path(name_or_path)
    if (path / "manifest.json").exists():
        return path
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


def load_bundle(name_or_path: str | Path, root: str | Path | None = None, version: int | None = None,
                device: str = "cpu") -> Bundle:
    """Rebuild the model from its config, feature buffers and weights (safetensors only)."""
    path = resolve_bundle(name_or_path, root, version)
    config = PipelineConfig.model_validate_json((path / "config.json").read_text())
    ids = json.loads((path / "ids.json").read_text())
    users, items = IdMap(ids["users"]), IdMap(ids["items"])
    meta = json.loads((path / "features.json").read_text())
    extras = load_numpy(str(path / "extras.safetensors"))
    user_table, item_table = _table(meta["user"], extras, "user"), _table(meta["item"], extras, "item")
    model = RecModel(config.model, user_table.spec(len(users)), item_table.spec(len(items)),
                     user_table.to_arrays(), item_table.to_arrays())
    state = load_file(str(path / "weights.safetensors"), device=device)
    state.setdefault("known_items", model.known_items)  # bundles from before cold-item masking
    model.load_state_dict(state)
    model.to(device).eval()
    return Bundle(
        path=path, config=config, model=model, users=users, items=items,
        popularity=extras["popularity"], histories=extras["histories"], item_table=item_table,
        item_frame=pl.read_parquet(path / "items.parquet"),
        metrics=json.loads((path / "metrics.json").read_text()),
        manifest=json.loads((path / "manifest.json").read_text()),
    )


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


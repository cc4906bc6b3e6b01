"""Pipeline configuration (pydantic), loaded from TOML or built from CLI flags, validated
against the registered components before anything trains."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recengine.errors import ConfigError
from recengine.feature_store.protocols import SplitProtocol
from recengine.plugin_manager import PluginManager, get_plugin_manager
from recengine.retrieval import RetrievalKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentRef(Strict):
    """A registered component by name, with its own parameter section."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SearchesConfig(Strict):
    """The user tower's recent-search input (``recengine.searches``): what users typed, pooled."""

    vectors: str = Field(description="Vector set whose text model embedded the store's search queries "
                                     "(`recengine vectors build` embeds them beside the items).")
    last: int = Field(5, ge=1, le=1000, description="Pool (average) the user's last N searches before each prediction.")
    max_age_days: float | None = Field(
        30.0, gt=0, description="Searches older than this at the prediction's time are left out; None keeps all.")


class ModelConfig(Strict):
    dim: int = Field(64, ge=2, le=4096)
    max_history: int = Field(50, ge=1, le=100_000)
    user_encoder: ComponentRef = ComponentRef(name="transformer")
    item_encoder: ComponentRef = ComponentRef(name="dense", params={"use_features": False})
    interactor: ComponentRef = ComponentRef(name="dot")
    user_features: list[str] | Literal["auto"] = "auto"
    item_features: list[str] | Literal["auto"] = "auto"
    item_vectors: list[str] = Field(default_factory=list, description="Vector sets the item tower reads.")
    searches: SearchesConfig | None = Field(
        None, description="Feed the user tower the pooled vector of the user's recent searches (`vec:searches`); "
                          "needs a user encoder that reads vector inputs (dense) and pairs training.")


class TrainConfig(Strict):
    protocol: SplitProtocol = "seq"
    fold: int = Field(0, ge=0, description="Test fold of the rating protocol (k-fold cross-validation).")
    folds: int = Field(5, ge=3)
    objective: Literal["softmax", "bpr", "mse"] = "softmax"
    mode: Literal["auto", "sequence", "pairs"] = Field(
        "auto", description="sequence: predict every next item (sequence encoders); pairs: one target per event")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    negatives: int = Field(0, ge=0, description="Sampled negatives of the softmax objective (BPR: per row); 0 = the "
                                                "full softmax over all items (or in-batch negatives alone).")
    sampling: Literal["per_row", "shared"] = Field(
        "per_row", description="per_row: every training position draws and embeds its own negatives; shared: one draw "
                               "of `negatives` items per step, embedded once and scored against every position "
                               "with one matrix product (accidental hits masked per position).")
    in_batch_negatives: bool = Field(
        False, description="Also use the step's other targets (each distinct item once) as negatives; a position's "
                           "own target among them is masked.")
    sampler: Literal["uniform", "popularity"] = Field(
        "uniform", description="Distribution of sampled negatives: uniform over the catalogue, or training "
                               "popularity^sampler_power (items without training events are never drawn).")
    sampler_power: float = Field(0.75, gt=0, le=1, description="Smoothing exponent of the popularity sampler.")
    logq_correction: bool = Field(
        True, description="Subtract log Q(i) from every candidate logit (the target's too), Q(i) the expected count "
                          "of item i among the step's candidates: negatives·q(i) for sampled ones, 1-(1-p(i))^P for "
                          "the distinct in-batch targets (p: training frequency, P: positions in the step). A "
                          "constant, so no change, for uniform sampled negatives alone.")
    normalize: bool = Field(
        False, description="L2-normalise user and item vectors (training, ranking and serving alike): scores are "
                           "cosines and the softmax logits cosine / temperature. Needs the dot interactor.")
    temperature: float | Literal["learn"] | None = Field(
        None, description="Softmax temperature of the cosine logits (normalize = true only): a number, or 'learn' "
                          "(a trained scalar, started at 0.1, kept >= 0.01); None = 0.1.")
    softmax_chunk: int | None = Field(
        None, ge=1, description="Compute the full softmax over chunks of this many items with a streaming "
                                "logsumexp (the same loss and gradients), so memory is bounded by positions x chunk "
                                "instead of positions x catalogue; full softmax only (negatives = 0, no in-batch).")
    exclude_seen: bool = Field(
        False, description="Softmax objective: no training position's softmax has among its negatives an item its "
                           "user interacted with before it (sequence mode: the window's earlier items; pairs mode: "
                           "the history, which the user tower must read), as the exclude-seen ranker hides them at "
                           "serving; the target itself stays a candidate. Aims the loss at the masked ranking; "
                           "unmasked rankings of seen items are left untrained.")
    trim_padding: bool = Field(
        True, description="Sequence mode with a padding-invariant user encoder (transformer, hstu): cut each batch "
                          "to its longest window, so all-padding columns cost nothing (the same outputs; only "
                          "dropout's draws differ). False computes every batch at max_history, as before.")
    length_buckets: int = Field(
        0, ge=0, description="Sequence mode: group windows of similar length into batches, sorting pools of this "
                             "many random batches by length (0 = off: batches are uniformly random). With a "
                             "padding-invariant user encoder (transformer, hstu) every batch drops its "
                             "all-padding columns anyway; bucketing makes that cut deep when most histories are "
                             "much shorter than max_history. Batches stay in random order.")
    patience: int = Field(5, ge=1, description="Epochs without a better validation NDCG@10 before stopping.")
    seed: int = 0
    split_seed: int = 2020
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Mixed precision for the forward pass: bf16 (CUDA or CPU) or fp16 (CUDA only, with a "
                            "gradient scaler); weights and optimiser state stay fp32.")
    max_minutes: float | None = Field(None, gt=0)
    event_weights: dict[str, float] = Field(default_factory=dict)
    weight_by_value: bool = False
    eval_batch: int = Field(512, ge=1)
    valid_users: int | None = Field(
        None, ge=1, description="Validate after each epoch on a sample of this many validation users, drawn with "
                                "split_seed: the same users every epoch (and every run of the split); None = all. "
                                "Each validation user ranks the whole catalogue, so at a million users and items "
                                "the full validation costs more than the epoch.")
    test_users: int | None = Field(
        None, ge=1, description="Test the finished model on a sample of this many test users, the ones `recengine "
                                "evaluate --sample-users N` ranks (seed 0); None = all. The bundle's metrics "
                                "record the sample (test_users) and the split's whole count (all_test_users).")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default, one per core); "
                                                       "1 is often faster on a shared or oversubscribed machine.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {value!r}")
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not value > 0:
            raise ValueError(f"temperature must be > 0 (or 'learn'), got {value}")
        return value

    @model_validator(mode="after")
    def _softmax_recipe(self) -> TrainConfig:
        """Option combinations that would be silently meaningless are refused with the reason."""
        sampled = self.negatives > 0
        if self.objective != "softmax" and (self.in_batch_negatives or self.normalize or self.softmax_chunk
                                            or self.sampling == "shared" or self.exclude_seen):
            raise ValueError(f"sampling = 'shared', in_batch_negatives, normalize, softmax_chunk and exclude_seen are "
                             f"options of the softmax objective, not {self.objective!r}")
        if self.sampler == "popularity" and not sampled:
            raise ValueError("sampler = 'popularity' draws sampled negatives: set negatives > 0")
        if self.softmax_chunk is not None and (sampled or self.in_batch_negatives):
            raise ValueError("softmax_chunk chunks the full softmax: it needs negatives = 0 and no in-batch negatives")
        if self.temperature is not None and not self.normalize:
            raise ValueError("temperature scales cosine logits: set normalize = true (raw dot logits learn their "
                             "own scale through the vectors' norms)")
        return self


class RankingConfig(Strict):
    rankers: list[ComponentRef] = Field(
        default_factory=lambda: [ComponentRef(name="popularity-fallback"), ComponentRef(name="exclude-seen"),
                                 ComponentRef(name="topk")])
    candidates: int = Field(200, ge=1, description="Items retrieved before scoring and ranking.")
    retrieval: RetrievalKind = Field(
        "auto", description="How candidates are retrieved: exact scan of the catalogue, or an IVF index (faiss) "
                            "calibrated to retrieval_recall; auto = IVF from 50k items on.")
    retrieval_recall: float = Field(0.95, gt=0, le=1, description="Recall@candidates the IVF index is calibrated "
                                                                   "to reach against the exact scan.")


class PipelineConfig(Strict):
    name: str = Field("model", pattern=r"^[A-Za-z0-9_.-]+$")
    domain: str | None = None
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    ranking: RankingConfig = RankingConfig()

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: invalid config:\n{exc}") from None

    def with_overrides(self, overrides: dict[str, Any]) -> PipelineConfig:
        """A copy with dotted keys replaced (``{"train.epochs": 3, "model.user_encoder.name": "dense"}``)."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            target = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                target = target[key]
            target[leaf] = value
        try:
            return PipelineConfig.model_validate(data)
        except ValidationError as exc:
            changed = ", ".join(k for k, v in overrides.items() if v is not None)
            raise ConfigError(f"invalid setting ({changed}):\n{exc}") from None


def validate_components(config: PipelineConfig, manager: PluginManager | None = None) -> None:
    """Check every named component exists, its parameters pass its ``Config``, each encoder
    can take its role and the interactor gets the sequence it needs (``ConfigError`` otherwise)."""
    manager = manager or get_plugin_manager()
    refs = [("encoders", "model.user_encoder", config.model.user_encoder),
            ("encoders", "model.item_encoder", config.model.item_encoder),
            ("interactors", "model.interactor", config.model.interactor)]
    refs += [("rankers", f"ranking.rankers[{i}]", ref) for i, ref in enumerate(config.ranking.rankers)]
    for family, where, ref in refs:
        manager.component_config(family, ref, where)
    for role, ref in (("user", config.model.user_encoder), ("item", config.model.item_encoder)):
        roles = manager.get("encoders", ref.name).roles
        if role not in roles:
            raise ConfigError(f"encoder {ref.name!r} cannot be the {role} encoder (it encodes: {', '.join(roles)})")
    interactor = manager.get("interactors", config.model.interactor.name)
    user_encoder = manager.get("encoders", config.model.user_encoder.name)
    if interactor.needs_sequence and not (
        user_encoder.produces_sequence or config.model.user_encoder.params.get("use_history")
    ):
        raise ConfigError(
            f"interactor {config.model.interactor.name!r} needs a history sequence: use a sequence user encoder "
            f"(e.g. transformer) or set model.user_encoder.params.use_history = true")
    if config.model.searches is not None and not user_encoder.reads_vector_inputs(config.model.user_encoder.params):
        raise ConfigError(
            f"model.searches feeds the user tower a vector input (vec:searches), which user encoder "
            f"{config.model.user_encoder.name!r} does not read with these parameters: use the dense user encoder "
            f"with use_features = true")
    if config.model.searches is not None and config.train.mode == "sequence":
        raise ConfigError("model.searches gives one pooled vector per prediction: train in pairs mode "
                          "(train.mode = 'pairs'), not sequence mode")

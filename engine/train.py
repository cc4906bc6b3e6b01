"""The training loop: one function for local runs and Ray Train workers alike.

Two modes: ``sequence`` trains a sequence user encoder to predict every next item of each
user's history at once (SASRec-style, the fast way); ``pairs`` trains on one (user,
history-before-event, item) sample per event, for any encoder/interactor pair and for the
MSE rating objective. Objectives: full or sampled softmax, BPR, MSE.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from recengine.components import Encoded, seed_everything
from recengine.config import PipelineConfig
from recengine.disk_space import disk_full_is_engine_error
from recengine.errors import ConfigError
from recengine.eval_sample import sampled_for_validation
from recengine.evaluate import validation_score
from recengine.event_times import TIMES_MISSING
from recengine.model import RecModel, resolve_device
from recengine.searches import SEARCH_FEATURE, SearchLog
from recengine.softmax import (
    CandidateCounts,
    NegativeSampler,
    SeenItems,
    Temperature,
    chunked_full_softmax_loss,
    full_softmax_loss,
    sampled_softmax_loss,
)
from recengine.sparse_rows import make_optimizer
from recengine.training_data import PreparedData
from recengine.windows import sequence_windows

EpochReport = Callable[[dict[str, Any], "RecModel"], None]


@dataclass
class TrainResult:
    model: RecModel
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "pairs"

    @property
    def epoch_seconds(self) -> float:
        times = [h["seconds"] for h in self.history]
        return float(np.mean(times)) if times else 0.0


def build_model(config: PipelineConfig, data: PreparedData) -> RecModel:
    """The configured model over ``data``'s features (and its search log, for ``model.searches``)."""
    user_spec = data.user_features.spec(len(data.users))
    if config.model.searches is not None:
        if data.searches is None:
            raise ConfigError("model.searches: this training data carries no searches (prepare it from a store "
                              "with this config; an exported training snapshot holds none)")
        user_spec.vectors[SEARCH_FEATURE] = data.searches.dim
    model = RecModel(
        config.model, user_spec, data.item_features.spec(len(data.items)),
        data.user_features.to_arrays(), data.item_features.to_arrays(), known_items=data.popularity > 0,
        normalize=config.train.normalize,
    )
    model.search_log = data.searches
    return model


def training_mode(config: PipelineConfig, model: RecModel) -> str:
    """``sequence`` when a sequence encoder meets an interactor that can score all positions."""
    if config.train.mode != "auto":
        return config.train.mode
    sequence_ok = model.user_encoder.produces_sequence and not model.interactor.needs_sequence
    return "sequence" if sequence_ok and config.train.objective == "softmax" else "pairs"


# ---------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------


def _shard(order: np.ndarray, shard: tuple[int, int]) -> np.ndarray:
    """This worker's rows of a permutation every worker shares: equal-sized, disjoint shards,
    so data-parallel workers run the same number of steps (a remainder row is dropped)."""
    rank, world = shard
    usable = (order.size // world) * world
    return order[:usable][rank::world]


class PairBatches:
    """(user, history before the event, item, weight, value) samples in shuffled batches."""

    def __init__(self, data: PreparedData, max_history: int, times: np.ndarray | None = None,
                 searches: SearchLog | None = None) -> None:
        """``times``: the events' epoch seconds, for a user encoder that reads them; each batch
        then ends with the history's times [B, L] and the event's own time [B] (its query time).
        ``searches``: each batch ends (last) with the user's pooled recent searches before the event [B, d]."""
        inter = data.interactions
        self.users, self.items, self.weights, self.values = inter.users, inter.items, inter.weights, inter.values
        self.times = times
        self.searches = searches
        if searches is not None and inter.times is None:
            raise ConfigError("model.searches pools searches as of each event: this training data has no event times")
        self.event_times = inter.times
        starts = np.searchsorted(self.users, self.users, side="left")
        self.positions = np.arange(self.users.size)
        self.offsets = np.arange(-max_history, 0)
        self.starts = starts

    def __len__(self) -> int:
        return int(self.users.size)

    @property
    def rows(self) -> int:
        return int(self.users.size)

    def batches(self, batch_size: int, rng: np.random.Generator, shard: tuple[int, int] = (0, 1)):
        order = _shard(rng.permutation(self.users.size), shard)
        for begin in range(0, order.size, batch_size):
            rows = order[begin:begin + batch_size]
            index = self.positions[rows, None] + self.offsets[None, :]
            real = index >= self.starts[rows, None]
            history = np.where(real, self.items[np.clip(index, 0, None)], 0)
            batch: tuple[np.ndarray, ...] = (self.users[rows], history, self.items[rows], self.weights[rows],
                                              self.values[rows])
            if self.times is not None:
                batch += (np.where(real, self.times[np.clip(index, 0, None)], 0), self.times[rows])
            if self.searches is not None and self.event_times is not None:
                batch += (self.searches.pool(self.users[rows], self.event_times[rows]),)
            yield batch


class SequenceBatches:
    """Windows of each user's training sequence: inputs [L] and next-item targets [L]."""

    def __init__(self, data: PreparedData, max_history: int, trim: bool = False, length_buckets: int = 0,
                 times: np.ndarray | None = None) -> None:
        """``trim``: cut each batch to its longest window (the user encoder is padding-invariant);
        ``length_buckets``: sort pools of that many random batches by window length first;
        ``times``: the events' epoch seconds, for a user encoder that reads them: each batch then
        ends with the inputs' times [B, L] and the last target's time [B] (the query time)."""
        inter = data.interactions
        self.inputs, self.targets, self.weights, self.owners = sequence_windows(inter.users, inter.items,
                                                                                 inter.weights, max_history)
        self.input_times: np.ndarray | None = None
        self.query_times: np.ndarray | None = None
        if times is not None:  # the same windows over the times (positions alone decide the gather)
            self.input_times, target_times, _, _ = sequence_windows(inter.users, times, inter.weights, max_history)
            self.query_times = target_times[:, -1]  # a window always ends at a real target
        self.trim = trim
        self.length_buckets = length_buckets
        self.lengths = (self.targets > 0).sum(axis=1)  # real positions of each (left-padded) window

    def __len__(self) -> int:
        return int((self.targets > 0).sum())

    @property
    def rows(self) -> int:
        return int(self.owners.size)

    def batches(self, batch_size: int, rng: np.random.Generator, shard: tuple[int, int] = (0, 1)):
        order = _shard(rng.permutation(self.owners.size), shard)
        starts = list(range(0, order.size, batch_size))
        if self.length_buckets:
            order = _sorted_pools(order, self.lengths, batch_size * self.length_buckets)
            starts = rng.permutation(starts).tolist()  # similar lengths within a batch, batches in random order
        for begin in starts:
            rows = order[begin:begin + batch_size]
            # a padding-invariant encoder gives the same outputs without the all-padding columns
            width = int(self.lengths[rows].max()) if self.trim else self.inputs.shape[1]
            cols = slice(self.inputs.shape[1] - width, None)
            batch: tuple[np.ndarray, ...] = (self.owners[rows], self.inputs[rows, cols], self.targets[rows, cols],
                                              self.weights[rows, cols])
            if self.input_times is not None and self.query_times is not None:
                batch += (self.input_times[rows, cols], self.query_times[rows])
            yield batch


def _sorted_pools(order: np.ndarray, lengths: np.ndarray, pool: int) -> np.ndarray:
    """``order`` with each consecutive pool of ``pool`` rows sorted by descending length (stable)."""
    out = order.copy()
    for begin in range(0, order.size, pool):
        part = order[begin:begin + pool]
        out[begin:begin + pool] = part[np.argsort(-lengths[part], kind="stable")]
    return out


# ---------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (loss * weights).sum() / weights.sum().clamp(min=1e-6)


def _bpr_loss(model: RecModel, user, targets: torch.Tensor, weights: torch.Tensor, negatives: int,
              generator: torch.Generator) -> torch.Tensor:
    count = max(1, negatives)
    sampled = torch.randint(1, model.num_items + 1, (targets.shape[0], count), generator=generator,
                            device=targets.device)
    scores = model.interactor.score(user, model.embed_items(torch.cat([targets.unsqueeze(1), sampled], 1)))
    loss = -F.logsigmoid(scores[:, :1] - scores[:, 1:]).mean(1)
    return _weighted_mean(loss, weights)


class LossModule(torch.nn.Module):
    """The model plus its training objective as one module, so ``forward(batch)`` returns the
    loss: data-parallel wrappers (DDP via Ray Train's ``prepare_model``) see every parameter
    used in the forward pass (a learnt temperature too) and average gradients in ``backward``.

    The softmax objective follows ``TrainConfig``'s recipe (see :mod:`recengine.softmax`):
    full or chunked full softmax, or sampled negatives per row or shared per step, in-batch
    negatives, a uniform or popularity sampler, the logQ correction and the temperature.
    """

    def __init__(self, model: RecModel, config: PipelineConfig, mode: str, generator: torch.Generator,
                 popularity: np.ndarray | None = None) -> None:
        super().__init__()
        settings = config.train
        self.model = model
        self.config = config
        self.mode = mode
        self.generator = generator
        self.temperature = Temperature(settings.temperature, settings.normalize)
        device = model.device
        if settings.sampler == "popularity" and popularity is None:
            raise ConfigError("sampler 'popularity' needs the training popularity of every item")
        self.sampler = NegativeSampler(model.num_items, popularity if settings.sampler == "popularity" else None,
                                       settings.sampler_power, device)
        self.frequency: torch.Tensor | None = None
        if settings.in_batch_negatives and settings.logq_correction:
            if popularity is None:
                raise ConfigError("the logQ correction of in-batch negatives needs the training popularity")
            counts = torch.as_tensor(np.asarray(popularity, dtype=np.float64), device=device)
            self.frequency = (counts / counts.sum().clamp(min=1)).float()

    def forward(self, batch: tuple) -> torch.Tensor:
        return self._sequence_step(batch) if self.mode == "sequence" else self._pair_step(batch)

    def _pair_step(self, batch: tuple) -> torch.Tensor:
        model, settings = self.model, self.config.train
        users, history, items, weights, values, *extra = (torch.as_tensor(x, device=model.device) for x in batch)
        searches = extra.pop() if model.reads_searches else None  # PairBatches puts them last
        user = model.encode_users(users, history, _times(extra), searches)
        if settings.objective == "mse":
            predicted = model.interactor.score(user, model.embed_items(items))
            return _weighted_mean((predicted - values) ** 2, weights)
        if settings.objective == "bpr":
            return _bpr_loss(model, user, items, weights, settings.negatives, self.generator)
        seen = SeenItems.of_histories(history, model.num_items) if settings.exclude_seen else None
        return _weighted_mean(self.softmax_loss(user, items, seen), weights)

    def _sequence_step(self, batch: tuple) -> torch.Tensor:
        owners, inputs, targets, weights, *times = (torch.as_tensor(x, device=self.model.device) for x in batch)
        encoded = self.model.encode_users(owners, inputs, _times(times))
        real = targets > 0
        assert encoded.sequence is not None  # train() runs mode "sequence" only with a sequence encoder
        flat_user = type(encoded)(vector=encoded.sequence[real])
        seen = None
        if self.config.train.exclude_seen:
            rows, steps = real.nonzero(as_tuple=True)  # row-major, as the boolean index above
            seen = SeenItems(inputs, rows, steps, self.model.num_items)
        return _weighted_mean(self.softmax_loss(flat_user, targets[real], seen), weights[real])

    def softmax_loss(self, user: Encoded, targets: torch.Tensor, seen: SeenItems | None = None) -> torch.Tensor:
        """Per-position cross-entropy of ``targets`` [P] under the configured softmax recipe; ``seen``:
        the items each position's user had interacted with, left out of its negatives."""
        model, settings, temperature = self.model, self.config.train, self.temperature()
        if settings.negatives == 0 and not settings.in_batch_negatives:
            items = model.item_matrix()
            if settings.softmax_chunk:
                return chunked_full_softmax_loss(model.interactor, user, items, targets, settings.softmax_chunk,
                                                 temperature, seen)
            return full_softmax_loss(model.interactor, user, items, targets, temperature, seen)
        negatives = negative_vectors = in_batch = in_batch_vectors = None
        if settings.negatives:
            shape = (settings.negatives,) if settings.sampling == "shared" else (targets.shape[0], settings.negatives)
            negatives = self.sampler.draw(shape, self.generator)
            negative_vectors = model.embed_items(negatives)
        in_batch_columns = None
        if settings.in_batch_negatives:
            in_batch, in_batch_columns = torch.unique(targets, return_inverse=True)
            in_batch_vectors = model.embed_items(in_batch)
        counts = None
        if settings.logq_correction:
            counts = CandidateCounts(self.sampler, settings.negatives, self.frequency, targets.shape[0])
        # each target is embedded once: among the in-batch candidates when they are on
        target_vectors = model.embed_items(targets) if in_batch_vectors is None else in_batch_vectors[
            in_batch_columns]
        return sampled_softmax_loss(model.interactor, user, targets, target_vectors, negatives,
                                    negative_vectors, in_batch=in_batch, in_batch_vectors=in_batch_vectors,
                                    in_batch_columns=in_batch_columns, counts=counts, temperature=temperature,
                                    seen=seen)


def _times(extra: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A batch's trailing (history times, query times), present for time-reading encoders only."""
    return (extra[0], extra[1]) if extra else None


def check_recipe(config: PipelineConfig, closed_form: bool = False) -> None:
    """Refuse softmax options the model cannot honour (``ConfigError`` with the reason)."""
    if not config.train.normalize:
        return
    if config.model.interactor.name != "dot":
        raise ConfigError(f"normalize = true makes scores cosines of user and item vectors: it needs the dot "
                          f"interactor, not {config.model.interactor.name!r}")
    if closed_form:
        raise ConfigError(f"normalize = true rescales trained vectors; {config.model.user_encoder.name!r} is "
                          f"fitted in closed form and would only have its scores changed")


def mixed_precision(precision: str, device: torch.device) -> tuple[Callable[[], Any], torch.amp.GradScaler]:
    """An autocast context factory and a gradient scaler for ``precision``.

    bf16 keeps fp32's exponent range, so it needs no scaler; fp16 does (a disabled scaler
    is a pass-through for the other precisions). fp16 is refused off CUDA: CPU fp16 kernels
    are slow, and bf16 is the CPU choice.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA device (this run uses {device}); use 'bf16' or 'fp32'")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


# ---------------------------------------------------------------------------------------
# checkpoints (safetensors for tensors, JSON for the rest: never pickle)
# ---------------------------------------------------------------------------------------


CHECKPOINT_LEFT = "training stopped; the checkpoint there may be incomplete"  # what a full disk leaves


def save_checkpoint(directory: Path, model: RecModel, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """The model and optimiser state after an epoch; a full disk raises ``DiskFullError``."""
    with disk_full_is_engine_error(directory, CHECKPOINT_LEFT):
        _write_checkpoint(directory, model, optimizer, state)


def _write_checkpoint(directory: Path, model: RecModel, optimizer: torch.optim.Optimizer,
                      state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for param_id, values in opt_state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"opt.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{name}"] = value
    tmp = directory / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(directory / "checkpoint.safetensors")
    meta = {"state": state, "param_groups": opt_state["param_groups"], "opt_scalars": scalars}
    (directory / "checkpoint.json").write_text(json.dumps(meta, default=float))


def load_checkpoint(directory: Path, model: RecModel, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    weights = directory / "checkpoint.safetensors"
    if not weights.exists():
        return None
    tensors = load_file(str(weights), device=str(model.device))
    meta = json.loads((directory / "checkpoint.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, param_id, name = key.split(".", 2)
            opt_state["state"].setdefault(int(param_id), {})[name] = value
    for key, value in meta["opt_scalars"].items():
        param_id, name = key.split(".", 1)
        opt_state["state"].setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict(opt_state)
    return meta["state"]


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------


def _closed_form_result(config: PipelineConfig, data: PreparedData, model: RecModel, seconds: float,
                        report: EpochReport | None) -> TrainResult:
    """A model with nothing to train by gradient: evaluate it once as its single "epoch"."""
    model.eval()
    _, valid = validation_score(model, sampled_for_validation(data.interactions, config.train), config.train.eval_batch)
    record = {"epoch": 1, "loss": 0.0, "seconds": seconds,
              "samples_per_second": data.interactions.items.size / max(seconds, 1e-9),
              **{f"valid_{k}": v for k, v in valid.items()}}
    if report:
        report(record, model)
    return TrainResult(model=model, best_epoch=1, best_valid=valid, history=[record], mode="closed-form")


def train(config: PipelineConfig, data: PreparedData, *, checkpoint_dir: str | Path | None = None,
          resume: bool = True, progress: bool = True, report: EpochReport | None = None,
          shard: tuple[int, int] = (0, 1),
          wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> TrainResult:
    """Train until the validation score (NDCG@10; −RMSE for ratings) stops improving
    (``patience``), or the epoch/time budget ends.

    ``shard=(rank, world)`` and ``wrap_model`` (Ray Train's ``prepare_model``: DDP) let the
    same function run data-parallel: every worker shuffles alike, takes its own equal
    shard, and evaluates the same synchronised weights, so all stop at the same epoch.
    ``report`` is called after every epoch with its metrics (after the checkpoint is saved).
    """
    settings = config.train
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)  # identical initial weights on every worker
    device = resolve_device(settings.device)
    model = build_model(config, data).to(device)
    fit_started = time.perf_counter()
    for component in (model.user_encoder, model.item_encoder, model.interactor):  # closed form (EASE); else a no-op
        component.fit(data.interactions.users, data.interactions.items)
    closed_form = not any(p.requires_grad for p in model.parameters())
    check_recipe(config, closed_form)
    if closed_form:
        return _closed_form_result(config, data, model, time.perf_counter() - fit_started, report)
    autocast, scaler = mixed_precision(settings.precision, device)
    mode = training_mode(config, model)
    if mode == "sequence" and not model.user_encoder.produces_sequence:
        raise ConfigError(f"mode 'sequence' needs a sequence user encoder, not {config.model.user_encoder.name!r}")
    history_length = config.model.max_history if model.user_encoder.uses_history else 0
    if settings.exclude_seen and mode == "pairs" and not history_length:
        raise ConfigError(f"train.exclude_seen leaves each pair's history out of its negatives, and the user encoder "
                          f"{config.model.user_encoder.name!r} reads no history (a dense one reads it with "
                          f"use_history = true): nothing would be excluded")
    trim = settings.trim_padding and model.user_encoder.padding_invariant
    times = None
    if model.reads_event_times:
        if data.interactions.times is None:
            raise ConfigError(f"model.user_encoder ({config.model.user_encoder.name!r}): {TIMES_MISSING}; this "
                              f"training data has no event times (prepare it from a store with this config)")
        times = data.interactions.times
    if model.reads_searches and mode == "sequence":
        raise ConfigError("model.searches feeds the user tower one pooled vector per prediction: train it in pairs "
                          "mode (train.mode = 'pairs'), not sequence mode, which predicts every history position")
    batches = SequenceBatches(data, config.model.max_history, trim=trim, length_buckets=settings.length_buckets,
                              times=times) if mode == "sequence" else PairBatches(data, history_length, times,
                                                                                   data.searches)
    generator = torch.Generator(device=device).manual_seed(settings.seed + shard[0])  # negatives differ per worker
    rng = np.random.default_rng(settings.seed)  # the shuffle every worker shares
    objective = LossModule(model, config, mode, generator, data.popularity)
    trainable = wrap_model(objective) if wrap_model else objective
    # a learnt temperature is no weight: weight decay would pull it towards 1
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if learnt := list(objective.temperature.parameters()):
        groups.append({"params": learnt, "weight_decay": 0.0})
    # tables of a million ids update only their batch's rows (one process; DDP and fp16 keep dense Adam)
    optimizer = make_optimizer(model, groups, settings.lr, settings.weight_decay,
                               allow_sparse=wrap_model is None and shard[1] == 1 and settings.precision != "fp16")

    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir else None
    state: dict[str, Any] = {"epoch": 0, "best_epoch": 0, "best_score": -math.inf, "best_valid": {}, "history": [],
                             "stale": 0}
    best_state = None
    if checkpoint_path and resume:
        restored = load_checkpoint(checkpoint_path, model, optimizer)
        if restored:
            state = restored
            objective.temperature.restore(state.get("temperature"))
            best_file = checkpoint_path / "best.safetensors"
            if best_file.exists():
                best_state = load_file(str(best_file), device=str(device))
            rng = np.random.default_rng([settings.seed, state["epoch"]])
    validation = sampled_for_validation(data.interactions, settings)  # the same users every epoch
    started = time.perf_counter()
    # batch_size is the global batch: each of ``world`` workers takes its share, so a
    # data-parallel run makes the same optimiser steps per epoch as a local one
    batch_size = max(1, math.ceil(settings.batch_size / shard[1]))
    steps_per_epoch = math.ceil(batches.rows / shard[1] / batch_size)
    with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                  disable=not progress, transient=True) as bar:
        for epoch in range(state["epoch"] + 1, settings.epochs + 1):
            task = bar.add_task("train", total=steps_per_epoch, epoch=epoch, loss=0.0)
            epoch_start = time.perf_counter()
            trainable.train()
            total, count = 0.0, 0
            for batch in batches.batches(batch_size, rng, shard):
                with autocast():
                    loss = trainable(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total, count = total + loss.item(), count + 1
                bar.update(task, advance=1, loss=total / count)
            bar.remove_task(task)
            seconds = time.perf_counter() - epoch_start
            model.eval()
            score, valid = validation_score(model, validation, settings.eval_batch)
            record = {"epoch": epoch, "loss": total / max(count, 1), "seconds": seconds,
                      "elapsed": time.perf_counter() - started,  # training + validation so far
                      "samples_per_second": len(batches) / max(seconds, 1e-9), "workers": shard[1],
                      **{f"valid_{k}": v for k, v in valid.items()}}
            if settings.normalize:
                record["temperature"] = state["temperature"] = objective.temperature.value()
            state["history"].append(record)
            state["epoch"] = epoch
            if score > state["best_score"]:
                state.update(best_score=score, best_epoch=epoch, best_valid=valid, stale=0)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if checkpoint_path:
                    with disk_full_is_engine_error(checkpoint_path, CHECKPOINT_LEFT):
                        checkpoint_path.mkdir(parents=True, exist_ok=True)
                        save_file({k: v.cpu().contiguous() for k, v in best_state.items()},
                                  str(checkpoint_path / "best.safetensors"))
            else:
                state["stale"] += 1
            if checkpoint_path:
                save_checkpoint(checkpoint_path, model, optimizer, state)
            if report:
                report(record, model)
            out_of_time = settings.max_minutes and (time.perf_counter() - started) > settings.max_minutes * 60
            if state["stale"] >= settings.patience or out_of_time:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_epoch=state["best_epoch"], best_valid=state["best_valid"],
                       history=state["history"], mode=mode)


"""Synthetic data for the domain presets: :class:`SyntheticData` and the helpers that make it.

A domain's ``generate(users, items, events, seed)`` returns :class:`SyntheticData` (users,
items and events frames, ready to ingest). The presets in ``plugins/domains`` and third-party
domain plugins build it with the latent-taste helpers below (``from recengine import synthetic
as syn``).

Every domain generator (``plugins/domains``) follows the same recipe, vectorised with numpy
(no Python loop over users, items or events) so that ten million events take seconds:

1. Items belong to categories (a product category, a news topic, a genre, a community).
   Popularity is Zipf-shaped across categories and within each one, so a small share of
   items takes a large share of events.
2. Each user has a taste: a Dirichlet draw over categories around a prior that depends on
   the user's segment (age band, region...), so user attributes carry cold-start signal.
3. Activity is skewed: log-normal weights per user, split exactly by a multinomial.
4. Each event's category comes from the user's taste or, with probability ``stickiness``,
   repeats the category of the user's previous event (sequential structure). The item is
   then drawn by popularity within that category.
5. Timestamps lie in a fixed span (the 90 days before 2026-01-01) and rise along each
   user's sequence; item ``created_at`` never follows an item's first event.
6. Titles and descriptions are assembled from per-category word lists, so items of one
   category share topical words and text carries the category signal.

Weighted draws are multinomial counts or cumulative weights plus ``np.searchsorted`` (per
row or per group via offsets), never a users x items matrix. The helpers know nothing of the
engine or the feature store: they return numpy arrays and polars series that the domain
presets assemble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.errors import ConfigError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SPAN_END = datetime(2026, 1, 1)
SPAN_DAYS = 90
SPAN_START = SPAN_END - timedelta(days=SPAN_DAYS)

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of a naive datetime (polars ``Datetime("us")``)."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


START_US = to_us(SPAN_START)
END_US = to_us(SPAN_END)


EventSink = Callable[[pl.DataFrame], None]
"""Takes one chunk of a streamed generator's events (the events table's columns, in order)."""

# users, items, truth; a generator that makes search events returns them fourth (user_id, query, ts)
Build = Callable[[EventSink], tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]
                 | tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame]]
"""A streamed generator: hands its events to the sink chunk by chunk, then returns
``(users, items, truth)`` (items come last: their ``created_at`` depends on every event)."""


class SyntheticData:
    """Generated users, items and events of one domain, ready to ingest.

    Built either from whole frames (``SyntheticData(users=..., items=..., events=...)``) or,
    for event counts that would not fit in memory twice over, from a generator that streams
    its events in chunks (:meth:`streamed`): :meth:`write` then sends each chunk straight to
    ``events.parquet``, so peak memory follows the chunk size, not the number of events. The
    frames (``.users``, ``.items``, ``.events``, ``.truth``) are built on first access; for a
    streamed source that runs the generator (again, after a write: it is seeded, so the
    frames equal the files).
    """

    def __init__(self, users: pl.DataFrame, items: pl.DataFrame, events: pl.DataFrame,
                 truth: dict[str, Any] | None = None, searches: pl.DataFrame | None = None) -> None:
        """``truth``: what the generator knows and a model must learn (e.g. each user's taste over
        categories), for click simulators; never ingested. ``searches``: search events
        (user_id, query, ts), written to ``searches.parquet`` beside the events."""
        self._searches: pl.DataFrame | None = searches
        self._users: pl.DataFrame | None = users
        self._items: pl.DataFrame | None = items
        self._events: pl.DataFrame | None = events
        self._truth: dict[str, Any] | None = dict(truth or {})
        self._build: Build | None = None
        self._event_rows: int | None = events.height

    @classmethod
    def streamed(cls, build: Build) -> SyntheticData:
        """Data whose events ``build`` produces in chunks; nothing runs until it is written or read."""
        data = cls.__new__(cls)
        data._users = data._items = data._events = data._truth = data._searches = None
        data._build, data._event_rows = build, None
        return data

    # -- the frames ------------------------------------------------------------------------
    @property
    def users(self) -> pl.DataFrame:
        if self._users is None:
            self._materialise()
        assert self._users is not None
        return self._users

    @property
    def items(self) -> pl.DataFrame:
        if self._items is None:
            self._materialise()
        assert self._items is not None
        return self._items

    @property
    def events(self) -> pl.DataFrame:
        if self._events is None:
            self._materialise()
        assert self._events is not None
        return self._events

    @property
    def truth(self) -> dict[str, Any]:
        if self._truth is None:
            self._materialise()
        assert self._truth is not None
        return self._truth

    @property
    def searches(self) -> pl.DataFrame | None:
        """Search events (user_id, query, ts) when the generator makes them, else None."""
        if self._users is None:
            self._materialise()
        return self._searches

    def _keep(self, built: tuple[Any, ...]) -> None:
        """What a build returned: users, items, truth and (optionally) searches."""
        self._users, self._items, self._truth = built[0], built[1], built[2]
        self._searches = built[3] if len(built) > 3 else None

    def sizes(self) -> dict[str, int]:
        """Rows of users, items and events, without building frames a write already counted."""
        if self._event_rows is None:
            self._materialise()
        assert self._event_rows is not None
        searched = {} if self.searches is None else {"searches": self.searches.height}
        return {"users": self.users.height, "items": self.items.height, "events": self._event_rows, **searched}

    def _materialise(self) -> None:
        """Run a streamed generator with every chunk kept in memory."""
        assert self._build is not None
        chunks: list[pl.DataFrame] = []
        self._keep(self._build(chunks.append))
        self._events = pl.concat(chunks, rechunk=True) if len(chunks) != 1 else chunks[0]
        self._event_rows = self._events.height

    # -- files -----------------------------------------------------------------------------
    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``users.parquet``, ``items.parquet`` and ``events.parquet`` (and
        ``searches.parquet``, for a generator that makes searches) into ``out_dir``.

        Events of a streamed source go to the file chunk by chunk (one row group or more per
        chunk) through ``events.parquet.partial``, renamed once complete, so a failed run
        never leaves a truncated file that looks whole.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {kind: out / f"{kind}.parquet" for kind in ("users", "items", "events")}
        if self._events is None:
            self._stream_events(paths["events"])
        else:
            self._events.write_parquet(paths["events"])
        for kind in ("users", "items"):
            getattr(self, kind).write_parquet(paths[kind])
        if self.searches is not None:  # ingested as events: a row with a query and no item is a search
            paths["searches"] = out / "searches.parquet"
            self.searches.write_parquet(paths["searches"])
        return paths

    def _stream_events(self, path: Path) -> None:
        import pyarrow.parquet as pq

        assert self._build is not None
        partial = path.with_name(path.name + ".partial")
        writer: pq.ParquetWriter | None = None
        rows = 0

        def sink(chunk: pl.DataFrame) -> None:
            nonlocal writer, rows
            table = chunk.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
            rows += chunk.height

        try:
            self._keep(self._build(sink))
        except BaseException:
            if writer is not None:
                writer.close()
            partial.unlink(missing_ok=True)
            raise
        if writer is None:  # no event at all: an empty table of the schema
            raise ValueError("a streamed generator produced no event chunk")
        writer.close()
        partial.replace(path)
        self._event_rows = rows


# -- validation and ids ---------------------------------------------------------------------
def check_positive(**sizes: int) -> None:
    """Raise ``ValueError`` unless every named size is a positive integer."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def make_ids(prefix: str, n: int, width: int = 7) -> pl.Series:
    """``n`` ids ``prefix0000001``, ``prefix0000002``... (zero-padded to ``width`` digits)."""
    width = max(width, len(str(n)))
    digits = pl.int_range(1, n + 1, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str(pl.lit(prefix), digits)).to_series().alias("id")


def datetimes(us: npt.ArrayLike, name: str = "") -> pl.Series:
    """A polars ``Datetime("us")`` series from epoch microseconds."""
    return pl.Series(name, np.asarray(us, dtype=np.int64), dtype=pl.Int64).cast(pl.Datetime("us"))


# -- popularity and taste -------------------------------------------------------------------
def zipf_weights(n: int, exponent: float = 1.0) -> FloatArray:
    """Weights ``1 / rank**exponent`` for ranks 1..n (heaviest first)."""
    return np.arange(1, n + 1, dtype=np.float64) ** -exponent


def zipf_shares(rng: np.random.Generator, n: int, exponent: float = 1.0) -> FloatArray:
    """Zipf shares over ``n`` categories in random order, summing to 1."""
    weights = zipf_weights(n, exponent)[rng.permutation(n)]
    return weights / weights.sum()


def zipf_within_groups(
    rng: np.random.Generator, groups: npt.ArrayLike, exponent: float = 1.0
) -> FloatArray:
    """Zipf weight of each member by a random rank inside its own group.

    Popularity within a category: each category has its own head and long tail.
    """
    groups = np.asarray(groups, dtype=np.int64)
    n = len(groups)
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(groups[shuffled], kind="stable")]
    sorted_groups = groups[order]
    is_start = np.empty(n, dtype=bool)
    is_start[:1] = True
    is_start[1:] = sorted_groups[1:] != sorted_groups[:-1]
    starts = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    weights = np.empty(n, dtype=np.float64)
    weights[order] = (np.arange(n) - starts + 1.0) ** -exponent
    return weights


def segment_priors(
    rng: np.random.Generator, base: npt.ArrayLike, n_segments: int, spread: float = 0.8
) -> FloatArray:
    """Category priors per user segment: ``base`` tilted by a random log-normal factor.

    Users of one segment (an age band, a region) lean the same way, which makes their
    attributes informative for users without history.
    """
    base = np.asarray(base, dtype=np.float64)
    tilted = base * rng.lognormal(0.0, spread, (n_segments, len(base)))
    return tilted / tilted.sum(axis=1, keepdims=True)


def user_tastes(
    rng: np.random.Generator,
    priors: npt.ArrayLike,
    segment: npt.ArrayLike,
    concentration: float = 1.0,
    noise: float = 0.05,
) -> FloatArray:
    """``(n_users, n_categories)`` tastes ~ Dirichlet(concentration * priors[segment]).

    A small ``concentration`` gives focused users (one or two favourite categories); ``noise``
    mixes in the segment prior so every category keeps some probability.
    """
    prior = np.asarray(priors, dtype=np.float64)[np.asarray(segment, dtype=np.int64)]
    draws = rng.standard_gamma(concentration * prior)
    sums = draws.sum(axis=1, keepdims=True)
    taste = np.divide(draws, sums, out=prior.copy(), where=sums > 0)
    return (1.0 - noise) * taste + noise * prior


def skewed_counts(
    rng: np.random.Generator, total: int, n: int, sigma: float = 1.0, minimum: int = 1
) -> IntArray:
    """Split ``total`` into ``n`` counts (exact sum) with log-normal skew: activity per user.

    Each part gets ``minimum`` first when ``total`` allows it, the rest by a multinomial.
    """
    base = min(minimum, total // n)
    weights = rng.lognormal(0.0, sigma, n)
    return rng.multinomial(total - base * n, weights / weights.sum()).astype(np.int64) + base


# -- vectorised weighted draws --------------------------------------------------------------
def locate(cumulative: npt.NDArray, targets: npt.NDArray) -> IntArray:
    """``np.searchsorted(cumulative, targets, side="right")``, fast for many random targets.

    Large batches are searched in sorted order, which touches ``cumulative`` sequentially
    instead of at random (several times faster for millions of draws into a big catalogue).
    """
    if len(targets) < 65_536:
        return np.searchsorted(cumulative, targets, side="right").astype(np.int64)
    order = np.argsort(targets)
    found = np.empty(len(targets), dtype=np.int64)
    found[order] = np.searchsorted(cumulative, targets[order], side="right")
    return found


def weighted_choice(rng: np.random.Generator, weights: npt.ArrayLike, size: int) -> IntArray:
    """``size`` indices drawn with replacement, proportionally to ``weights``."""
    weights = np.asarray(weights, dtype=np.float64)
    picks = np.repeat(np.arange(len(weights)), rng.multinomial(size, weights / weights.sum()))
    rng.shuffle(picks)
    return picks


def sample_rows(rng: np.random.Generator, probs: npt.ArrayLike, rows: npt.ArrayLike) -> IntArray:
    """One column per entry of ``rows``, drawn from the distribution ``probs[row]``.

    Row-wise categorical sampling without gathering a row per draw: row ``r``'s cumulative
    probabilities are shifted by ``r`` so the flattened array is sorted, and a draw
    ``r + u`` is located with a single ``searchsorted``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    n_rows, n_cols = probs.shape
    cumulative = np.cumsum(probs, axis=1)
    cumulative /= cumulative[:, -1:]
    flat = (cumulative + np.arange(n_rows, dtype=np.float64)[:, None]).ravel()
    picks = np.searchsorted(flat, rows + rng.random(len(rows)), side="right") - rows * n_cols
    return np.clip(picks, 0, n_cols - 1)


class GroupSampler:
    """Draws members of a group (items of a category...) proportionally to their weight.

    Members are laid out group by group (stable, so in index order within a group) with one
    global cumulative weight array; a draw in group ``g`` is a ``searchsorted`` between the
    cumulative weight before the group's first member and the one at its last.
    """

    def __init__(
        self, groups: npt.ArrayLike, weights: npt.ArrayLike, n_groups: int | None = None
    ) -> None:
        groups = np.asarray(groups, dtype=np.int64)
        if n_groups is None:
            n_groups = int(groups.max()) + 1 if len(groups) else 0
        self.n_groups = n_groups
        self.members: IntArray = np.argsort(groups, kind="stable")
        self.sorted_groups: IntArray = groups[self.members]
        index = np.arange(n_groups)
        self.starts: IntArray = np.searchsorted(self.sorted_groups, index, side="left")
        self.stops: IntArray = np.searchsorted(self.sorted_groups, index, side="right")
        self.cumulative: FloatArray = np.cumsum(np.asarray(weights, dtype=np.float64)[self.members])

    def sample(self, rng: np.random.Generator, group: npt.ArrayLike) -> IntArray:
        """One member per entry of ``group``; an empty group falls back to all members."""
        group = np.asarray(group, dtype=np.int64)
        lo, hi = self.starts[group], self.stops[group]
        empty = hi <= lo
        lo = np.where(empty, 0, lo)
        hi = np.where(empty, len(self.members), hi)
        return self.sample_between(rng, lo, hi)

    def sample_between(
        self, rng: np.random.Generator, lo: npt.ArrayLike, hi: npt.ArrayLike
    ) -> IntArray:
        """One member per pair of layout positions ``[lo, hi)``; ``-1`` where the range is empty.

        Ranges inside a group select a slice of it, e.g. the articles of a topic published
        in a time window when members are in publish order.
        """
        lo = np.asarray(lo, dtype=np.int64)
        hi = np.asarray(hi, dtype=np.int64)
        if len(self.members) == 0:
            return np.full(len(lo), -1, dtype=np.int64)
        cumulative = self.cumulative
        before = np.where(lo > 0, cumulative[lo - 1], 0.0)
        total = cumulative[hi - 1] - before
        targets = before + rng.random(len(lo)) * total
        positions = locate(cumulative, targets)
        positions = np.clip(positions, lo, np.maximum(hi - 1, lo))
        picked = self.members[np.minimum(positions, len(self.members) - 1)]
        return np.where(hi > lo, picked, -1)


def weighted_subset(rng: np.random.Generator, weights: npt.ArrayLike, k: int) -> IntArray:
    """``k`` distinct indices drawn without replacement, favouring heavy ``weights``.

    Efraimidis-Spirakis keys (``Exp(1) / weight``, keep the ``k`` smallest) in linear time.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= len(weights):
        return np.arange(len(weights), dtype=np.int64)
    keys = rng.exponential(size=len(weights)) / np.maximum(weights, 1e-12)
    return np.sort(np.argpartition(keys, k - 1)[:k]).astype(np.int64)


# -- sequences and time ---------------------------------------------------------------------
def event_users(counts: npt.ArrayLike) -> IntArray:
    """The user index of each event when user ``u`` has ``counts[u]`` consecutive events."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def sequence_starts(counts: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask of each user's first event in the layout of :func:`event_users`."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.zeros(int(counts.sum()), dtype=bool)
    firsts = (np.cumsum(counts) - counts)[counts > 0]
    starts[firsts] = True
    return starts


def user_chunks(counts: npt.ArrayLike, chunk_events: int) -> list[tuple[int, int]]:
    """Contiguous user ranges ``[start, stop)`` holding at most ``chunk_events`` events each (a
    user with more is a chunk alone): a streamed generator makes one range's events at a time."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    chunks, start = [], 0
    while start < len(ends):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + chunk_events, side="right")), start + 1)
        chunks.append((start, stop))
        start = stop
    return chunks


def apportion(total: int, weights: npt.ArrayLike) -> IntArray:
    """``total`` split into integer parts proportional to ``weights`` with an exact sum (largest
    remainders; ties to the earlier part): e.g. a chunk's share of the carts."""
    weights = np.asarray(weights, dtype=np.float64)
    if total == 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    if short > 0:
        parts[np.argsort(-(exact - parts), kind="stable")[:short]] += 1
    return parts


def sticky(
    rng: np.random.Generator,
    fresh: npt.ArrayLike,
    starts: npt.ArrayLike,
    stickiness: float,
) -> npt.NDArray:
    """Each value repeats the previous one with probability ``stickiness``, else keeps ``fresh``.

    A user's session tends to stay in one category (or series). ``starts`` marks sequence
    starts, which always keep their fresh value, so nothing carries over between users.
    """
    fresh = np.asarray(fresh)
    keep = rng.random(len(fresh)) < stickiness
    keep &= ~np.asarray(starts, dtype=bool)
    source = np.where(keep, 0, np.arange(len(fresh), dtype=np.int64))
    np.maximum.accumulate(source, out=source)
    return fresh[source]


def taste_categories(
    rng: np.random.Generator, tastes: npt.ArrayLike, counts: npt.ArrayLike, stickiness: float
) -> tuple[IntArray, IntArray]:
    """Users and categories of a sequence of events: ``counts[u]`` events for user ``u``.

    Categories follow each user's taste, with sessions sticking to the previous category.
    """
    users = event_users(counts)
    fresh = sample_rows(rng, tastes, users)
    return users, sticky(rng, fresh, sequence_starts(counts), stickiness)


def sorted_times(
    rng: np.random.Generator,
    counts: npt.ArrayLike,
    start_us: int = START_US,
    end_us: int = END_US,
) -> IntArray:
    """Uniform times in ``[start_us, end_us)``, ascending within each user's block of events."""
    counts = np.asarray(counts, dtype=np.int64)
    users = event_users(counts)
    span = end_us - start_us
    times = rng.integers(0, span, size=len(users), dtype=np.int64)
    if len(counts) * span < 2**62:
        key = users * span + times
        key.sort()
        times = key - users * span
    else:
        times = times[np.lexsort((times, users))]
    return start_us + times


def uniform_times(
    rng: np.random.Generator, size: int, start_us: int = START_US, end_us: int = END_US
) -> IntArray:
    """``size`` uniform times in ``[start_us, end_us)``."""
    return rng.integers(start_us, end_us, size=size, dtype=np.int64)


def truncated_exponential(
    rng: np.random.Generator, scale: float, upper: npt.ArrayLike
) -> FloatArray:
    """Exponential draws of mean ``scale`` conditioned to lie in ``[0, upper]`` (inverse CDF).

    Delays that must stay inside the time span (a cart after a view, a click after a publish).
    """
    upper = np.maximum(np.asarray(upper, dtype=np.float64), 0.0)
    u = rng.random(upper.shape)
    draws = -scale * np.log1p(u * np.expm1(-upper / scale))
    return np.minimum(draws, upper)


NO_EVENT = np.iinfo(np.int64).max  # an item's first-event time before it has any event


def first_event_times(
    n_items: int, item: npt.ArrayLike, ts_us: npt.ArrayLike, first: IntArray | None = None
) -> IntArray:
    """Each item's earliest event time (``NO_EVENT`` for none); pass ``first`` back in to fold in
    another chunk of events (a streamed generator keeps one array, not every event)."""
    if first is None:
        first = np.full(n_items, NO_EVENT, dtype=np.int64)
    np.minimum.at(first, np.asarray(item, dtype=np.int64), np.asarray(ts_us, dtype=np.int64))
    return first


def created_before(
    rng: np.random.Generator,
    planned_us: npt.ArrayLike,
    first_us: IntArray,
    lead_us: tuple[int, int] = (US_PER_HOUR, 7 * US_PER_DAY),
) -> IntArray:
    """Item creation times: ``planned`` pulled back a random ``lead`` before the item's first
    event (``first_us``, from :func:`first_event_times`) where it would come after it."""
    created = np.asarray(planned_us, dtype=np.int64).copy()
    used = first_us < NO_EVENT
    lead = rng.integers(lead_us[0], lead_us[1], size=len(created), dtype=np.int64)
    created[used] = np.minimum(created[used], first_us[used] - lead[used])
    return created


def created_before_first_event(
    rng: np.random.Generator,
    planned_us: npt.ArrayLike,
    item: npt.ArrayLike,
    ts_us: npt.ArrayLike,
    lead_us: tuple[int, int] = (US_PER_HOUR, 7 * US_PER_DAY),
) -> IntArray:
    """Item creation times: ``planned`` pulled back to before the item's first event.

    New items get events from the moment they exist; an item whose planned creation would
    come after its first event is created a random ``lead`` before it instead.
    """
    planned = np.asarray(planned_us, dtype=np.int64)
    return created_before(rng, planned, first_event_times(len(planned), item, ts_us), lead_us)


def unique_pairs(
    rng: np.random.Generator,
    n: int,
    width: int,
    draw: Callable[[np.random.Generator, int], tuple[IntArray, IntArray]],
    fallback: Callable[[np.random.Generator, int], tuple[IntArray, IntArray]],
    rounds: int = 3,
    max_rounds: int = 1000,
) -> tuple[IntArray, IntArray]:
    """Exactly ``n`` distinct pairs ``(a, b)`` with ``0 <= b < width``, first from ``draw``.

    ``draw(rng, k)`` proposes about ``k`` structured pairs (follows of neighbours, likes of
    friends' posts); duplicates are dropped. Structured draws saturate on small data, so
    after ``rounds`` rounds ``fallback`` (uniform pairs) tops up the rest. When more than
    ``n`` distinct pairs were proposed, a uniform random ``n`` of them are kept. The pairs
    come back sorted; the caller keeps ``n`` well below the number of possible pairs.
    """
    keys = np.empty(0, dtype=np.int64)
    for round_ in range(max_rounds):
        if len(keys) >= n:
            break
        need = n - len(keys)
        a, b = (draw if round_ < rounds else fallback)(rng, need + need // 2 + 16)
        keys = np.sort(np.concatenate([keys, np.asarray(a, np.int64) * width + b]))
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    if len(keys) < n:
        raise RuntimeError(f"could not draw {n} distinct pairs in {max_rounds} rounds")
    if len(keys) > n:
        keys = keys[np.sort(rng.choice(len(keys), n, replace=False))]
    return keys // width, keys % width


# -- text -----------------------------------------------------------------------------------
def pick(rng: np.random.Generator, options: Sequence[str], size: int) -> pl.Series:
    """``size`` strings drawn uniformly from ``options``."""
    return pl.Series(list(options), dtype=pl.String).gather(
        rng.integers(0, len(options), size=size)
    )


def pick_by_group(
    rng: np.random.Generator, group: npt.ArrayLike, options: Sequence[Sequence[str]]
) -> pl.Series:
    """For each row, a string drawn uniformly from ``options[group[row]]``.

    Words are picked from the row's category list so titles of one category share words.
    """
    return pick_distinct_by_group(rng, group, options, 1)[0]


def pick_distinct_by_group(
    rng: np.random.Generator, group: npt.ArrayLike, options: Sequence[Sequence[str]], k: int
) -> list[pl.Series]:
    """``k`` series: for each row, ``k`` different strings of ``options[group[row]]``.

    Strings repeat only when a group has fewer than ``k`` options.
    """
    group = np.asarray(group, dtype=np.int64)
    lengths = np.array([len(words) for words in options], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("every group needs at least one option")
    offsets = np.cumsum(lengths) - lengths
    size = lengths[group]
    flat = pl.Series([word for words in options for word in words], dtype=pl.String)
    picks: list[IntArray] = []
    for j in range(k):
        left = size - j  # draw among the options not picked yet, then skip past earlier picks
        pick_j = (rng.random(len(group)) * np.maximum(left, 1)).astype(np.int64)
        if picks:
            for earlier in np.sort(np.stack(picks, axis=1), axis=1).T:
                pick_j += (pick_j >= earlier) & (left > 0)
        picks.append(np.minimum(pick_j, size - 1))
    return [flat.gather(offsets[group] + chosen) for chosen in picks]


_ONSETS = ("Bel", "Cor", "Dav", "El", "Fen", "Gal", "Hal", "Is", "Jun", "Kel", "Lum", "Mar",
           "Nor", "Ol", "Pax", "Quin", "Ros", "Sol", "Tor", "Ul", "Vel", "Wex", "Yar", "Zen")
_MIDDLES = ("", "a", "e", "i", "o", "u", "an", "er", "is", "or")
_ENDINGS = ("a", "ex", "ia", "ix", "on", "or", "us", "yn", "o", "ar", "ent", "ica", "ova", "io")


def coined_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct made-up names (brands, labels) built from syllables."""
    capacity = len(_ONSETS) * len(_MIDDLES) * len(_ENDINGS)
    names: list[str] = []
    seen: set[str] = set()
    for code in rng.permutation(capacity):
        onset, rest = divmod(int(code), len(_MIDDLES) * len(_ENDINGS))
        middle, ending = divmod(rest, len(_ENDINGS))
        name = _ONSETS[onset] + _MIDDLES[middle] + _ENDINGS[ending]
        if name not in seen:
            seen.add(name)
            names.append(name)
            if len(names) == n:
                return names
    suffix = 2  # more names than syllables allow: number the repeats
    while len(names) < n:
        names.extend(f"{name} {suffix}" for name in names[: n - len(names)])
        suffix += 1
    return names[:n]


# -- assembling -----------------------------------------------------------------------------
def events_frame(
    user_ids: pl.Series,
    item_ids: pl.Series,
    user: npt.ArrayLike,
    item: npt.ArrayLike,
    event_types: Sequence[str],
    event_type: npt.ArrayLike,
    value: npt.ArrayLike,
    ts_us: npt.ArrayLike,
) -> pl.DataFrame:
    """The events table (user_id, item_id, event_type, value, ts) in time order.

    ``user`` and ``item`` index ``user_ids`` and ``item_ids``; ``event_type`` indexes
    ``event_types``.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    order = np.argsort(ts_us)
    return pl.DataFrame(
        {
            "user_id": user_ids.gather(np.asarray(user, dtype=np.int64)[order]),
            "item_id": item_ids.gather(np.asarray(item, dtype=np.int64)[order]),
            "event_type": pl.Series(list(event_types), dtype=pl.String).gather(
                np.asarray(event_type, dtype=np.int64)[order]
            ),
            "value": np.asarray(value, dtype=np.float64)[order],
            "ts": datetimes(ts_us[order]),
        }
    )

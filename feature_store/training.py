"""SQL for training sets and evaluation splits, all computed inside DuckDB.

Events are ordered by ``(ts, seq)``: ``seq`` is the ingest order, so events in the same
second keep their file order (a stable sort, as DESIGN §6 requires).
"""

from __future__ import annotations

from recengine.feature_store.protocols import PROTOCOLS
from recengine.feature_store.schema import StoreSchema


def _quote_list(values: list[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


def _event_filter(event_types: list[str] | None) -> str:
    return f"WHERE event_type IN ({_quote_list(event_types)})" if event_types else ""


def training_set_sql(schema: StoreSchema, history: int, event_types: list[str] | None = None) -> str:
    """Each event with its last-``history`` items and the user/item attributes valid at its time.

    Attributes come through ``ASOF JOIN`` on ``valid_from``, so no feature value from after
    the event's timestamp leaks into its row. Attribute columns are prefixed ``user_``/``item_``.
    """
    if history < 0:
        raise ValueError(f"history must be >= 0, got {history}")
    user_attrs = "".join(f', u."{c}" AS "user_{c}"' for c in schema.user_columns)
    item_attrs = "".join(f', i."{c}" AS "item_{c}"' for c in ["title", "created_at", *schema.item_columns])
    history_expr = (
        f"list(item_id) OVER (PARTITION BY user_id ORDER BY ts, seq ROWS BETWEEN {history} PRECEDING AND 1 PRECEDING)"
        if history else "[]::VARCHAR[]"
    )
    return f"""
        WITH ev AS (
            SELECT user_id, item_id, event_type, value, ts, seq,
                   coalesce({history_expr}, []::VARCHAR[]) AS history
            FROM events {_event_filter(event_types)}
        )
        SELECT ev.*{user_attrs}{item_attrs}
        FROM ev
        ASOF LEFT JOIN users u ON ev.user_id = u.user_id AND ev.ts >= u.valid_from
        ASOF LEFT JOIN items i ON ev.item_id = i.item_id AND ev.ts >= i.valid_from
        ORDER BY ev.user_id, ev.ts, ev.seq
    """


def split_sql(protocol: str, *, seed: int = 2020, cold_fraction: float = 0.1,
              event_types: list[str] | None = None, fold: int = 0, folds: int = 5) -> str:
    """Events with a ``split`` column (train/valid/test) for protocol ``seq``, ``gen`` or ``cold``.

    - ``seq``: per user, by time, the last event is test and the one before valid (users
      with fewer than 3 events keep all of them in train).
    - ``gen``: per user, a seeded shuffle split 80/10/10 with RecBole's rounding.
    - ``cold``: ``cold_fraction`` of the items (seeded) with all their events are test, and
      another ``cold_fraction`` with all theirs are valid, so that epochs and models are chosen
      on items the model never trained on, as they are judged; every other event is train.
    - ``rating``: events fall into ``folds`` seeded folds; fold ``fold`` is test, the next
      one valid, the rest train (k-fold cross-validation of rating prediction).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if folds < 3 or not 0 <= fold < folds:
        raise ValueError(f"need folds >= 3 and 0 <= fold < folds, got fold={fold}, folds={folds}")
    if not 0.0 < cold_fraction < 1.0:
        raise ValueError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    seed = int(seed)
    base = f"SELECT user_id, item_id, event_type, value, ts, seq FROM events {_event_filter(event_types)}"
    if protocol == "seq":
        body = f"""
            SELECT *, CASE WHEN n >= 3 AND from_end = 1 THEN 'test'
                           WHEN n >= 3 AND from_end = 2 THEN 'valid' ELSE 'train' END AS split
            FROM (SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, seq DESC) AS from_end,
                         count(*) OVER (PARTITION BY user_id) AS n
                  FROM ({base}))
        """
        columns = "user_id, item_id, event_type, value, ts, seq, split"
    elif protocol == "rating":
        body = f"""
            SELECT *, CASE hash(seq, {seed}) % {folds} WHEN {fold} THEN 'test'
                           WHEN {(fold + 1) % folds} THEN 'valid' ELSE 'train' END AS split
            FROM ({base})
        """
        columns = "user_id, item_id, event_type, value, ts, seq, split"
    elif protocol == "gen":
        body = _ratio_split(base, seed, valid=0.1, test=0.1)
        columns = "user_id, item_id, event_type, value, ts, seq, split"
    else:
        held = f"greatest(1, round(n_items * {cold_fraction}))"  # items in each of test and valid
        body = f"""
            WITH item_order AS (
                SELECT item_id, row_number() OVER (ORDER BY hash(item_id, {seed}), item_id) AS r,
                       count(*) OVER () AS n_items
                FROM (SELECT DISTINCT item_id FROM ({base}))
            ),
            phase AS (
                SELECT item_id, CASE WHEN r <= {held} THEN 'test'
                                     WHEN r <= 2 * {held} AND r < n_items THEN 'valid' ELSE 'train' END AS split
                FROM item_order
            )
            SELECT user_id, item_id, event_type, value, ts, seq, split FROM ({base}) JOIN phase USING (item_id)
        """
        columns = "user_id, item_id, event_type, value, ts, seq, split"
    return f"SELECT {columns} FROM ({body}) ORDER BY user_id, ts, seq"


def _ratio_split(base: str, seed: int, *, valid: float, test: float) -> str:
    """Per-user seeded shuffle, then train/valid/test counts as RecBole computes them.

    RecBole floors each held-out share, then gives a share that would round to zero one
    event (test first, then valid) while train keeps more than one.
    """
    return f"""
        SELECT *, CASE WHEN pos < n_train THEN 'train'
                       WHEN pos < n_train + n_valid THEN 'valid' ELSE 'test' END AS split
        FROM (
            SELECT *,
                   n - n_valid - n_test AS n_train
            FROM (
                SELECT *,
                       floor(n * {test})::BIGINT + CASE WHEN n * {test} > 0 AND n * {test} < 1
                            AND n - floor(n * {valid}) - floor(n * {test}) > 1 THEN 1 ELSE 0 END AS n_test,
                       floor(n * {valid})::BIGINT + CASE WHEN n * {valid} > 0 AND n * {valid} < 1
                            AND n - floor(n * {valid}) - floor(n * {test})
                                - (CASE WHEN n * {test} > 0 AND n * {test} < 1
                                        AND n - floor(n * {valid}) - floor(n * {test}) > 1 THEN 1 ELSE 0 END) > 1
                            THEN 1 ELSE 0 END AS n_valid
                FROM (
                    SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY hash(seq, {seed}), seq) - 1 AS pos,
                           count(*) OVER (PARTITION BY user_id) AS n
                    FROM ({base})
                )
            )
        )
    """

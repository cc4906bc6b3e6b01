"""The evaluation split protocols (DESIGN §6), named once for the store, the config and the CLI.

What each one splits is defined with its SQL in ``recengine.feature_store.training.split_sql``.
This module imports nothing heavy: the training core names the protocols on machines
without DuckDB or polars.
"""

from __future__ import annotations

from typing import Literal, get_args

SplitProtocol = Literal["seq", "gen", "cold", "rating"]
PROTOCOLS: tuple[str, ...] = get_args(SplitProtocol)

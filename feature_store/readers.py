"""Read ingest sources (CSV, Parquet, RecBole atomic files, polars/Arrow frames) into frames.

Text files are read with every column as a string, so that type problems are reported by
validation with their exact line and column instead of polars guessing types.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow as pa

from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType

RECBOLE_KINDS = {".inter": "events", ".user": "users", ".item": "items"}
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", *RECBOLE_KINDS}
PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass
class RawTable:
    """A source read into a frame, with what is known about where it came from."""

    frame: pl.DataFrame
    source: str
    row_label: str = "row"
    first_row: int = 1  # number of the first data row, as reported in errors
    declared: dict[str, ColumnType] = field(default_factory=dict)  # typed headers
    kind: str | None = None  # from the RecBole suffix, if any
    list_separator: str = "|"

    def row_number(self, index: int) -> int:
        """The reported number of the data row at 0-based ``index``."""
        return self.first_row + index


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files named directly, plus the ingestible files inside named directories (sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in TEXT_SUFFIXES | PARQUET_SUFFIXES)
            )
        elif path.exists():
            found.append(path)
        else:
            raise IngestError(str(path), "no such file or directory")
    return found


def read_source(source: Any, name: str | None = None) -> RawTable:
    """Read a path, polars frame or Arrow table into a :class:`RawTable`."""
    if isinstance(source, pl.DataFrame):
        return RawTable(source, name or "<polars frame>")
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        # a Table or RecordBatch converts to a DataFrame (a Series comes only from arrays)
        return RawTable(cast(pl.DataFrame, pl.from_arrow(source)), name or "<arrow table>")
    path = Path(source)
    if not path.exists():
        raise IngestError(str(path), "no such file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    if suffix in RECBOLE_KINDS:
        return _read_recbole(path)
    if suffix in TEXT_SUFFIXES:
        return _read_csv(path, separator="\t" if suffix == ".tsv" else ",")
    raise IngestError(
        str(path), f"unsupported file type {suffix!r}",
        expected="CSV (.csv/.tsv), Parquet (.parquet) or RecBole atomic files (.inter/.user/.item)",
    )


def _read_parquet(path: Path) -> RawTable:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise IngestError(str(path), f"not a readable Parquet file: {exc}") from None
    if frame.height == 0:
        raise IngestError(str(path), "the file has no rows", expected="at least one data row")
    return RawTable(frame, str(path))


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise IngestError(str(path), "the file is empty", expected="a header line and data rows")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IngestError(
            str(path), f"byte 0x{data[exc.start]:02x} at character {column} is not valid UTF-8",
            row=line, row_label="line", expected="UTF-8 text",
        ) from None


def _parse_rows(path: Path, text: str, separator: str, quoting: bool) -> pl.DataFrame:
    """Parse delimited text as all-string columns; a ragged row is reported by its line."""
    try:
        frame = pl.read_csv(
            io.StringIO(text), separator=separator, infer_schema=False,
            quote_char='"' if quoting else None,
        )
    except Exception as exc:
        _raise_ragged_row(path, text, separator, quoting)
        raise IngestError(str(path), f"malformed delimited text: {exc}") from None
    if not _field_counts_agree(text, separator):
        _raise_ragged_row(path, text, separator, quoting)
    return frame


def _field_counts_agree(text: str, separator: str) -> bool:
    """Fast, vectorised check that every line has as many separators as the header."""
    lines = pl.Series(text.splitlines(), dtype=pl.String)
    counts = lines.filter(lines.str.len_bytes() > 0).str.count_matches(separator, literal=True)
    return bool((counts == counts[0]).all())


def _raise_ragged_row(path: Path, text: str, separator: str, quoting: bool) -> None:
    """Find the first record whose field count differs from the header's (quote-aware)."""
    reader = csv.reader(io.StringIO(text), delimiter=separator,
                        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    width = None
    for row in reader:
        if not row:
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise IngestError(
                str(path), f"has {len(row)} fields", row=reader.line_num, row_label="line",
                expected=f"{width} fields, as in the header",
            )


def _read_csv(path: Path, separator: str) -> RawTable:
    text = _read_text(path)
    frame = _parse_rows(path, text, separator, quoting=True)
    if frame.height == 0:
        raise IngestError(str(path), "the file has a header but no rows", expected="at least one data row")
    return RawTable(frame, str(path), row_label="line", first_row=2)


def _read_recbole(path: Path) -> RawTable:
    """RecBole atomic file: tab separated, header ``name:type``, token_seq split on spaces."""
    text = _read_text(path)
    frame = _parse_rows(path, text, "\t", quoting=False)
    declared: dict[str, ColumnType] = {}
    renames: dict[str, str] = {}
    for header in frame.columns:
        name, sep, token_type = header.partition(":")
        if not sep:
            raise IngestError(str(path), f"header field {header!r} has no type", row=1,
                              row_label="line", column=header, expected="name:type, e.g. user_id:token")
        try:
            declared[name] = ColumnType.from_recbole(token_type)
        except ValueError as exc:
            raise IngestError(str(path), str(exc), row=1, row_label="line", column=name) from None
        renames[header] = name
    frame = frame.rename(renames)
    if frame.height == 0:
        raise IngestError(str(path), "the file has a header but no rows", expected="at least one data row")
    return RawTable(frame, str(path), row_label="line", first_row=2, declared=declared,
                    kind=RECBOLE_KINDS[path.suffix.lower()], list_separator=" ")

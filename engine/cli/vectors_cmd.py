"""``recengine vectors``: build item vectors from text, or ingest vectors computed elsewhere."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recengine.cli.common import console, friendly_errors, store_option


@click.group()
def vectors() -> None:
    """Item vectors: pretrained text embeddings, or image/video embeddings from elsewhere."""


@vectors.command("build")
@store_option
@click.option("--vector", "name", default="text", show_default=True, help="Vector set to write.")
@click.option("--fields", default=None, help="Item columns that make the text (default: the domain's text fields).")
@click.option("--encoder", default="text", show_default=True, help="Pretrained encoder to embed with.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--rebuild", is_flag=True, help="Embed every item again (default: only items without a vector).")
def build(store_path: str, name: str, fields: str | None, encoder: str, batch_size: int, rebuild: bool) -> None:
    """Embed item text with a pretrained model and store the vectors (resumable)."""
    from recengine.errors import ConfigError
    from recengine.feature_store import FeatureStore
    from recengine.plugin_manager import get_plugin_manager
    from recengine.vectors import build_text_vectors

    with friendly_errors():
        manager = get_plugin_manager()
        encoder_class = manager.get("encoders", encoder)
        if not encoder_class.embeds_text:
            raise ConfigError(f"encoder {encoder!r} is not a pretrained text encoder (it does not embed text)")
        with FeatureStore(store_path) as store:
            chosen = [f.strip() for f in fields.split(",")] if fields else _domain_fields(store.schema.name)
            embed = lambda texts: encoder_class.embed_texts(texts, batch_size=batch_size)  # noqa: E731
            with Progress(TextColumn(f"embedding {','.join(chosen)}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as bar:
                task = bar.add_task("embed", total=None)
                done, before = build_text_vectors(
                    store, embed, chosen, name, rebuild=rebuild,
                    progress=lambda current, total: bar.update(task, completed=current, total=total),
                    encoder=encoder)
    console.print(f"Embedded {done:,} item(s) into vector set [bold]{name}[/] "
                  f"({before:,} already had one).")


def _domain_fields(schema_name: str) -> list[str]:
    from recengine.errors import NotFoundError
    from recengine.plugin_manager import get_plugin_manager

    try:
        return list(get_plugin_manager().domain(schema_name).text_fields)
    except NotFoundError:  # a store whose schema names no registered domain
        return ["title"]


@vectors.command("ingest")
@store_option
@click.argument("path", type=click.Path())
@click.option("--vector", "name", required=True, help="Vector set to write (e.g. image).")
@click.option("--id-column", default="item_id", show_default=True)
@click.option("--vector-column", default="vector", show_default=True)
def ingest(store_path: str, path: str, name: str, id_column: str, vector_column: str) -> None:
    """Load vectors from Parquet (id + list column) or .npz (ids, vectors); all or nothing.

    Unknown item ids, a dimension other than the set's, and NaN/inf values are rejected.
    """
    from recengine.feature_store import FeatureStore
    from recengine.vectors import read_vector_file

    with friendly_errors():
        ids, matrix = read_vector_file(path, id_column, vector_column)
        with FeatureStore(store_path) as store:
            count = store.write_vectors(name, ids, matrix, source=path)
    console.print(f"Stored {count:,} vector(s) of dimension {matrix.shape[1]} in set [bold]{name}[/].")

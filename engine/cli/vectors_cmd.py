"""``recengine vectors``: build item vectors from text, or ingest vectors computed elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recengine.cli.common import console, friendly_errors, store_option

if TYPE_CHECKING:
    from recengine.vector_transform import TransformSpec


@click.group()
def vectors() -> None:
    """Item vectors: pretrained text embeddings, or image/video embeddings from elsewhere."""


@vectors.command("build")
@store_option
@click.option("--vector", "name", default="text", show_default=True, help="Vector set to write.")
@click.option("--fields", default=None, help="Item columns that make the text (default: the domain's text fields).")
@click.option("--encoder", default="text", show_default=True, help="Pretrained encoder to embed with.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--rebuild", is_flag=True,
              help="Embed every item again (default: only items without a vector); refits the set's transform.")
@click.option("--whiten", "whiten_dim", type=int, default=None, metavar="DIM",
              help="Whiten the set to DIM dimensions (fitted on the catalogue, saved with the set).")
@click.option("--pca", "pca_dim", type=int, default=None, metavar="DIM",
              help="Project the set onto its first DIM principal components (fitted and saved likewise).")
@click.option("--no-transform", is_flag=True, help="Store raw vectors (with --rebuild: drops a saved transform).")
def build(store_path: str, name: str, fields: str | None, encoder: str, batch_size: int, rebuild: bool,
          whiten_dim: int | None, pca_dim: int | None, no_transform: bool) -> None:
    """Embed item text with a pretrained model and store the vectors (resumable).

    The store's search queries are embedded into the same set by the same model (and
    transform), for user towers that read what users searched for (``model.searches``).

    Without --whiten/--pca/--no-transform a set keeps its saved transform: new items go
    through it, and --rebuild refits it on the whole catalogue.
    """
    from recengine.errors import ConfigError
    from recengine.feature_store import FeatureStore
    from recengine.plugin_manager import get_plugin_manager
    from recengine.vectors import build_query_vectors, build_text_vectors

    with friendly_errors():
        transform = _transform_option(whiten_dim, pca_dim, no_transform)
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
                    encoder=encoder, transform=transform)
                queries = build_query_vectors(
                    store, embed, name,
                    progress=lambda current, total: bar.update(task, completed=current, total=total))
            saved = store.vector_transform(name)
    console.print(f"Embedded {done:,} item(s) into vector set [bold]{name}[/] "
                  f"({before:,} already had one).")
    if queries:
        console.print(f"Embedded {queries:,} new search quer{'y' if queries == 1 else 'ies'} into the same space.")
    if saved is not None:
        console.print(f"Vectors go through {saved.kind} from {saved.input_dim} to {saved.dim} dimensions, "
                      f"fitted on {saved.fitted_items:,} item(s) at {saved.fitted_at:%Y-%m-%d %H:%M} UTC.")


def _transform_option(whiten_dim: int | None, pca_dim: int | None, no_transform: bool) -> TransformSpec | None:
    """The transform the options ask for (None: keep the set's); at most one of them."""
    from recengine.errors import ConfigError
    from recengine.vector_transform import TransformSpec

    given = [flag for flag, value in (("--whiten", whiten_dim), ("--pca", pca_dim), ("--no-transform", no_transform))
             if value not in (None, False)]
    if len(given) > 1:
        raise ConfigError(f"choose one of --whiten, --pca and --no-transform, not {' and '.join(given)}")
    if whiten_dim is not None:
        return TransformSpec.of("whiten", whiten_dim)
    if pca_dim is not None:
        return TransformSpec.of("pca", pca_dim)
    return TransformSpec() if no_transform else None


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
    A set with a saved transform (built with --whiten/--pca) takes raw vectors and stores
    them after that transform.
    """
    from recengine.feature_store import FeatureStore
    from recengine.vectors import read_vector_file, store_raw_vectors

    with friendly_errors():
        ids, matrix = read_vector_file(path, id_column, vector_column)
        with FeatureStore(store_path) as store:
            count = store_raw_vectors(store, name, ids, matrix, source=path)
            dim = int(store.sql("SELECT dim FROM vector_sets WHERE name = ?", [name])["dim"][0])
    console.print(f"Stored {count:,} vector(s) of dimension {dim} in set [bold]{name}[/].")

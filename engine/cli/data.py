"""``recengine data``: synthetic data for the domain presets."""

from __future__ import annotations

import time

import click

from recengine.cli.common import console, friendly_errors


@click.group()
def data() -> None:
    """Make data to try recengine with."""


@data.command()
@click.option("--domain", required=True, help="Domain preset: ecommerce, news, video, social, or a plugin's.")
@click.option("--users", default=2_000, show_default=True, type=click.IntRange(min=1))
@click.option("--items", default=1_000, show_default=True, type=click.IntRange(min=1))
@click.option("--events", default=100_000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the Parquet files.")
@click.option("--language", default=None,
              help="Language of the item text, for domains that write more than one (ecommerce: zh). "
                   "Default: the domain's own (English for the built-ins).")
def generate(domain: str, users: int, items: int, events: int, seed: int, out: str, language: str | None) -> None:
    """Generate users, items and events with learnable structure for a domain.

    Users have latent tastes, items have popularity skew and text that carries their
    category, events are time-ordered and of the domain's types. Writes users.parquet,
    items.parquet and events.parquet (and searches.parquet, for domains whose users search:
    ecommerce) into OUT, ready for `recengine store ingest OUT`.
    Generators that stream (ecommerce) write events in blocks of users as they make them, so
    memory stays flat however many events are asked for; each block is in time order.
    """
    from recengine.plugin_manager import get_plugin_manager

    with friendly_errors():
        preset = get_plugin_manager().domain(domain)
        make = preset.generator(language)
        started = time.perf_counter()
        with console.status(f"Generating {events:,} {domain} events..."):
            generated = make(users, items, events, seed)
            paths = generated.write(out)
    elapsed = time.perf_counter() - started
    sizes = generated.sizes()  # counted while writing: a streamed generator's events are not kept
    searches = f" (and {sizes['searches']:,} searches)" if "searches" in sizes else ""
    console.print(
        f"Wrote {sizes['users']:,} users, {sizes['items']:,} items and {sizes['events']:,} events{searches} to "
        f"[bold]{out}[/] in {elapsed:.1f}s ({', '.join(p.name for p in paths.values())})."
    )

"""``python -m benchmarks.tables [--check]``: write (or check) docs/benchmarks.md and the README's headline table."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from benchmarks.tables.document import COMMAND, DOC, README, REPO, RESULTS, TablesError, build, with_headline


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _diff(path: Path, current: str, wanted: str, lines: int = 30) -> str:
    diff = list(difflib.unified_diff(current.splitlines(), wanted.splitlines(), f"{_shown(path)} (now)",
                                     f"{_shown(path)} (from the JSON)", lineterm="", n=1))
    more = f"\n... {len(diff) - lines} more diff lines" if len(diff) > lines else ""
    return "\n".join(diff[:lines]) + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that differs from what the JSON gives")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of results JSON files")
    parser.add_argument("--out", type=Path, default=DOC, help="the page to write")
    parser.add_argument("--readme", type=Path, default=README, help="the README whose headline table to update")
    args = parser.parse_args(argv)
    try:
        built = build(args.results)
        readme_now = args.readme.read_text()
        wanted = {args.out: built.document, args.readme: with_headline(readme_now, built.headline)}
    except (TablesError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in built.generic:
        print(f"generic section (no renderer in benchmarks/tables/): {name}")
    for name in built.stale_notes:
        print(f"warning: {name} was written for another run than its results file; re-read it")
    current = {path: (path.read_text() if path.exists() else "") for path in wanted}
    stale = [path for path, text in wanted.items() if current[path] != text]
    if args.check:
        for path in stale:
            print(f"{_shown(path)} is stale: it differs from what {_shown(args.results)}/*.json give. Run "
                  f"`{COMMAND}` (or `make bench-docs`) and commit the result.", file=sys.stderr)
            print(_diff(path, current[path], wanted[path]), file=sys.stderr)
        if not stale:
            print(f"{_shown(args.out)} and the headline table of {_shown(args.readme)} are up to date")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
        print(f"wrote {_shown(path)}")
    if not stale:
        print(f"{_shown(args.out)} and {_shown(args.readme)} were already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

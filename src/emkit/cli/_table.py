"""Tables the CLI prints: a rich table on a terminal, whole tab-separated lines anywhere else.

Rich fits a table to the terminal width and, without one (a pipe, a file, CI logs), to 80 columns, cutting cells
with "…": ``emkit models list | cat`` printed ``smollm2-135m…``, the one thing a user copies. On a terminal the
columns now wrap instead of being cut; in a pipe the table is a header line and one tab-separated line per row,
nothing shortened, so ``cut -f1`` and ``grep`` work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _cell(value: object) -> str:
    return " ".join(str(value).split())  # tabs and newlines inside a cell would break the line format


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None,
                show_header: bool = True, right: Sequence[str] = ()) -> None:
    """Print ``rows`` under ``columns``; ``right`` names right-aligned columns (terminal only)."""
    if not sys.stdout.isatty():
        if show_header:
            sys.stdout.write("\t".join(_cell(c) for c in columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(_cell(v) for v in row) + "\n")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=show_header)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)

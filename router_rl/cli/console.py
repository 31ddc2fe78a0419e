"""One console for every command, so that what a script or a test reads does not depend on the terminal.

Two rules, whatever the terminal width (``COLUMNS``) or the length of a path in a message:

* a text line is printed whole (``soft_wrap``): rich never breaks it at the console width, so
  ``"840 rows (120 tasks x 7 models) to /a/very/long/path"`` stays one line;
* a table is printed as a table only when it fits the console at its natural width; otherwise each
  row becomes a block of ``header: value`` lines (like ``psql``'s expanded display), so no column
  header and no policy name is ever cut to ``quali…``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def make_console(*, stderr: bool = False) -> Console:
    """The console every ``router-rl`` command prints with (see the module docstring).

    Args:
        stderr: Print to standard error (error messages) instead of standard output.
    """
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _plain(cell: object) -> str:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def table_records(table: Table) -> list[str]:
    """The table as lines: its title, then one block per row (first column, then ``header: value``).

    Args:
        table: A rich table whose cells are strings or :class:`rich.text.Text`.
    """
    headers = [_plain(c.header) for c in table.columns]
    columns = [[_plain(cell) for cell in c.cells] for c in table.columns]
    n_rows = max((len(c) for c in columns), default=0)
    lines: list[str] = []
    if table.title:
        lines.append(_plain(table.title))
    pad = max((len(h) for h in headers[1:]), default=0)
    for i in range(n_rows):
        row = [c[i] if i < len(c) else "" for c in columns]
        lines.append(f"{headers[0]}: {row[0]}" if headers and headers[0] else row[0])
        lines.extend(f"  {h.ljust(pad)}  {v}" for h, v in zip(headers[1:], row[1:], strict=True) if v != "")
    return lines


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: as a table when it fits ``console``, else as records (:func:`table_records`).

    Args:
        console: Where to print (normally :func:`make_console`).
        table: The table.
    """
    from rich.markup import escape

    natural = console.measure(table, options=console.options.update(max_width=1_000_000)).maximum
    if natural <= console.width:
        console.print(table)
        return
    for line in table_records(table):
        console.print(escape(line))

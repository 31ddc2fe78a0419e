"""The CLI's console: output a script reads does not depend on the terminal width or a path's length."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from router_rl.cli.console import make_console, print_table, table_records


def _table() -> Table:
    t = Table(title="Offline evaluation on test")
    for col in ("policy", "quality ratio", "cost share", "gates"):
        t.add_column(col)
    t.add_row("single:claude-sonnet-4.5", "100.0% [100.0%, 100.0%]", "100.0% [100.0%, 100.0%]", "none")
    t.add_row("lgbm@local=0.8", "84.5% [81.5%, 88.6%]", "21.0% [17.6%, 24.1%]", "")
    return t


def _console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    con = make_console()
    con.file = buf
    con.width = width
    return con, buf


@pytest.mark.parametrize("width", [40, 80])
def test_a_table_too_wide_becomes_records_with_nothing_cut(width: int) -> None:
    con, buf = _console(width)
    print_table(con, _table())
    out = buf.getvalue()
    assert "…" not in out and "┃" not in out
    lines = out.splitlines()
    assert lines[0] == "Offline evaluation on test"
    assert "policy: single:claude-sonnet-4.5" in lines
    assert "  quality ratio  100.0% [100.0%, 100.0%]" in lines
    # an empty cell is left out of its record
    block = lines[lines.index("policy: lgbm@local=0.8") :]
    assert not any(line.strip().startswith("gates") for line in block)


def test_a_table_that_fits_stays_a_table() -> None:
    con, buf = _console(200)
    print_table(con, _table())
    out = buf.getvalue()
    assert "┃ policy" in out and "single:claude-sonnet-4.5" in out and "…" not in out


def test_long_lines_are_never_wrapped() -> None:
    con, buf = _console(40)
    line = "wrote 840 rows (120 tasks x 7 models) to /tmp/" + "x" * 120 + "/sim.parquet"
    con.print(line)
    assert buf.getvalue() == line + "\n"


def test_records_of_markup_cells_are_plain_text() -> None:
    t = Table("model", "where")
    t.add_row("[bold]rnj-1:8b[/bold]", "local")
    assert table_records(t) == ["model: rnj-1:8b", "  where  local"]

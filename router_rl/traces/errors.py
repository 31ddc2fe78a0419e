"""Errors raised while reading or validating traces."""

from __future__ import annotations


class TraceValidationError(ValueError):
    """A trace table breaks its schema.

    The message always names the file (when known), the first offending row(s), the column and
    what was expected, e.g. ``routerbench.csv: row 17, column 'quality': expected a float in
    [0, 1], got 1.5 (3 rows affected)``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: list[int] | None = None,
        n_rows: int | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.column = column
        self.rows = rows or []
        self.n_rows = n_rows if n_rows is not None else len(self.rows)
        parts: list[str] = []
        if source:
            parts.append(f"{source}:")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            parts.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{', ...' if len(self.rows) > 5 else ''},")
        if column:
            parts.append(f"column {column!r}:")
        parts.append(problem)
        if self.n_rows > 1:
            parts.append(f"({self.n_rows} rows affected)")
        super().__init__(" ".join(parts))

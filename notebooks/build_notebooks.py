"""Generate the researcher notebooks from reviewable Python sources and store them executed.

Usage::

    .venv/bin/python notebooks/build_notebooks.py                  # (re)build + execute every notebook
    .venv/bin/python notebooks/build_notebooks.py --only 03_budgeted_env
    .venv/bin/python notebooks/build_notebooks.py --check          # exit 1 when a committed copy is stale

Each notebook's source is ``notebooks/src/<name>.py`` in the "percent" format (valid Python, linted
with the rest of the tree): ``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose
lines are comments (``# text``); in code cells a commented magic (``# %matplotlib inline``) becomes
the magic, as jupytext does. Edit the source, then run this script: it writes
``notebooks/<name>.ipynb`` with every cell executed (nbclient, kernel ``python3``, run in a temporary
folder), outputs and small PNG figures kept, so GitHub shows the plots. ``--check`` compares the
committed copies' cells (type, id, source) with the sources and requires them executed without error;
``tests/experiments/test_notebooks.py`` runs it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = HERE / "src"

Cell = tuple[str, str]

_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
_MAGIC = re.compile(r"^# (?P<magic>%[A-Za-z]\w*.*)$")  # jupytext's commented magic: "# %matplotlib inline"

#: Seconds one notebook may run when built or tested (each runs in a few minutes on 2 cores).
TIMEOUT_S = 600


def sources(src_dir: Path = SRC) -> dict[str, Path]:
    """``{"01_quickstart.ipynb": Path(".../src/01_quickstart.py"), ...}`` in name order."""
    return {p.stem + ".ipynb": p for p in sorted(src_dir.glob("[0-9]*.py"))}


def parse_cells(text: str, *, source: str = "<text>") -> list[Cell]:
    """Split a percent-format source into ``("md" | "code", text)`` cells.

    Raises:
        ValueError: Text before the first marker, an unknown marker, an empty cell, or a Markdown
            line that is not a comment (naming ``source`` and the line).
    """
    cells: list[Cell] = []
    kind: str | None = None
    body: list[str] = []
    start = 0

    def flush() -> None:
        if kind is None:
            return
        src = "\n".join(body).strip("\n")
        if not src.strip():
            raise ValueError(f"{source}:{start}: empty {kind} cell")
        cells.append((kind, src))

    for no, line in enumerate(text.splitlines(), start=1):
        m = _MARKER.match(line)
        if m:
            flush()
            rest = m["rest"].strip()
            if rest not in ("", "[markdown]"):
                raise ValueError(f"{source}:{no}: unknown cell marker {line!r}; expected '# %%' or '# %% [markdown]'")
            kind, body, start = ("md" if rest else "code"), [], no
            continue
        if kind is None:
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"{source}:{no}: code before the first '# %%' marker")
            continue  # a module header comment
        if kind == "md":
            if line and not line.startswith("#"):
                raise ValueError(f"{source}:{no}: a Markdown cell line must be a comment ('# ...'), got {line!r}")
            line = line[2:] if line.startswith("# ") else line[1:]
        elif m := _MAGIC.match(line):
            line = m["magic"]
        body.append(line)
    flush()
    if not cells:
        raise ValueError(f"{source}: no cells (expected '# %%' markers)")
    return cells


def build(cells: list[Cell]) -> Any:
    """An nbformat v4 notebook (python3 kernel, no outputs) from ``cells``, with stable cell ids."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        if kind not in ("md", "code"):
            raise ValueError(f"cell {i}: kind must be 'md' or 'code', got {kind!r}")
        cell = v4.new_markdown_cell(src) if kind == "md" else v4.new_code_cell(src)
        cell["id"] = f"cell-{i:02d}"  # stable ids keep the files diff-friendly
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def build_source(path: Path) -> Any:
    """The unexecuted notebook of one source file."""
    source = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return build(parse_cells(path.read_text(), source=str(source)))


def execute(nb: Any, *, workdir: Path, timeout: int = TIMEOUT_S) -> float:
    """Execute ``nb`` in place with nbclient (cwd ``workdir``); returns the wall seconds.

    The kernel sees ``PYTHONPATH`` with the repository root first, ``MPLBACKEND=Agg`` (figures are
    shown with ``IPython.display.display``) and the Flower / Hugging Face offline settings.
    """
    from nbclient import NotebookClient

    env_keep = {k: os.environ.get(k) for k in ("PYTHONPATH", "MPLBACKEND")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env_keep["PYTHONPATH"]) if p)
    os.environ["MPLBACKEND"] = "Agg"
    for k, v in {"HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0",
                 "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}.items():
        os.environ.setdefault(k, v)
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
        return time.perf_counter() - t0
    finally:
        for k, old in env_keep.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def output_text(nb: Any) -> str:
    """All text a reader sees in the outputs (streams, plain-text results, errors)."""
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", ""))
            parts.append(str(o.get("data", {}).get("text/plain", "")))
            parts.append(str(o.get("data", {}).get("text/html", "")))
            if o.get("output_type") == "error":
                parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "\n".join(parts)


def check_outputs(name: str, nb: Any, *, forbidden: tuple[str, ...] = ()) -> list[str]:
    """Problems of an executed notebook: unexecuted cells, errors, machine paths in the outputs."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any(c.get("execution_count") is None for c in code):
        problems.append(f"{name}: not executed (run notebooks/build_notebooks.py)")
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        first = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
        problems.append(f"{name}: {len(errors)} cell(s) raised, first: {first}")
    text = output_text(nb)
    problems += [f"{name}: outputs contain the machine path {p!r}" for p in forbidden if p and p in text]
    return problems


def cell_signature(nb: Any) -> list[tuple[str, str, str]]:
    """``(cell_type, id, source)`` of every cell: what the staleness check compares."""
    return [(c.cell_type, str(c.get("id")), c.source) for c in nb.cells]


def stale(committed_dir: Path = HERE, src_dir: Path = SRC) -> list[str]:
    """Committed notebooks whose cells differ from their source, that are missing or unexecuted."""
    import nbformat

    out = []
    srcs = sources(src_dir)
    for name, path in srcs.items():
        target = committed_dir / name
        if not target.is_file():
            out.append(f"{name}: missing")
            continue
        nb = nbformat.read(target, as_version=4)
        if cell_signature(nb) != cell_signature(build_source(path)):
            out.append(f"{name}: cells differ from {path.name}")
        else:
            out += check_outputs(name, nb)
    out += [f"{p.name}: no source in {src_dir.name}/" for p in sorted(committed_dir.glob("[0-9]*.ipynb"))
            if p.name not in srcs]
    return out


def main(argv: list[str] | None = None) -> int:
    """Build + execute (default) or ``--check`` the notebooks; returns the exit code."""
    import nbformat

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--check", action="store_true", help="fail when a committed notebook is stale or unexecuted")
    p.add_argument("--only", nargs="*", default=None, help="notebook names (with or without .ipynb) to build")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where the executed notebooks are written")
    p.add_argument("--no-execute", action="store_true", help="write the notebooks without outputs (drafting only)")
    a = p.parse_args(argv)
    if a.check:
        problems = stale(a.out_dir)
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        return 1 if problems else 0
    srcs = sources()
    if a.only is not None:
        wanted = {n if n.endswith(".ipynb") else n + ".ipynb" for n in a.only}
        unknown = sorted(wanted - set(srcs))
        if unknown:
            print(f"--only: unknown notebook(s) {unknown}; known: {sorted(srcs)}", file=sys.stderr)
            return 2
        srcs = {n: s for n, s in srcs.items() if n in wanted}
    a.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, path in srcs.items():
        try:
            nb = build_source(path)
        except ValueError as exc:
            print(f"FAILED {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not a.no_execute:
            with tempfile.TemporaryDirectory(prefix="router-rl-nb-") as tmp:
                try:
                    seconds = execute(nb, workdir=Path(tmp))
                except Exception as exc:  # the cell error is in the notebook; report it and go on
                    print(f"FAILED {name}: {type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}",
                          file=sys.stderr)
                    failed += 1
                    continue
                problems = check_outputs(name, nb, forbidden=(str(ROOT), tmp, str(Path.home()), sys.prefix))
            if problems:
                print("\n".join(problems), file=sys.stderr)
                failed += 1
                continue
            print(f"executed {name} in {seconds:.0f} s")
        nbformat.write(nb, a.out_dir / name)
        print(f"wrote {a.out_dir / name}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

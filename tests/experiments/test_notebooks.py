"""The notebooks are generated from notebooks/build_notebooks.py and the quickstart executes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"


def test_committed_notebooks_match_their_source(load_script: Any, tmp_path: Path) -> None:
    builder = load_script("notebooks/build_notebooks.py")
    assert builder.main(["--check"]) == 0, "run: .venv/bin/python notebooks/build_notebooks.py"
    assert builder.main(["--out-dir", str(tmp_path)]) == 0
    import nbformat

    for name in builder.NOTEBOOKS:
        nb = nbformat.read(tmp_path / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name
    with pytest.raises(ValueError, match="kind must be"):
        builder.build([("python", "x = 1")])


@pytest.mark.slow
def test_quickstart_executes(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB_DIR / "01_quickstart.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in code for o in c.outputs
    )
    assert "reference model: claude-sonnet-4.5" in text
    assert "phase1" in text and "highest_passed" in text  # the gates table rendered
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the frontier plot

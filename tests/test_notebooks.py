"""The researcher notebooks run from top to bottom on a small synthetic evaluation."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def data_root(research) -> Path:
    return research.root


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, data_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMPACT_DATA_ROOT", str(data_root))
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert (data_root / "notebook_earnings_trajectory.png").stat().st_size > 5_000
    # the trajectory table has the event times it promises
    last = [c for c in nb.cells if c.cell_type == "code"][-2]
    assert any("event_time" in str(o.get("data", {})) for o in last.outputs)

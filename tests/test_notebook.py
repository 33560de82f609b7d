"""notebooks/quickstart.ipynb runs end to end (tiny random prior, a few steps) and shows its images."""

from __future__ import annotations

import os

import pytest

from .helpers import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[dev]')")
    from jupyter_client.kernelspec import NoSuchKernel

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    # The kernel inherits this environment: tiny settings, this checkout's package, one thread.
    monkeypatch.setenv("MYSTYLE_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except NoSuchKernel as e:
        pytest.skip(f"no python3 Jupyter kernel: {e}")
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"a notebook cell failed:\n{e}")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "some code cells did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    images = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    # photo, invert, inpaint, super-resolve, edit, sample
    assert len(images) == 6, [c.source.splitlines()[0] for c in images]
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "tiny random one" in text  # the tiny prior was used, not a real one found on disk


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)

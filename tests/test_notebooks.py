"""Execute every notebook in ``notebooks/`` so that a notebook that breaks fails the tests.

The notebooks run with ``CONVTRANSPOSE_NOTEBOOK_SMALL=1``, which they honour by using small
problems and few repeats; the committed copies keep the outputs (and plots) of a full run.
``python tests/test_notebooks.py [NAME ...]`` re-executes notebooks at full size and saves
their outputs in place.
"""
import os
import pathlib
import re
import sys

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
SMALL_ENV = "CONVTRANSPOSE_NOTEBOOK_SMALL"


def execute(path, small=True, timeout=600):
    """Run the notebook at ``path`` in a fresh kernel; return the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    import convtranspose

    nb = nbformat.read(path, as_version=4)
    # the kernel imports the convtranspose this process imports, wherever it comes from
    where = str(pathlib.Path(convtranspose.__file__).resolve().parents[1])
    saved = {k: os.environ.get(k) for k in (SMALL_ENV, "PYTHONPATH", "MPLBACKEND")}
    os.environ[SMALL_ENV] = "1" if small else "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (where, saved["PYTHONPATH"]) if p)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = execute(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_outputs(path):
    """Saved outputs (plots) stay in the committed files, so the notebooks read on GitHub."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{path.name} was saved without outputs; run python tests/test_notebooks.py"
    if path.name[:3] in ("01_", "02_", "03_"):   # the explaining and measuring notebooks plot
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot"


def _saved_text(nb):
    """The text of a notebook's saved outputs (streams, plain-text results, errors)."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
            parts.extend(o.get("traceback", []))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_hold_no_machine_path(path):
    """Saved outputs must not show where the notebook ran (a home or checkout folder)."""
    import nbformat
    text = _saved_text(nbformat.read(path, as_version=4))
    root = str(pathlib.Path(__file__).resolve().parents[1])
    found = re.findall(r"(?:/home/|/Users/|/work/|/root/|[A-Z]:\\+Users)\S*", text)
    assert root not in text and not found, f"{path.name}: machine paths {found[:3]}"


def test_readme_lists_every_notebook():
    listed = (NOTEBOOKS[0].parent / "README.md").read_text()
    assert all(f"`{p.name}`" in listed for p in NOTEBOOKS)


if __name__ == "__main__":
    import nbformat
    names = sys.argv[1:]
    for path in NOTEBOOKS:
        if names and not any(n in path.name for n in names):
            continue
        nbformat.write(execute(path, small=False), path)
        print(f"executed and saved {path.name}")

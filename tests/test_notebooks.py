"""The tutorial notebooks run from top to bottom, and the committed files are up to date.

Each notebook is executed in memory (the committed file is never rewritten) by nbclient with
the `python3` kernel that ipykernel provides, `notebooks/` as the working directory, a time
limit per cell, and the environment `notebooks/build_notebooks.py` runs them in (the shipped
MNIST subset, offline, the short training runs of 06). The notebooks assert their own key
facts (gradients against hand derivations and finite differences, accuracies, held-out
losses), so a notebook that runs is one whose numbers still hold. Rebuild the committed files
with `python notebooks/build_notebooks.py`. Also here: the name loader of notebook 06,
`notebooks/namesdata.py`.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _load_module(name: str):  # noqa: ANN202 (a module)
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_module("build_notebooks")
namesdata = _load_module("namesdata")

# What each notebook must display, at least: mime type -> number of outputs.
REQUIRED_OUTPUTS = {
    "01_autograd_basics": {"image/svg+xml": 4},  # the graph before and after backward, ...
    "02_building_an_mlp": {"image/svg+xml": 2, "image/png": 4},  # graph, collapsed; 4 plots
    "03_mnist": {"image/png": 5},  # digits, curves, confusion, mistakes, weights
    "04_higher_order": {"image/svg+xml": 1, "image/png": 2},
    "05_your_own_op": {"image/svg+xml": 1, "image/png": 2},  # the ops' graph; STE, hook norms
    "06_attention": {"image/svg+xml": 1, "image/png": 3},  # a block; counts, attention, losses
}
# notebooks that need a package of the `notebooks` extra
NEEDS = {"06_attention": "names"}
MAX_FILE_BYTES = 1_000_000  # committed with outputs, each notebook stays under 1 MB


def _mime_counts(nb: nbformat.NotebookNode) -> Counter:
    return Counter(
        mime for cell in nb.cells for out in cell.get("outputs", []) for mime in out.get("data", {})
    )


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_every_notebook_is_tested() -> None:
    on_disk = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert on_disk == set(builder.NOTEBOOKS) == set(REQUIRED_OUTPUTS)


# 06 trains three language models (~20 s): run with the slow tests (CI runs those too), so
# that the unit suite stays under a minute
SLOW = {"06_attention"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REQUIRED_OUTPUTS],
)
def test_notebook_runs(name: str, monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    if "image/svg+xml" in REQUIRED_OUTPUTS[name] and shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' program not installed (the notebook draws graphs)")
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"package {NEEDS[name]!r} not installed: pip install -e '.[notebooks]'")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:  # the checks below must see this run's outputs, not the committed ones
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for key in builder.NOTEBOOK_ENV_UNSET:  # the kernel inherits this process's environment
        monkeypatch.delenv(key, raising=False)
    for key, value in builder.NOTEBOOK_ENV.items():
        monkeypatch.setenv(key, value)

    client = NotebookClient(
        nb,
        timeout=builder.CELL_TIMEOUT_S,
        kernel_name=builder.KERNEL,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    print(f"{name}: executed in {seconds:.1f} s")

    assert _errors(nb) == []
    counts = _mime_counts(nb)
    for mime, least in REQUIRED_OUTPUTS[name].items():
        assert counts[mime] >= least, f"{name}: {counts[mime]} {mime} outputs, expected {least}+"


@pytest.mark.parametrize("name", list(REQUIRED_OUTPUTS))
def test_committed_notebook_is_current(name: str) -> None:
    """The committed file holds the builder's cells, executed in order, with their outputs."""
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    committed = [(cell.cell_type, cell.source) for cell in nb.cells]
    assert committed == builder.NOTEBOOKS[name], (
        f"{path.name} differs from notebooks/build_notebooks.py; rerun "
        f"`python notebooks/build_notebooks.py {name[:2]}`"
    )
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name} is not executed in order"
    assert _errors(nb) == []
    committed_counts = _mime_counts(nb)
    for mime, least in REQUIRED_OUTPUTS[name].items():
        assert committed_counts[mime] >= least, f"{path.name} was committed without its outputs"
    assert path.stat().st_size < MAX_FILE_BYTES


# ----- notebooks/namesdata.py ----------------------------------------------------------------
def test_load_names_reads_any_text_file(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("Anna\n\n  bob \nANNA\nMary Ann\nZoë\n", encoding="utf-8")
    assert namesdata.load_names(path) == ["anna", "bob", "mary ann", "zoë"]
    every = namesdata.load_names(str(path), unique=False)
    assert every == ["anna", "bob", "anna", "mary ann", "zoë"]


def test_load_names_census_lists() -> None:
    pytest.importorskip("names")
    first = namesdata.load_names()
    female = namesdata.load_names(lists="female")
    male = namesdata.load_names(lists="male")
    last = namesdata.load_names(lists="last")
    # the counts of the 1990 census files as the `names` package ships them
    assert len(namesdata.load_names(unique=False)) == 4275 + 1219 == 5494
    assert (len(female), len(male), len(last)) == (4275, 1219, 88799)
    assert len(first) == 5163 == 5494 - len(set(female) & set(male))
    assert first[:3] == ["mary", "patricia", "linda"]
    assert first == list(dict.fromkeys(female + male))
    assert last[:3] == ["smith", "johnson", "williams"]
    assert all(name.isascii() and name.isalpha() and name.islower() for name in first + last)


def test_load_names_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="lists must be one of first, female, male, last"):
        namesdata.load_names(lists="middle")
    monkeypatch.setitem(sys.modules, "names", None)  # as if the package were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \"\.\[notebooks\]\""):
        namesdata.load_names()

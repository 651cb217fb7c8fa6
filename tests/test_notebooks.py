"""Every notebook is a jupytext pair (py:percent source + .ipynb) in sync, and no .ipynb holds outputs.

nbval executes the notebooks themselves: `pytest --nbval-lax notebooks/` (the README's test command).
"""

import json
import re

import jupytext
import pytest

from course_utils import config, publishing

ROOT = config.repo_root()
SOURCES = publishing.notebook_sources()


def test_notebooks_exist():
    assert [p.stem[:2] for p in SOURCES] == [f"{i:02d}" for i in range(1, len(SOURCES) + 1)]
    assert {p.stem for p in ROOT.joinpath("notebooks").glob("*.ipynb")} == {p.stem for p in SOURCES}


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run jupytext --sync {py}"
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert cells(jupytext.read(py)) == cells(jupytext.read(ipynb)), f"run jupytext --sync {py}"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_ipynb_has_no_outputs(py):
    nb = json.loads(py.with_suffix(".ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "strip outputs before committing"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_notebook_standard(py):
    """The skeleton every notebook follows (the course's notebook standard)."""
    text = py.read_text()
    for heading in ("## What you will learn", "## What you need", "## Summary", "## Exercises"):
        assert heading in text, f"{py.name} lacks '{heading}'"
    assert "Open In Colab" in text and "google.colab" in text
    assert ".cuda()" not in text, "pick the device once with course_utils.config.get_device()"
    assert "<details>" in text, "exercise solutions go in collapsible <details> blocks"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_nbval_runs_every_solution_after_its_notebook(py):
    """The reference solutions run in nbval's pass over the notebook (conftest.py appends them as cells), so no
    notebook is executed a second time to test them."""
    import conftest
    from nbval.plugin import IPyNbFile

    nb = jupytext.read(py.with_suffix(".ipynb"))
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    solutions = conftest.solution_blocks(nb)
    assert solutions, f"{py.name} has no reference solutions"
    extended = conftest.with_solutions(nb)
    assert sum(c.cell_type == "code" for c in extended.cells) == code_cells + len(solutions)
    assert extended.cells[-1].source.endswith(solutions[-1])
    assert IPyNbFile.collect is conftest._collect_with_solutions


def markdown_text(py) -> str:
    return "\n".join(c.source for c in jupytext.read(py).cells if c.cell_type == "markdown")


def decimals_outside_math(text: str) -> list[str]:
    """Decimal numbers in markdown outside $...$, $$...$$ and `code`: numbers a lesson states in prose."""
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$]*\$|`[^`]*`", "", text)
    return re.findall(r"(?<![\w.])\d+\.\d+(?!\w)", text)


def test_decimals_outside_math_finds_prose_numbers_only():
    assert decimals_outside_math("gains 2.5 dB, $x = 0.3$, `eta=0.85`, $$y = 1.5$$ and kept 0.5.") == ["2.5", "0.5"]


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_lessons_teach_instead_of_logging_runs(py):
    """A lesson's prose holds few decimal numbers (the numbers are printed by its cells; run histories live in
    docs/), and notebook 04, the longest, fits one class."""
    text = markdown_text(py)
    assert len(decimals_outside_math(text)) <= 30, f"{py.name}: move run numbers to docs/"
    if py.stem.startswith("04"):
        assert len(text.split()) < 3000, f"{py.name}: {len(text.split())} markdown words, over one class"

"""Test defaults: the ci profile, the offline MNIST pack when it sits beside the checkout, and a
throw-away outputs folder so tests never reuse (or clobber) a checkpoint from a real run."""

import os
import re
import tempfile
from pathlib import Path

import nbformat
from nbval import plugin as _nbval

os.environ.setdefault("COURSE_PROFILE", "ci")
_offline = Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist-offline"
if "COURSE_DATA_DIR" not in os.environ and (_offline / "MNIST" / "raw").is_dir():
    os.environ["COURSE_DATA_DIR"] = str(_offline)
os.environ.setdefault("COURSE_OUTPUT_DIR", tempfile.mkdtemp(prefix="course-test-outputs-"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # each test worker its own outputs: two never race on one checkpoint
    os.environ["COURSE_OUTPUT_DIR"] = str(Path(os.environ["COURSE_OUTPUT_DIR"]) / os.environ["PYTEST_XDIST_WORKER"])
# nbval runs each notebook's kernel in notebooks/: make a relative data or output folder absolute first
for _name in ("COURSE_DATA_DIR", "COURSE_OUTPUT_DIR"):
    if os.environ.get(_name, "").strip():
        os.environ[_name] = str(Path(os.environ[_name]).expanduser().resolve())

# nbval executes every notebook once; in that same run, each notebook's reference solutions (the ```python blocks of
# its <details> cells, which use the notebook's variables) run after its last cell, in its kernel, as extra cells, so
# a solution can never rot and no notebook is executed twice.
SOLUTION_RE = re.compile(r"<details>.*?```python\n(.*?)```.*?</details>", re.DOTALL)


def solution_blocks(nb) -> list[str]:
    """The reference solutions of a notebook, in order."""
    return [block for cell in nb.cells if cell.cell_type == "markdown" for block in SOLUTION_RE.findall(cell.source)]


def with_solutions(nb):
    """The notebook with one code cell per reference solution appended (each prints a marker first)."""
    blocks = solution_blocks(nb)
    nb.cells += [nbformat.v4.new_code_cell(f"print('--- solution {i + 1} of {len(blocks)}')\n{block}")
                 for i, block in enumerate(blocks)]
    return nb


_collect_cells = _nbval.IPyNbFile.collect


def _collect_with_solutions(self):
    notebook = with_solutions(nbformat.read(str(self.fspath), as_version=4))
    _nbval.nbformat = type("OneNotebook", (), {"read": staticmethod(lambda *a, **k: notebook),
                                                "from_dict": staticmethod(nbformat.from_dict)})
    try:
        yield from _collect_cells(self)
    finally:
        _nbval.nbformat = nbformat


_nbval.IPyNbFile.collect = _collect_with_solutions

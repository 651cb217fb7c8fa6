"""The reference solutions in each notebook's <details> blocks must run.

Each notebook's code cells are run as one script in the ci profile, followed by the ```python blocks of
its solutions (which use the notebook's variables), so a solution can never rot silently.
"""

import os
import re
import subprocess
import sys

import jupytext
import pytest

from course_utils import publishing

SOURCES = publishing.notebook_sources()
SOLUTION_RE = re.compile(r"<details>.*?```python\n(.*?)```.*?</details>", re.DOTALL)


def solution_blocks(nb) -> list[str]:
    return [block for cell in nb.cells if cell.cell_type == "markdown" for block in SOLUTION_RE.findall(cell.source)]


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_solutions_run(py, tmp_path):
    nb = jupytext.read(py)
    solutions = solution_blocks(nb)
    assert solutions, f"{py.name} has no reference solutions"
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    script = tmp_path / "with_solutions.py"
    script.write_text("\n\n".join(code + [f"print('--- solution {i + 1}')\n{s}" for i, s in enumerate(solutions)]))
    env = dict(os.environ, COURSE_PROFILE="ci", MPLBACKEND="Agg", COURSE_OUTPUT_DIR=str(tmp_path / "outputs"))
    done = subprocess.run([sys.executable, str(script)], cwd=py.parent, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"--- solution {len(solutions)}" in done.stdout

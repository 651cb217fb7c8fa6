"""The two ways into the course that CI cannot run for real: a bare Colab runtime and conda.

The Colab test runs a notebook's setup cell as Colab would (a stand-in ``google.colab`` module, the course's
address pointed at a local clone of this checkout's committed state, a fresh working folder, and a Python
environment that already has torch, as Colab does) and checks that it clones, installs and imports the course
without installing or upgrading torch. The conda test keeps environment.yml in step with pyproject.toml.
"""

import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import jupytext
import pytest

from course_utils import config, publishing

ROOT = config.repo_root()


def _requirements() -> dict[str, str]:
    """{name: lower-bound specifier ('' for none)} of every pyproject dependency, extras included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for req in reqs:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", req.strip()).groups()
        out[name.lower()] = spec.replace(" ", "")
    return out


def _conda_dependencies() -> tuple[dict[str, str], list[str]]:
    """({name: specifier} of the conda packages, [pip lines]) of environment.yml, read line by line."""
    conda, pip, in_pip = {}, [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("  - pip:"):
            in_pip = True
            continue
        item = re.fullmatch(r"(\s*)- (.+)", line)
        if item and in_pip and len(item.group(1)) > 2:
            pip.append(item.group(2).strip())
        elif item and len(item.group(1)) == 2:
            in_pip = False
            name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", item.group(2).strip()).groups()
            conda[name.lower()] = spec.replace(" ", "")
    return conda, pip


def test_environment_yml_matches_pyproject():
    conda, pip = _conda_dependencies()
    conda_name = {"torch": "pytorch"}
    from_pip = {"sphinx-mathjax-offline"}  # not on conda-forge: environment.yml installs it with pip
    pip_specs = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", line).groups() for line in pip if line[0] != "-")
    for name, spec in _requirements().items():
        key = conda_name.get(name, name)
        found = pip_specs if name in from_pip else conda
        assert key in found, f"environment.yml lacks {key} (pyproject.toml asks for {name}{spec})"
        assert found[key] == spec, f"environment.yml has {key}{found[key]}, pyproject.toml {name}{spec}"
    python_floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert conda["python"] == python_floor, f"environment.yml python{conda['python']} vs requires-python {python_floor}"
    assert "-e ." in pip, "environment.yml must install the course itself (pip: -e .)"


def _setup_cell(notebook: Path) -> str:
    cells = [c.source for c in jupytext.read(notebook).cells if c.cell_type == "code" and "google.colab" in c.source]
    assert len(cells) == 1, f"{notebook.name} needs exactly one setup cell that checks for google.colab"
    return cells[0]


def test_every_notebook_has_the_same_colab_setup_cell():
    cells = {_setup_cell(py) for py in publishing.notebook_sources()}
    assert len(cells) == 1, "the Colab setup cells differ between notebooks"


def test_colab_setup_cell_clones_installs_and_imports_without_touching_torch(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("the checkout is not a git repository")
    remote = tmp_path / "remote"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(remote)], check=True)
    # a Colab-like environment: its own site-packages, with this environment's packages (torch included) visible
    env_dir = tmp_path / "colab-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    host_site = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    (site / "preinstalled.pth").write_text(str(host_site) + "\n")
    torch_before = subprocess.run([python, "-c", "import torch; print(torch.__file__, torch.__version__)"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    cell = _setup_cell(publishing.notebook_sources()[0])
    cell = re.sub(r'^REPO_URL = "[^"]*"', f'REPO_URL = "{remote.as_uri()}"', cell, flags=re.MULTILINE)
    script = tmp_path / "colab_cell.py"
    script.write_text("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                      + cell + "\nprint('COURSE_UTILS', course_utils.__file__)\n")
    work = tmp_path / "content"
    work.mkdir()
    done = subprocess.run([python, str(script)], cwd=work, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    imported = Path(done.stdout.split("COURSE_UTILS", 1)[1].split()[0]).resolve()
    assert imported.is_relative_to((work / "course").resolve()), imported
    assert (work / "course" / "pyproject.toml").exists()
    installed = [p.name for p in site.iterdir()]
    assert any("mnist_diffusion_inpainting" in name for name in installed), installed  # pip installed the clone
    assert not [name for name in installed if name.lower().startswith(("torch", "nvidia"))], installed
    torch_after = subprocess.run([python, "-c", "import torch; print(torch.__file__, torch.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert torch_after == torch_before, "the setup cell must keep Colab's own torch"

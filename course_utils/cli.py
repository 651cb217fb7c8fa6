"""Command line: run the whole course, and keep the Colab badges pointing at the course's address.

    course run [--profile ci|cpu|full] [NOTEBOOK ...]   execute notebooks into outputs/executed/
    course badges                                      rewrite Colab badges and setup cells from pyproject.toml

(``python -m course_utils.cli ...`` works the same.) ``run`` executes every notebook top to bottom
in a fresh kernel of this Python environment, in the chosen profile, writes the executed copies
to ``outputs/executed/`` (figures land in ``outputs/figures/``), and records the time each took in
``outputs/run_summary_<profile>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

from .config import PROFILE_NAMES, get_profile, output_dir, repo_root

BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"


def _root() -> Path:
    root = repo_root()
    if root is None:
        raise SystemExit("the course commands need the course checkout (pyproject.toml and notebooks/ beside course_utils/)")
    return root


def repo_url(root: Path | None = None) -> str:
    """The course's public address: ``[project.urls] Repository`` in pyproject.toml (its only home)."""
    text = ((root or _root()) / "pyproject.toml").read_text()
    match = re.search(r'^Repository\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
    if not match:
        raise ValueError('pyproject.toml has no [project.urls] Repository = "https://github.com/OWNER/REPO"')
    url = match.group(1).rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"the Repository URL must look like https://github.com/OWNER/REPO, got {url!r}")
    return url


def colab_url(notebook: str, url: str) -> str:
    """Open-in-Colab link of ``notebooks/<notebook>`` on the main branch of the GitHub repository ``url``."""
    return url.replace("https://github.com/", "https://colab.research.google.com/github/") + f"/blob/main/notebooks/{notebook}"


def colab_badge(notebook: str, url: str) -> str:
    """Markdown of the Open-in-Colab badge for ``notebooks/<notebook>``."""
    return f"[![Open In Colab]({BADGE_SVG})]({colab_url(notebook, url)})"


_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/[^)]*?/notebooks/([\w.-]+\.ipynb)\)")
_REPO_LINE_RE = re.compile(r'^REPO_URL = "[^"]*"', flags=re.MULTILINE)


def rewrite_links(text: str, url: str) -> str:
    """Point every Colab badge and every ``REPO_URL = "..."`` line in ``text`` at ``url``."""
    text = _BADGE_RE.sub(lambda m: colab_badge(m.group(1), url), text)
    return _REPO_LINE_RE.sub(f'REPO_URL = "{url}"', text)


def notebook_sources(root: Path | None = None) -> list[Path]:
    """The notebooks' py:percent sources, in course order."""
    return sorted((root or _root()).joinpath("notebooks").glob("[0-9][0-9]_*.py"))


def write_badges(root: Path | None = None) -> list[Path]:
    """Rewrite badges and setup cells in every notebook source, its paired .ipynb, and the README."""
    import jupytext

    root = root or _root()
    url = repo_url(root)
    changed = []
    for py in notebook_sources(root):
        new = rewrite_links(py.read_text(), url)
        if new != py.read_text():
            py.write_text(new)
            changed.append(py)
        ipynb = py.with_suffix(".ipynb")
        nb = jupytext.read(py)
        if not ipynb.exists() or jupytext.writes(nb, "ipynb") != ipynb.read_text():
            jupytext.write(nb, ipynb)
            changed.append(ipynb)
    readme = root / "README.md"
    new = rewrite_links(readme.read_text(), url)
    if new != readme.read_text():
        readme.write_text(new)
        changed.append(readme)
    return changed


def check_mnist() -> None:
    """Load (and if needed download) MNIST once before any notebook runs; stop with the data error if it is missing."""
    from .data import MNISTNotFoundError, load_mnist

    try:
        n_train, n_test = len(load_mnist("train")), len(load_mnist("test"))
    except MNISTNotFoundError as missing:
        raise SystemExit(str(missing)) from None
    print(f"MNIST: {n_train} training and {n_test} test images", flush=True)


def _kernel_manager():
    """A kernel of this very Python environment (not whatever 'python3' kernelspec the user has)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class ThisEnvironment(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    return KernelManager(kernel_name="course-env", kernel_spec_manager=ThisEnvironment())


def run_notebooks(profile: str, names: list[str] | None = None, timeout: int = 3600) -> dict:
    """Execute the notebooks (all, or those whose name starts with one of ``names``) in ``profile``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    get_profile(profile)  # fails early on an unknown name
    root = _root()
    sources = notebook_sources(root)
    if names:
        sources = [p for p in sources if any(p.stem.startswith(n.removesuffix(".py").removesuffix(".ipynb"))
                                               for n in names)]
        if not sources:
            raise SystemExit(f"no notebook matches {names}")
    os.environ["COURSE_PROFILE"] = profile
    check_mnist()
    executed = output_dir("executed")
    summary = {"profile": profile, "python": platform.python_version(), "machine": platform.machine(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "notebooks": {}}
    for py in sources:
        ipynb = py.with_suffix(".ipynb")
        nb = nbformat.read(ipynb, as_version=4)
        print(f"[{profile}] running {ipynb.name} ...", flush=True)
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, km=_kernel_manager(),
                                resources={"metadata": {"path": str(py.parent)}})
        try:
            client.execute()
        except CellExecutionError as err:
            nbformat.write(nb, executed / ipynb.name)
            raise SystemExit(f"[{profile}] {ipynb.name} failed: {err.ename}: {err.evalue}\n"
                             f"the executed notebook with the full traceback: {executed / ipynb.name}") from None
        seconds = time.perf_counter() - start
        nbformat.write(nb, executed / ipynb.name)
        summary["notebooks"][py.stem] = {"seconds": round(seconds, 1), "executed": str(executed / ipynb.name)}
        print(f"[{profile}] {ipynb.name} done in {seconds / 60:.1f} min -> {executed / ipynb.name}", flush=True)
    path = output_dir() / f"run_summary_{profile}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"summary: {path}\nfigures: {output_dir('figures')}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks into outputs/executed/")
    run.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                     help="ci, cpu or full (default: $COURSE_PROFILE, else full with CUDA and cpu without)")
    run.add_argument("notebooks", nargs="*", help="only notebooks whose name starts with these (e.g. 01 02)")
    sub.add_parser("badges", help="rewrite Colab badges and setup cells from pyproject.toml's Repository URL")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_notebooks(get_profile(args.profile).name, args.notebooks)
    else:
        for path in write_badges():
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The course's one public address, and the Colab badges and setup cells that point at it.

Taught in: every notebook's first cells, notebooks 01 to 06 (the Open-in-Colab badge and the setup cell that
clones the course in a bare Colab runtime). The address lives only in ``[project.urls] Repository`` of
pyproject.toml; ``python -m course_utils badges`` (:func:`write_badges`) rewrites every badge, setup cell and the
README after that one edit.
"""

from __future__ import annotations

import re
from pathlib import Path

from .config import repo_root

BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"


def _root() -> Path:
    root = repo_root()
    if root is None:
        raise SystemExit("the course commands need the course checkout "
                         "(pyproject.toml and notebooks/ beside course_utils/)")
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
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return f"{colab}/blob/main/notebooks/{notebook}"


def colab_badge(notebook: str, url: str) -> str:
    """Markdown of the Open-in-Colab badge for ``notebooks/<notebook>``."""
    return f"[![Open In Colab]({BADGE_SVG})]({colab_url(notebook, url)})"


_BADGE_RE = re.compile(
    r"\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/[^)]*?/notebooks/([\w.-]+\.ipynb)\)"
)
_REPO_LINE_RE = re.compile(r'^REPO_URL = "[^"]*"', flags=re.MULTILINE)
_CLONE_RE = re.compile(r"git clone (?:--depth 1 )?https://\S+? course\b")


def rewrite_links(text: str, url: str) -> str:
    """Point every Colab badge, every ``REPO_URL = "..."`` line and every ``git clone URL course`` in ``text`` at
    ``url``."""
    text = _BADGE_RE.sub(lambda m: colab_badge(m.group(1), url), text)
    text = _CLONE_RE.sub(lambda m: m.group(0).split(" https://")[0] + f" {url} course", text)
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
    for path in [*notebook_sources(root), root / "README.md"]:
        text = path.read_text()
        if rewrite_links(text, url) != text:
            path.write_text(rewrite_links(text, url))
            changed.append(path)
        if path.suffix == ".py":  # the paired notebook follows its source
            ipynb, nb = path.with_suffix(".ipynb"), jupytext.read(path)
            if not ipynb.exists() or jupytext.writes(nb, "ipynb") != ipynb.read_text():
                jupytext.write(nb, ipynb)
                changed.append(ipynb)
    return changed

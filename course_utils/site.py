"""The course as one static HTML site: ``course site --out DIR`` (``python -m course_utils site``).

Taught in: the README (it and docs/teaching.md point teachers here; the site shows notebooks 01 to 06 in order,
as a run left them). The front page (``DIR/index.html``) is
the README; every notebook is one page, executed where a run of the profile left its executed copy in
``outputs/executed/<profile>/`` (``./run_course.sh cpu``), and as committed (no outputs) otherwise; the pages of
``docs/`` follow. Sphinx with MyST-NB builds it (the engine of Jupyter Book 1, which numpy-tutorials uses), with
every warning an error, so a broken link or a missing image stops the build. MathJax comes with the site, so its
equations show on a machine without a network.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .config import output_dir
from .publishing import _root, notebook_sources

CONF = '''project = "Diffusion inpainting on MNIST"
# MathJax from the site's own files, not a web address, so the pages show their equations offline (a classroom's
# projector without a network); the page width and code font fit most of the notebooks' code lines
extensions = ["myst_nb", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # the notebooks are shown as the course's run left them
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_theme_options = {"page_width": "1240px", "sidebar_width": "240px", "code_font_size": "0.78em"}
html_title = project
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type"]
'''


def _front_page(readme: str, names: list[str]) -> str:
    """The README as the site's front page, with a table of contents of the notebooks and docs pages."""
    toc = "\n".join(["```{toctree}", ":maxdepth: 1", ":caption: The course", "",
                     *[f"notebooks/{name}" for name in names], "```", "",
                     "```{toctree}", ":maxdepth: 1", ":caption: More", ":glob:", "", "docs/*", "```"])
    return readme.rstrip() + "\n\n" + toc + "\n"


def prepare_sources(src: Path, profile: str = "cpu") -> list[str]:
    """Copy what the site shows into ``src``: the README as ``index.md``, the notebooks (executed copies of
    ``profile`` where there are any), ``docs/`` and the gallery images. Returns the names of the notebooks that
    came from an executed run."""
    root = _root()
    executed_dir = output_dir("executed", profile)
    (src / "notebooks").mkdir(parents=True)
    names = [py.stem for py in notebook_sources(root)]
    executed = [name for name in names if (executed_dir / f"{name}.ipynb").is_file()]
    for name in names:
        ipynb = f"{name}.ipynb"
        shutil.copy(executed_dir / ipynb if name in executed else root / "notebooks" / ipynb, src / "notebooks" / ipynb)
    shutil.copytree(root / "docs", src / "docs")
    shutil.copytree(root / "outputs" / "gallery", src / "outputs" / "gallery")
    (src / "index.md").write_text(_front_page((root / "README.md").read_text(), names))
    (src / "conf.py").write_text(CONF)
    return executed


def build_site(out: str | Path, profile: str = "cpu") -> Path:
    """Build the site into ``out`` (warnings are errors) and return its front page, ``out/index.html``."""
    try:
        from sphinx.cmd.build import build_main  # an optional dependency: only this command needs it
    except ImportError:
        raise SystemExit("the site needs Sphinx and MyST-NB: pip install -e \".[site]\"") from None

    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        executed = prepare_sources(src, profile)
        print(f"site: {len(executed)} executed notebooks from outputs/executed/{profile}/"
              f"{'' if executed else ' (none: run ./run_course.sh ' + profile + ' first to show outputs)'}")
        status = build_main(["-W", "--keep-going", "-q", "-b", "html", str(src), str(out)])
    if status != 0:
        raise RuntimeError(f"the site did not build (sphinx exit status {status}); its warnings are above")
    return out / "index.html"

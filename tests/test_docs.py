"""The README and the pages in docs/: every relative link and image resolves, and the README stays short enough to
take in at one sitting (the long forms live in docs/)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """Every link or image target of a markdown text that points into the repository (not a web address or an
    anchor on the same page)."""
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_relative_links_finds_files_and_skips_web_addresses():
    text = "[a](docs/x.md) ![b](../outputs/y.png) [c](https://e.org/z) [d](#here) [e](notes.md#part)"
    assert relative_links(text) == ["docs/x.md", "../outputs/y.png", "notes.md#part"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    text = page.read_text()
    missing = [t for t in relative_links(text) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that are not there: {missing}"


def test_the_readme_is_under_1500_words():
    words = len((ROOT / "README.md").read_text().split())  # what `wc -w` counts
    assert words < 1500, f"README.md has {words} words; move the long forms to docs/"


def test_docs_pages_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"docs/{page.name} is not linked from the README"

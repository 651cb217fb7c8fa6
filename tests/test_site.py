"""`course site --out DIR`: the README, every notebook and docs/ as one static HTML site, built with warnings as
errors, every internal link and image resolving."""

import re
from pathlib import Path

from course_utils import cli, config, publishing


def broken_links(folder: str | Path) -> list[str]:
    """Every ``href`` or ``src`` of the site's pages that points to a file of the site that is not there."""
    folder = Path(folder)
    missing = []
    for page in folder.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text(errors="replace")):
            if re.match(r"[a-z]+:|//", target):  # a web address, mailto:, data:
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(folder)} -> {target}")
    return missing


def test_the_site_builds_with_a_page_per_notebook_and_no_broken_link(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))  # no executed run: the committed notebooks
    assert cli.main(["site", "--out", str(tmp_path / "site"), "--profile", "ci"]) == 0
    assert "0 executed notebooks" in capsys.readouterr().out
    front = (tmp_path / "site" / "index.html").read_text()
    for py in publishing.notebook_sources():
        assert (tmp_path / "site" / "notebooks" / f"{py.stem}.html").is_file()
        assert f'href="notebooks/{py.stem}.html"' in front, f"the front page does not link {py.stem}"
    for page in (config.repo_root() / "docs").glob("*.md"):
        assert (tmp_path / "site" / "docs" / f"{page.stem}.html").is_file(), f"docs/{page.name} has no page"
    assert broken_links(tmp_path / "site") == []
    # every script the pages load is the site's own (MathJax included), so the equations show without a network
    for page in (tmp_path / "site").rglob("*.html"):
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.read_text(errors="replace"))
        assert [s for s in scripts if re.match(r"[a-z]+:|//", s)] == [], f"{page.name} loads a script from the web"
    assert (tmp_path / "site" / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_broken_links_finds_a_missing_page_and_ignores_web_addresses(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html">b</a> <a href="c.html#x">c</a> <img src="https://e.org/i.png">'
                                     ' <a href="#top">top</a>')
    (tmp_path / "b.html").write_text("")
    assert broken_links(tmp_path) == ["a.html -> c.html"]

import json
import re

import pytest

from course_utils import cli, config, publishing, runner

ROOT = config.repo_root()


def test_repo_url_is_read_from_pyproject():
    url = publishing.repo_url()
    assert url.startswith("https://github.com/")
    assert re.search(r"^Repository\s*=", (ROOT / "pyproject.toml").read_text(), re.M)


def test_badge_and_link_rewriting():
    url = "https://github.com/someone/course"
    text = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/old/place/blob/main/notebooks/01_forward_process.ipynb)\n"
        'REPO_URL = "https://github.com/old/place"\n'
        "  git clone https://github.com/old/place course && cd course\n"
    )
    out = publishing.rewrite_links(text, url)
    assert "github/someone/course/blob/main/notebooks/01_forward_process.ipynb" in out
    assert 'REPO_URL = "https://github.com/someone/course"' in out
    assert "  git clone https://github.com/someone/course course && cd course\n" in out
    assert publishing.rewrite_links(out, url) == out


def test_every_notebook_and_the_readme_point_at_the_one_address():
    """The address lives in pyproject.toml; badges and setup cells must agree (run `course badges`)."""
    url = publishing.repo_url()
    sources = publishing.notebook_sources()
    assert sources, "no notebooks found"
    for py in sources:
        text = py.read_text()
        assert publishing.colab_badge(py.with_suffix(".ipynb").name, url) in text, f"{py.name}: stale Colab badge"
        assert f'REPO_URL = "{url}"' in text, f"{py.name}: stale REPO_URL in the setup cell"
        assert publishing.rewrite_links(text, url) == text
    readme = (ROOT / "README.md").read_text()
    assert publishing.rewrite_links(readme, url) == readme, "the README's clone command or a badge is stale"
    for py in sources:
        assert publishing.colab_url(py.with_suffix(".ipynb").name, url) in readme, f"README lacks the badge of {py.name}"


def test_the_readme_lists_every_notebook_in_one_table():
    """Markdown ends a table at the first line that is not a row: a blank line between two rows would show the
    rows after it as loose text on GitHub. Every notebook's row must sit in the README's one table of notebooks."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| # | notebook |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = "\n".join(lines[start:end])
    for py in publishing.notebook_sources():
        assert f"]({py.parent.name}/{py.stem}.ipynb)" in table, f"{py.stem} is not a row of the README's table"


def test_bad_repository_url(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project.urls]\nRepository = "ftp://x"\n')
    with pytest.raises(ValueError, match="OWNER/REPO"):
        publishing.repo_url(tmp_path)


def test_run_rejects_unknown_profile():
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "huge"])


def test_run_stops_with_the_data_message_when_mnist_is_missing(tmp_path, monkeypatch):
    from torchvision import datasets

    def no_network(self, *a, **k):
        raise RuntimeError("no network")

    monkeypatch.setattr(datasets.MNIST, "download", no_network)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "01"])
    assert "MNIST/raw/train-images-idx3-ubyte" in str(stop.value.code)


def test_run_executes_a_notebook(tmp_path, monkeypatch):
    """`course run` end to end on notebook 01 in the ci profile: executed copy, figures and timing summary."""
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "ci")  # run_notebooks sets it for its kernels; restore afterwards
    summary = cli.run_notebooks("ci", ["01"])
    assert list(summary["notebooks"]) == ["01_forward_process"]
    assert (tmp_path / "executed" / "ci" / "01_forward_process.ipynb").exists()  # one folder per profile
    assert (tmp_path / "figures" / "ci" / "01_schedules.png").exists()
    assert (tmp_path / "run_summary_ci.json").exists()


def test_relative_data_and_output_folders_are_made_absolute_for_the_kernels(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", "rel/data")
    monkeypatch.setenv("COURSE_OUTPUT_DIR", "rel/out")
    runner._absolute_env_paths()
    import os

    assert os.environ["COURSE_DATA_DIR"] == str(tmp_path / "rel" / "data")
    assert os.environ["COURSE_OUTPUT_DIR"] == str(tmp_path / "rel" / "out")


def test_runner_progress_pieces(monkeypatch, capsys):
    import time

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n## 1. Data"),
                                         nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("## 2. Training"),
                                         nbformat.v4.new_code_cell("train()")])
    assert runner._headings(nb) == ["1. Data", "1. Data", "2. Training", "2. Training"]
    assert runner._last_line("training:  10%|#   | 5/50\rtraining:  20%|##  | 10/50\r") == "training:  20%|##  | 10/50"
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="loss 0.1\nKey result: 12.3 dB\n")]
    assert runner.key_result(nb) == "Key result: 12.3 dB"
    assert runner._progress_text({"msg_type": "stream", "content": {"text": "step 3\n"}}) == "step 3\n"
    # what tqdm.auto's widget really sends: its counter as HTML, with &lt; and &nbsp;
    value = "&nbsp;12/32&nbsp;[01:46&lt;02:54]"
    widget = {"msg_type": "comm_msg", "content": {"data": {"method": "update", "state": {"value": value}}}}
    assert runner._progress_text(widget).strip() == "12/32 [01:46<02:54]"
    assert runner._progress_text({"msg_type": "comm_msg", "content": {"data": {"state": {"value": 0.5}}}}) is None
    monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 0.2)
    with runner._Progress("03", runner._headings(nb)) as progress:
        progress.cell(3)
        progress.output("training:  40%|####  | 20/50\r")
        time.sleep(1.5)
    out = capsys.readouterr().out
    assert "[03 00:0" in out and "2. Training: training:  40%" in out


def test_runner_adds_up_the_seconds_of_each_section(monkeypatch):
    clock = iter([0.0, 2.0, 5.0, 9.0, 10.0])  # start, then one reading per cell start and one at the end
    monkeypatch.setattr(runner.time, "monotonic", lambda: next(clock))
    progress = runner._Progress("04", ["", "1. Data", "2. Training", "2. Training"])
    progress.cell(1)  # t = 2: the setup cells before it took 2 s
    progress.cell(2)  # t = 5
    progress.cell(3)  # t = 9
    progress.done.set()
    progress._close_section(next(clock))  # t = 10, as __exit__ does
    assert progress.seconds_per_section == {"kernel start": 2.0, "1. Data": 3.0, "2. Training": 5.0}


def test_runtimes_page_from_a_run_summary(tmp_path):
    summary = {"profile": "cpu", "python": "3.11", "machine": "x86_64", "hardware": "a 2-core CPU",
               "started": "2026-12-03 12:00:00",
               "notebooks": {"01_forward_process": {"seconds": 9.0, "seconds_per_section": {"setup": 3.0, "1. Real": 6.0},
                                                    "key_result": "key result: the same mean | and variance"},
                             "02_ddpm": {"seconds": 450.0, "seconds_per_section": {"6. Training": 360.0}}}}
    (tmp_path / "run.json").write_text(json.dumps(summary))
    assert cli.main(["runtimes", "--summary", str(tmp_path / "run.json"), "--out", str(tmp_path / "t.md")]) == 0
    page = (tmp_path / "t.md").read_text()
    assert "| 02_ddpm |  | 7.5 |  |" in page and "| all | | 7.7 | |" in page and "| 6. Training | 360 |" in page
    assert "| 01_forward_process |  | 0.1 | the same mean / and variance |" in page
    assert "a 2-core CPU" in page and "2026-12-03 12:00:00" in page
    (tmp_path / "empty.json").write_text(json.dumps({"profile": "cpu", "notebooks": {}}))
    assert cli.main(["runtimes", "--summary", str(tmp_path / "empty.json"), "--out", str(tmp_path / "e.md")]) == 2
    assert not (tmp_path / "e.md").exists()

"""`python -m course_utils bench` (issue: notebook 06): the benchmark on any MNIST folder, same numbers as the library."""

import json

import pytest

from course_utils import benchmark, classifier, cli, config, data


def bench(*extra):
    return ["bench", "--data-dir", str(config.data_dir()), "--profile", "ci", *extra]


def test_bench_says_which_models_are_missing_and_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    with pytest.raises(SystemExit) as stop:
        cli.main(bench("--methods", "zero_fill", "mmse", "--json", str(tmp_path / "b.json")))
    message = str(stop.value)
    assert message.startswith("error: missing trained models") and "train --model mmse --profile ci" in message
    assert not (tmp_path / "b.json").exists()


def test_bench_trains_what_is_missing_and_matches_the_library(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    out = tmp_path / "bench.json"
    argv = bench("--methods", "zero_fill", "bicubic", "mmse", "--tasks", "center:12", "lowres:4", "--n", "4",
                 "--k", "1", "--json", str(out), "--train-missing")
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mmse" in printed and "trained" in printed and "| method | `center:12` | `lowres:4` |" in printed
    res = json.loads(out.read_text())
    assert {"methods", "profile", "data_dir", "n", "k", "date", "hardware", "models"} <= set(res)
    assert (res["profile"], res["n"], res["k"], res["tasks"]) == ("ci", 4, 1, ["center:12", "lowres:4"])
    assert res["methods"]["mmse"]["lowres:4"] is None and res["methods"]["bicubic"]["center:12"] is None
    assert res["models"]["mmse"]["status"] == "trained" and res["method_info"]["mmse"]["family"] == "regressor"
    # the same run through the library (the notebook's path) gives the same numbers
    test = data.load_mnist("test")[:4]
    library = data.load_mnist("train").images
    methods, info = benchmark.prepare(["zero_fill", "bicubic", "mmse"], "ci", "cpu", library=library)
    assert info["mmse"]["status"] == "reused"
    clf, _ = classifier.course_classifier("ci")
    again = benchmark.run_benchmark(methods, test.images, test.labels, ["center:12", "lowres:4"], 1, 0, clf, library,
                                    progress=False)
    for name in ("zero_fill", "mmse"):
        assert again["methods"][name]["center:12"]["metrics"] == res["methods"][name]["center:12"]["metrics"]
    assert cli.main(argv[:-1]) == 0  # now without --train-missing: everything is there
    assert "reused" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--n", "1"], "at least 2 test digits"),
    (["--k", "0"], "k must be at least 1"),
    (["--tasks", "centre:12"], "task"),
    (["--methods", "zero_fill", "magic"], "unknown --methods magic"),
    (["--n", "999999"], "test digits in"),
])
def test_bench_rejects_bad_input_with_one_line(tmp_path, monkeypatch, extra, message):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    args = extra if "--methods" in extra else ["--methods", "zero_fill", *extra]
    with pytest.raises(SystemExit) as stop:
        cli.main(bench(*args, "--json", str(tmp_path / "b.json")))
    assert message in str(stop.value)


def test_bench_needs_mnist_where_it_is_told(tmp_path):
    with pytest.raises(SystemExit, match="no MNIST in"):
        cli.main(["bench", "--data-dir", str(tmp_path), "--profile", "ci", "--json", str(tmp_path / "b.json")])


def test_unreadable_mnist_files_are_one_line_not_a_crash(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_RAW_FILES:
        (raw / name).write_bytes(b"")  # present, but not IDX files
    for command in (["eval", "--method", "harmonic", "--task", "center:12"], ["bench", "--profile", "ci", "--json",
                                                                             str(tmp_path / "b.json")]):
        with pytest.raises(SystemExit, match=f"cannot read MNIST from {tmp_path}"):
            cli.main([*command, "--data-dir", str(tmp_path)])

"""The benchmark's core (issue: notebook 06): every method on the tasks it fits, empty cells elsewhere."""

import json

import pytest

from course_utils import benchmark, data, evaluation


@pytest.fixture(scope="module")
def digits():
    test = data.load_mnist("test")
    return test.images[:6], test.labels[:6]


def test_every_method_on_the_tasks_it_fits_and_none_elsewhere(digits):
    images, labels = digits
    methods = {name: evaluation.baseline_method(name) for name in ("zero_fill", "harmonic", "bicubic")}
    result = benchmark.run_benchmark(methods, images, labels, ["center:12", "lowres:4"], k=1, progress=False,
                                     profile="ci")
    assert result["tasks"] == ["center:12", "lowres:4"] and result["n"] == 6 and result["profile"] == "ci"
    assert result["methods"]["harmonic"]["lowres:4"] is None  # a mask-only method has no cell for a measurement
    assert result["methods"]["bicubic"]["center:12"] is None
    fill = result["methods"]["zero_fill"]["center:12"]
    # the same numbers as the harness run alone, on the same observations
    alone, _, _ = evaluation.evaluate(methods["zero_fill"], images, labels, "center:12", k=1, baselines=False,
                                      progress=False)
    assert fill["metrics"] == alone["metrics"]
    assert result["methods"]["harmonic"]["center:12"]["metrics"]["psnr"]["single"] > fill["metrics"]["psnr"]["single"]
    json.dumps(result)  # the whole result is JSON


def test_markdown_table_leaves_empty_cells(digits):
    images, labels = digits
    methods = {name: evaluation.baseline_method(name) for name in ("zero_fill", "bicubic")}
    result = benchmark.run_benchmark(methods, images, labels, ["center:12", "lowres:4"], k=1, progress=False)
    table = benchmark.markdown_table(result).splitlines()
    assert table[0] == "| method | `center:12` | `lowres:4` |"
    psnr = result["methods"]["zero_fill"]["center:12"]["metrics"]["psnr"]["single"]
    assert table[2] == f"| zero_fill | {psnr:.2f} |  |"
    assert table[3].startswith("| bicubic |  | ")
    with pytest.raises(ValueError, match="at least one method"):
        benchmark.run_benchmark({}, images, labels, ["center:12"])
    with pytest.raises(ValueError, match="task"):
        benchmark.run_benchmark(methods, images, labels, ["centre:12"])


def test_bench_config_per_profile_and_its_errors():
    from course_utils.config import get_profile
    assert benchmark.bench_config("ci") == benchmark.BENCH["ci"]
    command = benchmark.bench_config("cpu", command=True)  # the bench command scores at least 200 digits on a CPU
    assert command.n >= 200 and command.k > 1 and command.n > benchmark.bench_config("cpu").n
    assert benchmark.bench_config(get_profile("cpu"), n=10).n == 10
    with pytest.raises(ValueError, match="at least 2 test digits"):
        benchmark.bench_config("ci", n=1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        benchmark.bench_config("ci", k=0)


def test_every_method_is_described_once_with_a_known_model():
    for name, m in benchmark.METHODS.items():
        assert m.name == name and m.notebook in ("02", "03", "04", "05", "06") and m.description
        assert m.model is None or m.model in benchmark.MODELS
    # every family of notebook 06's table is there, and a method of no family, or a model-less diffusion row, is refused
    assert {m.family for m in benchmark.METHODS.values()} == {"classical", "regressor", "diffusion"}
    for family, model in (("neural", None), ("diffusion", None), ("classical", "mmse")):
        with pytest.raises(ValueError, match="classical method has no model"):
            benchmark.BenchMethod("x", family, "06", "x", model, lambda cfg, model, library: None)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        benchmark.build_method("nope")


def test_prepare_names_every_missing_model_and_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    with pytest.raises(benchmark.MissingModelsError) as missing:
        benchmark.prepare(["zero_fill", "mmse", "ddpm_02", "lora_attn_05"], "ci", "cpu")
    text = str(missing.value)
    assert "--train-missing" in text and "ddpm (02_ddpm" in text
    for kind, folder in (("ddpm", "02_ddpm"), ("mmse", "06_mmse"), ("finetune", "05_finetune")):
        assert f"python -m course_utils train --model {kind} --profile ci --out {tmp_path / folder}" in text
    assert "finetune_lora_attn" in text and "--lora-rank 4" in text
    assert "finetune_full" not in text and "center_hole" not in text  # only what the methods asked for need
    with pytest.raises(ValueError, match="unknown method"):
        benchmark.prepare(["zero_fill", "nope"], "ci", "cpu")


def test_prepare_trains_notebook_02s_model_where_notebook_02_looks_then_reuses_it(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    from course_utils import checkpoints, config, ddpm
    methods, info = benchmark.prepare(["ddpm_02", "mmse"], "ci", "cpu", train_missing=True, log=lambda s: None)
    assert {k: v["status"] for k, v in info.items()} == {"ddpm": "trained", "mmse": "trained"}
    profile = config.get_profile("ci")
    cfg = ddpm.KIND.config(profile)  # notebook 02's run, as the ddpm kind
    path = ddpm.KIND.run_dir(cfg) / "last.pt"
    assert info["ddpm"]["checkpoint"] == str(path)
    payload = checkpoints.read_checkpoint(path)
    assert payload["kind"] == "ddpm" and payload["config"]["steps"] == profile.train_steps
    assert payload["extra"]["seconds"] > 0
    again, info2 = benchmark.prepare(["ddpm_02", "mmse"], "ci", "cpu", log=lambda s: None)
    assert {v["status"] for v in info2.values()} == {"reused"}
    images, labels = digits
    summary, _, _ = evaluation.evaluate(again["ddpm_02"], images, labels, "center:12", k=1, baselines=False,
                                        progress=False)
    assert summary["method"] == "ddpm_02" and summary["known_pixels_max_abs_error"] == 0.0  # replacement keeps them
    assert summary["network_calls_per_image"] == profile.sample_steps
    assert summary["config"]["method"]["replacement"] is True


def test_notebook_05_methods_use_notebook_05_settings():
    from course_utils import inpainting, prior
    cfg = prior.PRIOR_KIND.config("cpu")
    net = prior.build_prior(prior.PRIOR_KIND.config("ci"))
    repaint = benchmark.build_method("repaint_05", cfg, net).config
    assert {k: repaint[k] for k in ("steps", "jump_length", "jump_n_sample")} == \
        inpainting.SAMPLERS["repaint"].defaults(cfg.sample_steps)  # the registry's, which notebook 05 asserts
    ddnm = benchmark.build_method("ddnm_05", cfg, net).config
    assert {k: ddnm[k] for k in ("steps", "eta", "repeats")} == inpainting.SAMPLERS["ddnm"].defaults(cfg.sample_steps)
    # DDNM's budget: a tenth of RePaint's network calls, on DDNM_LEVELS levels
    rp_calls = inpainting.walk_calls(inpainting.repaint_walk(cfg.sample_steps, repaint["jump_length"],
                                                             repaint["jump_n_sample"]))
    assert ddnm["steps"] == inpainting.DDNM_LEVELS and ddnm["steps"] * ddnm["repeats"] <= rp_calls // 10
    assert ddnm["steps"] * (ddnm["repeats"] + 1) > rp_calls // 10  # no repeat of the budget left unspent


def test_task_table_lists_the_methods_that_fit(digits):
    images, labels = digits
    methods = {name: evaluation.baseline_method(name) for name in ("zero_fill", "bicubic")}
    result = benchmark.run_benchmark(methods, images, labels, ["center:12"], k=1, progress=False)
    table = benchmark.task_table(result, "center:12").splitlines()
    assert len(table) == 3 and table[2].startswith("| zero_fill | ") and table[2].endswith("| 0 |")
    assert "(K=1)" in table[2]


def test_the_results_page_shows_a_later_bench_of_some_methods_beside_the_full_one(digits, tmp_path):
    from course_utils import reports

    images, labels = digits
    full = benchmark.run_benchmark({name: evaluation.baseline_method(name) for name in ("zero_fill", "bicubic")},
                                   images, labels, ["center:12", "lowres:4"], k=1, progress=False)
    later = benchmark.run_benchmark({"harmonic": evaluation.baseline_method("harmonic")}, images, labels,
                                    ["rect"], k=1, progress=False)
    (tmp_path / "bench_cpu.json").write_text(json.dumps(full))
    (tmp_path / "bench_cpu_harmonic.json").write_text(json.dumps(later))
    page = reports.results_page(tmp_path, "cpu")
    assert "## The `bench` command, on more digits" in page and "## `bench` again: `bench_cpu_harmonic.json`" in page
    psnr = later["methods"]["harmonic"]["rect"]["metrics"]["psnr"]["single"]
    section = page[page.index("## `bench` again"):]
    assert f"| harmonic | {psnr:.2f} |" in section and "zero_fill" not in section
    assert "`center:12`, every method" not in section  # the later run has no centre hole

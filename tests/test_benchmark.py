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
    assert result["tasks"] == ["center:12", "lowres:4"] and result["n_images"] == 6 and result["profile"] == "ci"
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

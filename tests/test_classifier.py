"""The course classifier: the network, its training and cache, class preservation and the Frechet distance."""

import math
import os

import pytest
import torch

from course_utils import checkpoints, classifier, data, tasks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The ci classifier, trained once into a throw-away outputs folder."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COURSE_OUTPUT_DIR", str(tmp_path_factory.mktemp("outputs")))
        yield classifier.course_classifier("ci", progress=False)


def test_shapes_at_several_batch_sizes():
    torch.manual_seed(0)
    net = classifier.build_classifier(classifier.KIND.config("cpu")).eval()
    for n in (1, 5):
        x = torch.rand(n, 1, 32, 32) * 2 - 1
        assert net(x).shape == (n, 10) and net.features(x).shape == (n, 128)
    assert classifier.predict(net, torch.zeros(3, 1, 32, 32)).shape == (3,)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        classifier.predict(net, torch.full((2, 1, 32, 32), 3.0))
    with pytest.raises(ValueError, match="labels"):
        classifier.accuracy(net, torch.zeros(3, 1, 32, 32), torch.zeros(2, dtype=torch.long))


def test_random_shift_translates_with_background():
    x = torch.full((1, 1, 32, 32), -1.0)
    x[0, 0, 10:14, 10:14] = 1.0
    g = torch.Generator().manual_seed(0)
    shifted = torch.cat([classifier.random_shift(x, 2, g) for _ in range(20)])
    assert torch.all(shifted.eq(1.0).sum((1, 2, 3)) == 16)  # the square is moved whole, never cut or duplicated
    offsets = {tuple((s[0] == 1).nonzero()[0].tolist()) for s in shifted}
    assert len(offsets) > 3 and all(8 <= r <= 12 and 8 <= c <= 12 for r, c in offsets)
    assert torch.equal(classifier.random_shift(x, 0, g), x)


def test_trains_above_chance_and_is_reused_not_retrained(trained):
    model, info = trained
    assert info["status"] == "trained" and info["val_accuracy"] > 0.4  # ci: 30 steps on 512 digits
    test = data.load_mnist("test")[:300]
    assert classifier.accuracy(model, test.images, test.labels) > 0.4
    again, info2 = classifier.course_classifier("ci", progress=False)
    assert info2["status"] == "reused" and info2["path"] == info["path"]
    assert info2["val_accuracy"] == info["val_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert checkpoints.read_checkpoint(info["path"])["kind"] == "classifier"


def test_the_loss_is_cross_entropy_on_shifted_batches_drawn_from_the_generator():
    digits = data.DigitSet(torch.rand(20, 1, 32, 32) * 2 - 1, torch.arange(20) % 10)
    cfg = classifier.KIND.config("ci", batch_size=5)
    net = classifier.build_classifier(cfg).eval()
    loss = classifier.batch_loss(cfg, digits, torch.device("cpu"))
    value = loss(net, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # the same draws by hand: one epoch's permutation, then the shifts
    idx = torch.randperm(20, generator=g)[:5]
    shifted = classifier.random_shift(digits.images[idx], cfg.shift, g)
    expected = torch.nn.functional.cross_entropy(net(shifted), digits.labels[idx])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_another_config_never_overwrites_a_cached_classifier(trained, tmp_path, monkeypatch):
    _, info = trained
    before = open(info["path"], "rb").read()
    monkeypatch.setitem(classifier.CLASSIFIERS, "ci", classifier.KIND.config("ci", steps=2, save_every=2))
    _, other = classifier.course_classifier("ci", progress=False)
    assert other["status"] == "trained" and other["path"] != info["path"]
    assert open(info["path"], "rb").read() == before


def test_frechet_of_gaussians_has_the_closed_form():
    d = 4
    mu1, mu2 = torch.zeros(d), torch.tensor([1.0, 2.0, 0.0, -1.0])
    eye = torch.eye(d)
    assert classifier.frechet_distance_from_stats(mu1, eye, mu2, eye) == pytest.approx(6.0)
    s1, s2 = torch.tensor([1.0, 4.0, 9.0, 0.25]), torch.tensor([4.0, 1.0, 9.0, 1.0])
    expected = ((s1.sqrt() - s2.sqrt()) ** 2).sum().item()  # diagonal covariances
    assert classifier.frechet_distance_from_stats(mu1, torch.diag(s1), mu1, torch.diag(s2)) == pytest.approx(expected)


def test_frechet_agrees_with_scipys_matrix_square_root():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    c1, c2 = a @ a.T + 0.1 * torch.eye(6), b @ b.T + 0.1 * torch.eye(6)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    root = linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    reference = ((mu1 - mu2) ** 2).sum().item() + (c1 + c2).trace().item() - 2 * root.trace()
    assert classifier.frechet_distance_from_stats(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-6)


def test_frechet_is_about_zero_between_halves_and_rises_with_noise_or_blur(trained):
    model, _ = trained
    test = data.load_mnist("test").images[:1000]
    first, second = test[:500], test[500:]
    f1 = classifier.features(model, first)
    assert classifier.frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-6)
    halves = classifier.frechet_distance(f1, classifier.features(model, second))
    for family, levels in (("noise", (0.5, 0.8, 1.2)), ("blur", (1.0, 1.5, 2.5))):
        distances = []
        for level in levels:
            degraded = tasks.parse_task(f"{family}:{level}").observe(second, 0).y.clamp(-1, 1)
            distances.append(classifier.frechet_distance(f1, classifier.features(model, degraded)))
        assert halves < 0.5 * distances[0], (family, halves, distances)
        assert distances == sorted(distances), (family, distances)
    with pytest.raises(ValueError, match="feature sets"):
        classifier.frechet_distance(f1, f1[:, :3])
    assert math.isfinite(halves)


def test_train_command_makes_a_classifier_that_eval_and_sample_refuse_in_one_line(tmp_path, capsys):
    from course_utils import cli
    out = tmp_path / "clf"
    assert cli.main(["train", "--model", "classifier", "--profile", "ci", "--out", str(out), "--steps", "4"]) == 0
    assert "% classified right" in capsys.readouterr().out
    cfg, model, extra = classifier.KIND.load(out / "last.pt")
    assert cfg.steps == 4 and extra["step"] == 4 and isinstance(model, classifier.DigitClassifier)
    for argv in (["sample", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "x.png")],
                 ["eval", "--checkpoint", str(out / "last.pt"), "--task", "center:12", "--data-dir",
                  os.environ["COURSE_DATA_DIR"]]):
        with pytest.raises(SystemExit, match="reconstructs nothing"):
            cli.main(argv)


def test_a_classifier_trained_on_other_digits_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setitem(classifier.CLASSIFIERS, "ci", classifier.KIND.config("ci", steps=2, save_every=2))
    _, first = classifier.course_classifier("ci", progress=False)
    assert first["note"] is None
    monkeypatch.setattr(classifier, "fingerprint", lambda digits: "another MNIST")  # as if --data-dir changed
    _, again = classifier.course_classifier("ci", progress=False)
    assert again["status"] == "reused" and "other digits" in again["note"]

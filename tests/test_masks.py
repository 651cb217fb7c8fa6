import pytest
import torch

from course_utils import masks


def assert_binary(m, n, size=32):
    assert m.shape == (n, 1, size, size) and m.dtype == torch.float32
    assert torch.all((m == 0) | (m == 1))


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_every_kind_is_binary_batched_and_seeded(kind):
    a = masks.make_masks(kind, 16, seed=7)
    b = masks.make_masks(kind, 16, seed=7)
    assert_binary(a, 16)
    assert torch.equal(a, b)
    assert torch.all(masks.missing_fraction(a) > 0)  # every mask hides something
    if kind != "center":
        assert not torch.equal(a, masks.make_masks(kind, 16, seed=8))
        assert len({m.numpy().tobytes() for m in a}) > 1  # masks differ within a batch


def test_center_hole_geometry():
    m = masks.center_hole(2, hole=12)
    assert_binary(m, 2)
    assert (m == 0).sum().item() == 2 * 144
    assert torch.all(m[:, :, 10:22, 10:22] == 0) and m[0, 0, 9, 16] == 1 and m[0, 0, 22, 16] == 1
    assert masks.missing_fraction(m)[0].item() == pytest.approx(144 / 1024)
    with pytest.raises(ValueError):
        masks.center_hole(1, hole=40)


def test_rectangles_within_size_range():
    m = masks.random_rectangles(200, count=(1, 1), side=(6, 14), seed=0)
    holes = (m == 0).flatten(1).sum(1)
    assert holes.min() >= 36 and holes.max() <= 196
    with pytest.raises(ValueError):
        masks.random_rectangles(2, side=(10, 5))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_sparse_keeps_its_share_of_the_pixels(keep):
    # 256 masks x 1024 pixels: the mean's standard deviation is below 0.001, so 0.005 is a safe tolerance.
    frac = masks.missing_fraction(masks.sparse_pixels(256, keep, seed=1))
    assert (1 - frac.mean().item()) == pytest.approx(keep, abs=0.005)


def test_sparse_accepts_one_share_per_mask():
    m = masks.sparse_pixels(2, torch.tensor([0.0, 1.0]), seed=0)
    assert masks.missing_fraction(m).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="known pixels"):
        masks.sparse_pixels(2, 1.5)


def test_make_masks_takes_the_task_number():
    """The same name and number as the mask tasks: center's side, sparse's share kept, procedural's share missing."""
    assert torch.equal(masks.make_masks("center", 2, 8), masks.center_hole(2, 8))
    assert torch.equal(masks.make_masks("sparse", 3, 0.2, seed=4), masks.sparse_pixels(3, 0.2, seed=4))
    assert torch.equal(masks.make_masks("procedural", 3, 0.4, seed=4), masks.procedural_masks(3, 0.4, seed=4))
    with pytest.raises(ValueError, match="take no value"):
        masks.make_masks("rect", 2, 0.5)


def test_strokes_are_thick_lines_not_speckle():
    m = masks.brush_strokes(64, seed=3)
    frac = masks.missing_fraction(m)
    assert 0.0 < frac.mean() < 0.5
    # every missing pixel of a stroke has a missing 4-neighbour (the pixel itself not counted): connected shapes
    assert _share_with_missing_neighbour(m) > 0.99
    # the check can fail: scattered dropout of the same density is mostly isolated pixels
    speckle = masks.sparse_pixels(64, 1 - float(frac.mean()), seed=3)
    assert _share_with_missing_neighbour(speckle) < 0.6


def _share_with_missing_neighbour(m):
    """Share of missing pixels with at least one missing 4-neighbour (a cross kernel without its centre)."""
    hole = 1 - m
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    neighbours = torch.nn.functional.conv2d(hole, cross, padding=1)
    return ((neighbours > 0) * hole).sum().item() / hole.sum().item()


@pytest.mark.parametrize("target", [0.05, 0.1, 0.25, 0.4, 0.6])
def test_procedural_hits_target_fraction(target):
    m = masks.procedural_masks(64, target, seed=11)
    assert_binary(m, 64)
    err = (masks.missing_fraction(m) - target).abs().max().item()
    assert err <= masks.PROCEDURAL_TOLERANCE


def test_procedural_per_mask_targets_and_range_errors():
    targets = torch.linspace(0.05, 0.6, 12)
    m = masks.procedural_masks(12, targets, seed=0)
    assert torch.allclose(masks.missing_fraction(m), targets, atol=masks.PROCEDURAL_TOLERANCE)
    with pytest.raises(ValueError, match=r"\[0.05, 0.60\]"):
        masks.procedural_masks(4, 0.8)
    with pytest.raises(ValueError):
        masks.procedural_masks(4, torch.tensor([0.1, 0.2]))


def test_mixed_masks_uses_every_kind():
    m = masks.mixed_masks(400, seed=0)
    assert_binary(m, 400)
    center = masks.center_hole(1)[0]
    assert any(torch.equal(x, center) for x in m)
    assert torch.equal(m, masks.mixed_masks(400, seed=0))
    with pytest.raises(ValueError, match="unknown mask kinds"):
        masks.mixed_masks(4, kinds=("circle",))


def test_check_mask_errors():
    x = torch.zeros(2, 1, 32, 32)
    masks.check_mask(torch.ones(2, 1, 32, 32), like=x)
    with pytest.raises(ValueError, match="image's shape"):
        masks.check_mask(torch.ones(2, 1, 28, 28), like=x)
    with pytest.raises(ValueError, match="only 0 .missing. and 1 .known."):
        masks.check_mask(torch.full((2, 1, 32, 32), 0.5), like=x)
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        masks.check_mask(torch.ones(32, 32))


def test_observe_keeps_known_and_zeroes_missing():
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    m = masks.make_masks("rect", 4, seed=0)
    y = masks.observe(x, m)
    assert torch.equal(y[m == 1], x[m == 1]) and torch.all(y[m == 0] == 0)
    with pytest.raises(ValueError):
        masks.observe(x, m[:, :, :16])


def test_make_masks_unknown_kind():
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.make_masks("circle", 2)

import pytest
import torch

from course_utils import models


def test_sinusoidal_embedding_values():
    t = torch.tensor([0, 1, 500])
    e = models.sinusoidal_embedding(t, 16)
    assert e.shape == (3, 16)
    assert torch.allclose(e[0, :8], torch.zeros(8)) and torch.allclose(e[0, 8:], torch.ones(8))
    assert e[1, 0].item() == pytest.approx(torch.sin(torch.tensor(1.0)).item())  # w_0 = 1
    assert torch.allclose(e.pow(2)[:, :8] + e.pow(2)[:, 8:], torch.ones(3, 8), atol=1e-6)  # sin^2 + cos^2
    with pytest.raises(ValueError):
        models.sinusoidal_embedding(t, 7)


@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 2)])
def test_unet_shapes_and_conditioning(mults):
    torch.manual_seed(0)
    net = models.UNet(base_channels=8, channel_mults=mults)
    x = torch.randn(2, 1, 32, 32)
    m = torch.ones_like(x)
    out = net(x, torch.tensor([0, 999]), m, m * x)
    assert out.shape == x.shape
    # the output depends on t and on the conditioning
    assert not torch.allclose(out, net(x, torch.tensor([500, 500]), m, m * x))
    assert not torch.allclose(out, net(x, torch.tensor([0, 999]), torch.zeros_like(m), torch.zeros_like(x)))
    with pytest.raises(ValueError, match="conditional"):
        net(x, torch.tensor([0, 1]))


def test_unconditional_unet_and_parameter_count():
    net = models.UNet(base_channels=8, channel_mults=(1, 2), cond_channels=0)
    assert net(torch.zeros(1, 1, 16, 16), torch.tensor([3])).shape == (1, 1, 16, 16)
    assert net.config["cond_channels"] == 0
    # the stem is a 3x3 convolution from 1 channel to 8 (72 weights and 8 biases) ...
    assert models.count_parameters(net.stem) == 3 * 3 * 1 * 8 + 8
    # ... and frozen weights are not counted: the count is what training updates
    total = models.count_parameters(net)
    net.stem.requires_grad_(False)
    assert models.count_parameters(net) == total - 80


def test_unet_is_deterministic_and_checks_size():
    torch.manual_seed(1)
    a = models.UNet(8, (1, 2, 2))
    torch.manual_seed(1)
    b = models.UNet(8, (1, 2, 2))
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(a(x, torch.tensor([5]), x, x), b(x, torch.tensor([5]), x, x))
    with pytest.raises(ValueError, match="divisible"):
        a(torch.zeros(1, 1, 30, 30), torch.tensor([0]), torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError):
        models.UNet(0)


def test_group_norm_takes_up_to_eight_groups():
    assert [models.group_norm(c).num_groups for c in (8, 12, 24, 6, 16, 3)] == [8, 4, 8, 2, 8, 1]
    x = torch.randn(2, 12, 4, 4) * 5 + 3
    out = models.group_norm(12)(x).view(2, 4, -1)  # 4 groups of 3 channels: each standardised
    assert torch.allclose(out.mean(-1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 4), atol=1e-3)


def test_coord_channels():
    c = models.coord_channels(2, 5)
    assert c.shape == (2, 2, 5, 5)
    assert torch.equal(c[0, 0, 0], torch.linspace(-1, 1, 5))  # x varies along a row
    assert torch.equal(c[0, 1, :, 0], torch.linspace(-1, 1, 5))  # y along a column


def test_self_conditioning_and_coord_conv_add_input_channels():
    plain = models.UNet(8, (1, 2))
    both = models.UNet(8, (1, 2), self_condition=True, coord_conv=True)
    assert plain.stem.in_channels == 3 and both.stem.in_channels == 6
    x = torch.zeros(2, 1, 32, 32)
    t = torch.zeros(2, dtype=torch.long)
    assert both(x, t, x, x).shape == x.shape  # x0_prev defaults to zeros
    assert torch.equal(both(x, t, x, x), both(x, t, x, x, torch.zeros_like(x)))
    with pytest.raises(ValueError, match="self_condition"):
        plain(x, t, x, x, x)

import shutil

import pytest
import torch
from torchvision import datasets

from course_utils import config, data

HAVE_MNIST = (config.data_dir() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="MNIST files not available (set COURSE_DATA_DIR)")


def test_prepare_digits_pads_and_scales():
    raw = torch.zeros(2, 28, 28, dtype=torch.uint8)
    raw[:, 0, 0] = 255
    raw[:, 27, 27] = 128
    x = data.prepare_digits(raw)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert x[0, 0, 2, 2] == 1.0  # (0, 0) moved by the 2-pixel padding
    assert torch.isclose(x[0, 0, 29, 29], torch.tensor(128 / 255 * 2 - 1), atol=1e-6)
    assert torch.all(x[:, :, :2] == -1) and torch.all(x[:, :, :, 30:] == -1)  # padding is background
    with pytest.raises(ValueError):
        data.prepare_digits(torch.zeros(2, 28, 28))


def test_range_maps_are_inverse():
    u = torch.rand(3, 1, 4, 4)
    assert torch.allclose(data.to_unit_range(data.to_model_range(u)), u)


def test_check_images_rejects_bad_input():
    data.check_images(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        data.check_images(torch.full((1, 1, 4, 4), 255.0))
    with pytest.raises(ValueError, match="N x C x H x W"):
        data.check_images(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="float"):
        data.check_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError):
        data.check_images([[0.0]])


@needs_mnist
def test_load_mnist_offline_pack():
    train = data.load_mnist("train")
    test = data.load_mnist("test")
    assert train.images.shape[1:] == (1, 32, 32) and len(train) == len(train.labels)
    assert train.images.min() == -1 and train.images.max() == 1
    assert set(train.labels.unique().tolist()) == set(range(10))
    assert len(test) >= 1000


@needs_mnist
def test_splits_are_seeded_disjoint_and_sized():
    p = config.get_profile("ci")
    tr, va, te = data.load_splits(p, seed=3)
    tr2, va2, _ = data.load_splits(p, seed=3)
    assert torch.equal(va.images, va2.images) and torch.equal(tr.labels, tr2.labels)
    assert len(va) == p.val_size and len(tr) == p.train_size and len(te) == p.eval_size
    full = config.get_profile("full")
    tr_f, va_f, _ = data.load_splits(full, seed=3)
    n_all = len(data.load_mnist("train"))
    assert len(va_f) == min(full.val_size, n_all // 10) and len(tr_f) == min(full.train_size, n_all - len(va_f))
    # validation never overlaps training: compare image hashes
    key = lambda d: {hash(x.numpy().tobytes()) for x in d.images}
    assert not key(tr) & key(va)
    _, va3, _ = data.load_splits(p, seed=4)
    assert not torch.equal(va.images, va3.images)


def test_split_and_subset_errors():
    d = data.DigitSet(torch.zeros(10, 1, 32, 32), torch.arange(10))
    tr, va = data.train_val_split(d, 3, seed=0)
    assert len(tr) == 7 and len(va) == 3
    assert sorted(tr.labels.tolist() + va.labels.tolist()) == list(range(10))
    with pytest.raises(ValueError):
        data.train_val_split(d, 10)
    assert len(data.take_subset(d, 100)) == 10
    with pytest.raises(ValueError):
        data.take_subset(d, 0)


def test_batches_cycle_through_epochs():
    d = data.DigitSet(torch.zeros(10, 1, 32, 32), torch.arange(10))
    it = data.batches(d, 4, torch.Generator().manual_seed(0))
    seen = [next(it)[1] for _ in range(4)]
    assert all(len(b) == 4 for b in seen)
    assert len(set(torch.cat(seen[:2]).tolist())) == 8  # one epoch has no repeats


def test_missing_mnist_offline_names_folder_and_files(tmp_path, monkeypatch):
    # Simulate a machine without network: torchvision's download fails.
    def no_network(self, *a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error Name or service not known>")

    monkeypatch.setattr(datasets.MNIST, "download", no_network)
    with pytest.raises(data.MNISTNotFoundError) as err:
        data.load_mnist("train", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in data.MNIST_RAW_FILES:
        assert name in message
    assert "COURSE_DATA_DIR" in message
    with pytest.raises(data.MNISTNotFoundError):
        data.load_mnist("test", root=tmp_path, download=False)
    with pytest.raises(ValueError):
        data.load_mnist("validation", root=tmp_path)


@needs_mnist
def test_files_copied_into_a_fresh_folder_are_found(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_RAW_FILES:
        shutil.copy(config.data_dir() / "MNIST" / "raw" / name, raw / name)
    assert len(data.load_mnist("test", root=tmp_path, download=False)) > 0

import dataclasses
import random

import numpy as np
import pytest
import torch

from course_utils import config


def test_profiles_are_frozen_and_named():
    for name in config.PROFILE_NAMES:
        p = config.get_profile(name)
        assert p.name == name
        assert 1 <= p.sample_steps <= p.T
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.train_steps = 1  # frozen


def test_profiles_grow_from_ci_to_full():
    ci, cpu, full = (config.get_profile(n) for n in ("ci", "cpu", "full"))
    assert ci.train_steps < cpu.train_steps < full.train_steps
    assert ci.base_channels <= cpu.base_channels <= full.base_channels


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "CPU ")
    assert config.get_profile().name == "cpu"
    monkeypatch.delenv("COURSE_PROFILE")
    assert config.get_profile().name == config.default_profile_name()


def test_default_profile_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.default_profile_name() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.default_profile_name() == "full"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="must be one of ci, cpu, full"):
        config.get_profile("gpu")
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="'fast'"):
        config.get_profile()


def test_profile_table_lists_every_field():
    profile = config.get_profile("ci")
    lines = config.profile_table(profile).splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [f.name for f in dataclasses.fields(profile)]
    assert all(line.split(" : ", 1)[1] == str(getattr(profile, f.name))
               for line, f in zip(lines, dataclasses.fields(profile)))


def test_device_choice(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_device().type in ("cpu", "mps")
    assert config.get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        config.get_device("cuda")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")


def test_gpu_choice_caps_cpu_threads(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(max(before, config.GPU_HOST_THREADS + 1))
        assert config.get_device().type == "cuda"
        assert torch.get_num_threads() == config.GPU_HOST_THREADS
    finally:
        torch.set_num_threads(before)


def test_seed_everything_is_deterministic():
    config.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    config.seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    with pytest.raises(ValueError):
        config.seed_everything(-1)


def test_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "d"))
    assert config.data_dir() == tmp_path / "d"
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "o"))
    assert config.output_dir("figures") == tmp_path / "o" / "figures"
    assert (tmp_path / "o" / "figures").is_dir()
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert config.data_dir() == config.repo_root() / "data"


import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.train.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    load_encoder_state,
    rng_state,
    save_checkpoint,
    save_encoder,
    set_rng_state,
)


def test_atomic_write_keeps_the_previous_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="previous file, if any, is intact"):
        atomic_write(path, broken)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_rng_state_round_trip_restores_every_generator(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state(gen)})
    expected = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    gen.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], gen)
    got = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    assert got == expected


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_pickle_is_refused_and_does_not_execute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"step": _Exploit()}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="without --resume"):
        load_checkpoint(tmp_path / "nope.pt")


def test_encoder_export_round_trip_without_pickle(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    save_encoder(tmp_path, net, {"feature_dim": 4})
    state, meta = load_encoder_state(tmp_path)
    assert meta == {"feature_dim": 4}
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    with pytest.raises(CheckpointError, match="no exported encoder"):
        load_encoder_state(tmp_path / "empty")

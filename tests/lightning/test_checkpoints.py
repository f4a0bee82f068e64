"""Checkpoints loaded without running their code, and the one builder of the ``t1c_export`` facts."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from t1c.lightning.checkpoints import (
    METADATA_KEY,
    checkpoint_step,
    checkpoint_weights,
    export_metadata,
    load_checkpoint,
)


class _Payload:
    """An object whose unpickling would run code."""

    ran = False

    def __reduce__(self):
        return (_Payload.run, ())

    @staticmethod
    def run():
        _Payload.ran = True
        return "ran"


def test_load_checkpoint_allows_paths_and_refuses_code(tmp_path):
    path = tmp_path / "a.ckpt"
    torch.save({"global_step": 3, "hparams": {"path": Path("data.pt")}, "w": torch.ones(2)}, path)
    loaded = load_checkpoint(path)
    assert loaded["hparams"]["path"] == Path("data.pt") and torch.equal(loaded["w"], torch.ones(2))
    assert load_checkpoint(io.BytesIO(path.read_bytes()))["global_step"] == 3
    assert load_checkpoint(path, mmap=True)["global_step"] == 3
    torch.save({"payload": _Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not _Payload.ran


def test_checkpoint_step_and_weights(tmp_path):
    path = tmp_path / "a.ckpt"
    torch.save({"global_step": 7, "epoch": 1, "state_dict": {"w": torch.zeros(2)}}, path)
    assert checkpoint_step(str(path)) == 7
    state, step, epoch = checkpoint_weights(str(path))
    assert (list(state), step, epoch) == (["w"], 7, 1)
    assert checkpoint_step(str(tmp_path / "gone.ckpt")) is None
    assert checkpoint_weights(str(tmp_path / "gone.ckpt")) == "are gone (the file does not exist)"
    torch.save({"global_step": True}, tmp_path / "bool.ckpt")
    assert checkpoint_step(str(tmp_path / "bool.ckpt")) is None  # a bool is no step
    assert checkpoint_weights(str(tmp_path / "bool.ckpt")).startswith("are not in it")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert checkpoint_step(str(tmp_path / "junk.ckpt")) is None
    assert checkpoint_weights(str(tmp_path / "junk.ckpt")).startswith("cannot be loaded with torch.load")
    torch.save({"payload": _Payload()}, tmp_path / "evil.ckpt")
    assert checkpoint_step(str(tmp_path / "evil.ckpt")) is None and not _Payload.ran


def test_export_metadata_claims_only_what_was_given_in_the_written_order():
    assert METADATA_KEY == "t1c_export"
    live = export_metadata(
        epoch=3,
        global_step=120,
        metrics={"val/acc": 0.5},
        source_hash="ab",
        weights="live model at the checkpoint's save",
        integer_weights=False,
        weight_bits=8,
        accumulator_bits=32,
    )
    assert list(live) == [
        "epoch",
        "global_step",
        "metrics",
        "source_hash",
        "weights",
        "integer_weights",
        "weight_bits",
        "accumulator_bits",
    ]
    assert live["metrics"] == {"val": {"acc": 0.5}} and live["integer_weights"] is False
    cli = export_metadata(
        exported_by="t1c export", checkpoint="a.ckpt", epoch=0, global_step=2, source_hash="ab"
    )
    assert cli == {
        "exported_by": "t1c export",
        "checkpoint": "a.ckpt",
        "epoch": 0,
        "global_step": 2,
        "source_hash": "ab",
    }

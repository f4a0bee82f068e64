"""T1CExport's pure helpers and decisions, without a Trainer (mocked where one is needed)."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from t1c.lightning.callback import T1CExport, T1CExportError, quant_metrics
from t1c.lightning.naming import (
    atomic_copy,
    atomic_symlink,
    checkpoint_stem,
    export_path_for,
    flatten_metrics,
    format_name,
    nest_metrics,
    read_manifest,
    sanitize_stem,
    scalar_metrics,
    write_manifest,
)


# -- names -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "template, metrics",
    [
        ("{epoch}-{step}", {"epoch": torch.tensor(3), "step": torch.tensor(120)}),
        ("{epoch:03d}", {"epoch": torch.tensor(5)}),
        ("{epoch}-{val_loss:.2f}", {"epoch": torch.tensor(2), "val_loss": torch.tensor(0.123456)}),
        ("{epoch}-{val/acc:.3f}", {"epoch": torch.tensor(1), "val/acc": torch.tensor(0.5)}),
        ("{missing:d}", {}),
        ("model-{epoch_test}-{epoch}", {"epoch": torch.tensor(1), "epoch_test": torch.tensor(7)}),
    ],
)
@pytest.mark.parametrize("auto_insert", [True, False])
def test_format_name_matches_model_checkpoint(template, metrics, auto_insert):
    mc = ModelCheckpoint(filename=template, auto_insert_metric_name=auto_insert)
    expected = mc.format_checkpoint_name(dict(metrics))[: -len(".ckpt")]
    assert format_name(template, metrics, auto_insert) == expected


def test_format_name_bad_spec_names_the_field():
    with pytest.raises(ValueError, match="'epoch'.*epoch:q"):
        format_name("{epoch:q}", {"epoch": 1})


def test_sanitize_stem_never_makes_folders():
    assert sanitize_stem("epoch=1-val/acc=0.50") == "epoch=1-val_acc=0.50"
    assert sanitize_stem("a\\b c") == "a_b_c"
    assert sanitize_stem("../x") == "_x"
    assert "/" not in sanitize_stem("//") and sanitize_stem("//") == "__"
    with pytest.raises(ValueError, match="no usable"):
        sanitize_stem("...")


def test_checkpoint_stem_and_export_path(tmp_path):
    root = tmp_path / "ckpts"
    assert checkpoint_stem(root / "epoch=1-val" / "acc=0.50.ckpt", root) == "epoch=1-val_acc=0.50"
    assert checkpoint_stem(root / "last.ckpt", root) == "last"
    assert checkpoint_stem("/elsewhere/x.ckpt", root) == "x"
    assert export_path_for(root / "epoch=3-step=120.ckpt", root) == str(root / "epoch=3-step=120.t1c")
    assert export_path_for(root / "a/b.ckpt", root, tmp_path / "out") == str(tmp_path / "out" / "a_b.t1c")


# -- metrics -----------------------------------------------------------------------------
def test_scalar_metrics_keeps_numbers_only():
    out = scalar_metrics({"b": torch.tensor(2.5), "a": 1, "v": torch.ones(3), "s": "x", "flag": True})
    assert out == {"a": 1.0, "b": 2.5}
    assert list(out) == ["a", "b"]


def test_nest_and_flatten_round_trip_with_collisions():
    flat = {"loss": 1.0, "loss/train": 2.0, "val/acc": 0.5, "t1c/float_acc": 0.9, "x": 3.0}
    nested = nest_metrics(flat)
    assert all("/" not in k for k in nested)
    assert nested["loss"] == {"_value": 1.0, "train": 2.0}
    assert flatten_metrics(nested) == flat
    assert flatten_metrics(nest_metrics({"a/b": 1.0, "a": 2.0})) == {"a/b": 1.0, "a": 2.0}


def test_quant_metrics():
    m = quant_metrics(90, 85, 99, 100)
    assert m == {
        "t1c/float_acc": 0.9,
        "t1c/quant_acc": 0.85,
        "t1c/quant_gap": pytest.approx(0.05),
        "t1c/export_agreement": 0.99,
        "t1c/num_samples": 100.0,
    }
    assert quant_metrics(0, 0, 0, 0) == {}


# -- manifest and files ------------------------------------------------------------------
def test_manifest_round_trip_is_atomic_strict_json(tmp_path):
    path = tmp_path / "t1c_exports.json"
    assert read_manifest(path) == {"version": 1, "exports": {}}
    manifest = {"version": 1, "exports": {"a.t1c": {"metrics": {"x": float("nan"), "y": 1.0}}}}
    write_manifest(path, manifest)
    data = json.loads(path.read_text())  # strict JSON (no NaN token)
    assert data["exports"]["a.t1c"]["metrics"] == {"x": "nan", "y": 1.0}
    assert read_manifest(path)["exports"]["a.t1c"]["metrics"]["y"] == 1.0
    assert os.listdir(tmp_path) == ["t1c_exports.json"]


def test_read_manifest_refuses_other_files(tmp_path):
    bad = tmp_path / "t1c_exports.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a t1c export manifest"):
        read_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="move it away"):
        read_manifest(bad)


def test_atomic_copy_and_symlink(tmp_path):
    src = tmp_path / "a.t1c"
    src.write_bytes(b"one")
    atomic_copy(src, tmp_path / "last.t1c")
    assert (tmp_path / "last.t1c").read_bytes() == b"one"
    atomic_symlink(src, tmp_path / "last.t1c")
    assert os.path.islink(tmp_path / "last.t1c")
    assert os.readlink(tmp_path / "last.t1c") == "a.t1c"  # relative: the folder can move
    assert sorted(os.listdir(tmp_path)) == ["a.t1c", "last.t1c"]


# -- __init__ validation -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"verify": "loud"}, "verify='loud'"),
        ({"weight_bits": 0}, "weight_bits=0"),
        ({"weight_bits": 8.0}, "weight_bits=8.0"),
        ({"accumulator_bits": 65}, "accumulator_bits=65"),
        ({"every_n_epochs": -1}, "every_n_epochs=-1"),
        ({"limit_batches": 0}, "limit_batches=0"),
        ({"max_quant_gap": 2.0}, "max_quant_gap=2.0"),
        ({"max_quant_gap": True}, "max_quant_gap=True"),
        ({"on_quant_gap": "ignore"}, "on_quant_gap='ignore'"),
        ({"filename": ""}, "filename=''"),
        ({"module_attr": ""}, "module_attr=''"),
    ],
)
def test_init_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        T1CExport(**kwargs)


def test_no_argument_defaults():
    cb = T1CExport()
    assert (cb.verify, cb.weight_bits, cb.integer_weights, cb.filename) == (
        "raise",
        8,
        True,
        "{epoch}-{step}",
    )


# -- predicates with a mocked trainer ----------------------------------------------------
def _trainer(**kw):
    base = dict(
        fast_dev_run=False,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        sanity_checking=False,
        checkpoint_callbacks=[],
        current_epoch=0,
        global_step=10,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_should_skip_outside_fitting_and_sanity_check():
    assert not T1CExport._should_skip(_trainer())
    assert T1CExport._should_skip(_trainer(sanity_checking=True))
    assert T1CExport._should_skip(_trainer(fast_dev_run=1))
    assert T1CExport._should_skip(_trainer(state=SimpleNamespace(fn=TrainerFn.VALIDATING)))


def test_should_export_own_schedule():
    cb = T1CExport(every_n_epochs=2)
    assert not cb._should_export_own(_trainer(current_epoch=0))
    assert cb._should_export_own(_trainer(current_epoch=1))
    cb._last_own_step = 10
    assert not cb._should_export_own(_trainer(current_epoch=1))  # this step is already exported
    assert not cb._should_export_own(
        _trainer(current_epoch=1, global_step=11, checkpoint_callbacks=[ModelCheckpoint()])
    )
    assert not T1CExport(every_n_epochs=0)._should_export_own(_trainer(current_epoch=1))


def test_should_export_at_save_needs_a_model_checkpoint():
    cb = T1CExport()
    assert not cb._should_export_at_save(_trainer())
    assert cb._should_export_at_save(_trainer(checkpoint_callbacks=[ModelCheckpoint()]))
    assert not cb._should_export_at_save(
        _trainer(checkpoint_callbacks=[ModelCheckpoint()], sanity_checking=True)
    )


def _mc(tmp_path, **state):
    mc = ModelCheckpoint(
        dirpath=tmp_path, **{k: state.pop(k) for k in ("save_last", "save_top_k") if k in state}
    )
    for key, value in state.items():
        setattr(mc, key, value)
    return mc


def _rank_zero(mc=None):
    """A one-process trainer: rank zero, broadcast returns its argument."""
    return SimpleNamespace(
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda obj: obj),
        checkpoint_callbacks=[mc] if mc is not None else [],
    )


def test_held_by_takes_steps_only_from_saves_entries_or_the_files(tmp_path):
    a, b, last = str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt"), str(tmp_path / "last.ckpt")
    torch.save({"global_step": 15}, b)  # b: saved before this callback saw it (a crash, a resume)
    mc = _mc(
        tmp_path,
        save_last=True,
        best_k_models={a: torch.tensor(1.0), b: torch.tensor(2.0)},
        best_model_path=b,
        last_model_path=last,
        _last_checkpoint_saved=last,
        _last_global_step_saved=20,
    )
    cb = T1CExport()
    cb.entries = {str(tmp_path / "a.t1c"): {"checkpoint": a, "global_step": 10, "run": cb._run}}
    trainer = _rank_zero(mc)
    cb._note_saves(trainer)
    held = {h.checkpoint: h for h in cb._held_by(mc, trainer)}
    # before the fix, b was given step 20 (the latest save) and exported with its weights
    assert {k: (h.step, h.from_file) for k, h in held.items()} == {
        a: (10, False),
        b: (15, True),
        last: (20, False),
    }
    assert all(h.link_to is None for h in held.values())
    # at a fit's first reconcile, known entries are checked against their files too
    cb._check_disk = True
    held = {h.checkpoint: h for h in cb._held_by(mc, trainer)}
    assert held[a].from_file and held[a].step is None  # a.ckpt is gone: nothing to pair it with


def test_held_by_link_mode_points_last_at_the_saved_checkpoint(tmp_path):
    b, last = str(tmp_path / "b.ckpt"), str(tmp_path / "last.ckpt")
    mc = _mc(
        tmp_path,
        save_last="link",
        best_k_models={b: torch.tensor(2.0)},
        best_model_path=b,
        last_model_path=last,
        _last_checkpoint_saved=b,
        _last_global_step_saved=30,
    )
    cb = T1CExport()
    cb._note_saves(_rank_zero(mc))
    held = {h.checkpoint: h for h in cb._held_by(mc, _rank_zero(mc))}
    assert held[last].link_to == b and held[last].step == 30


def test_plan_skips_what_is_already_exported(tmp_path):
    cb = T1CExport()
    a = str(tmp_path / "a.ckpt")
    mc = _mc(tmp_path, best_k_models={a: torch.tensor(1.0)}, best_model_path=a, _last_global_step_saved=5)
    cb.entries = {str(tmp_path / "a.t1c"): {"checkpoint": a, "global_step": 5, "link": False, "run": cb._run}}
    assert cb._plan(cb._held_by(mc, _rank_zero(mc))) == []
    mc._last_checkpoint_saved, mc._last_global_step_saved = a, 6  # the same name saved again later
    cb._note_saves(_rank_zero(mc))
    assert cb._plan(cb._held_by(mc, _rank_zero(mc))) == [("write", str(tmp_path / "a.t1c"), a, 6, None)]


def test_should_delete_only_this_runs_dropped_checkpoints():
    cb = T1CExport()
    run = cb._run
    assert cb._should_delete({"checkpoint": "/x/a.ckpt", "run": run}, held={"/x/b.ckpt"})
    assert not cb._should_delete({"checkpoint": "/x/a.ckpt", "run": run}, held={"/x/a.ckpt"})
    assert not cb._should_delete({"checkpoint": None, "run": run}, held=set())  # own exports, own last.t1c
    assert not cb._should_delete({"checkpoint": "/x/a.ckpt", "kept": True, "run": run}, held=set())
    assert not cb._should_delete({"checkpoint": "/x/a.ckpt", "run": "another run"}, held=set())


# -- state and model lookup --------------------------------------------------------------
def _entry(folder, name, **kw):
    entry = {
        "file": f"{folder}/{name}",
        "dir": folder,
        "checkpoint": f"{folder}/{name[:-4]}.ckpt",
        "epoch": 0,
        "global_step": 3,
        "metrics": {"m": 1.0},
        "content_hash": "abc",
        "source_hash": None,
        "same_as": None,
        "link": False,
        "run": "r1",
        "kept": False,
    }
    entry.update(kw)
    return entry


def test_state_dict_is_plain_and_round_trips():
    cb = T1CExport()
    cb.entries = {"/x/a.t1c": _entry("/x", "a.t1c")}
    cb._reference_file, cb._last_own_step = "/x/a.t1c", 3
    state = cb.state_dict()
    assert json.loads(json.dumps(state)) == state
    other = T1CExport()
    other.load_state_dict(state)
    assert other.state_dict() == state
    assert other._run == cb._run  # a resumed run is the same run
    state["entries"]["/x/a.t1c"]["global_step"] = 99
    assert other.entries["/x/a.t1c"]["global_step"] == 3  # a copy, not shared


def test_load_state_dict_drops_unsafe_or_mistyped_entries():
    cb = T1CExport()
    state = {
        "entries": {
            "/x/a.t1c": _entry("/x", "a.t1c"),
            "/etc/passwd": _entry("/x", "passwd"),  # the file is not in the entry's folder
            "/x/b.t1c": _entry("/x", "b.t1c", global_step="3"),
            "/x/c.t1c": _entry("/x", "c.t1c", same_as="/elsewhere/c.t1c"),
            "/x/d.t1c": "not an entry",
        },
        "reference_file": "/etc/passwd",
        "run": "r1",
    }
    with pytest.warns(UserWarning, match="state entry"):
        cb.load_state_dict(state)
    assert list(cb.entries) == ["/x/a.t1c"]
    assert cb._reference_file is None


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.head, self.loss = nn.Linear(2, 2), nn.Linear(2, 2), nn.CrossEntropyLoss()


def test_find_model():
    one = nn.Module()
    one.body, one.loss = nn.Linear(2, 2), nn.CrossEntropyLoss()
    assert T1CExport()._find_model(one) is one.body
    two = _Two()
    with pytest.raises(T1CExportError, match="encoder, head.*module_attr"):
        T1CExport()._find_model(two)
    assert T1CExport(module_attr="head")._find_model(two) is two.head
    with pytest.raises(T1CExportError, match="module_attr='loss_fn'"):
        T1CExport(module_attr="loss_fn")._find_model(two)
    two.net = nn.Linear(1, 1)
    assert T1CExport()._find_model(two) is two.net


def test_gap_check_warns_or_raises():
    trainer = _trainer()
    T1CExport(max_quant_gap=0.1)._check_gap({"t1c/quant_gap": 0.05}, trainer)
    with pytest.warns(UserWarning, match="max_quant_gap=0.1"):
        T1CExport(max_quant_gap=0.1)._check_gap({"t1c/quant_gap": 0.2}, trainer)
    with pytest.raises(T1CExportError, match="0.2000 below float"):
        T1CExport(max_quant_gap=0.1, on_quant_gap="raise")._check_gap({"t1c/quant_gap": 0.2}, trainer)
    assert not math.isnan(quant_metrics(1, 0, 1, 2)["t1c/quant_gap"])


# -- what is measured is what ships ------------------------------------------------------------
def test_check_written_accepts_the_measured_graph_and_refuses_another(tmp_path, fixtures_dir):
    from t1c import ir
    from t1c.lightning.callback import _Pending

    graph = ir.read(fixtures_dir / "mlp_snn.t1c")
    path = tmp_path / "epoch=0-step=1.t1c"
    ir.write(path, graph)
    measured = _Pending(1, 0, graph, {}, graph.content_hash(), None)
    T1CExport._check_written(str(path), measured)  # the file holds the measured graph

    other = ir.read(fixtures_dir / "mlp_snn.t1c")
    other.nodes["fc1"].weight[0, 0] += 1.0
    stale = _Pending(1, 0, other, {}, other.content_hash(), None)
    with pytest.raises(T1CExportError, match="differs from the graph measured at step 1"):
        T1CExport._check_written(str(path), stale)

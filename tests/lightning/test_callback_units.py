"""T1CExport's argument checks, decisions and resumable state, without a Trainer (mocked where one is needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from test_ledger import _entry

from t1c.lightning.callback import T1CExport


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
    assert not T1CExport.should_skip(_trainer())
    assert T1CExport.should_skip(_trainer(sanity_checking=True))
    assert T1CExport.should_skip(_trainer(fast_dev_run=1))
    assert T1CExport.should_skip(_trainer(state=SimpleNamespace(fn=TrainerFn.VALIDATING)))


def test_should_export_own_schedule():
    cb = T1CExport(every_n_epochs=2)
    assert not cb.should_export_own(_trainer(current_epoch=0))
    assert cb.should_export_own(_trainer(current_epoch=1))
    cb.ledger.last_own_step = 10
    assert not cb.should_export_own(_trainer(current_epoch=1))  # this step is already exported
    assert not cb.should_export_own(
        _trainer(current_epoch=1, global_step=11, checkpoint_callbacks=[ModelCheckpoint()])
    )
    assert not T1CExport(every_n_epochs=0).should_export_own(_trainer(current_epoch=1))


def test_should_export_at_save_needs_a_model_checkpoint():
    cb = T1CExport()
    assert not cb.should_export_at_save(_trainer())
    assert cb.should_export_at_save(_trainer(checkpoint_callbacks=[ModelCheckpoint()]))
    assert not cb.should_export_at_save(
        _trainer(checkpoint_callbacks=[ModelCheckpoint()], sanity_checking=True)
    )


# -- state ---------------------------------------------------------------------------------
def test_state_dict_is_plain_and_round_trips():
    cb = T1CExport()
    cb.ledger.entries = {"/x/a.t1c": _entry("/x", "a.t1c")}
    cb.ledger.reference_file, cb.ledger.last_own_step = "/x/a.t1c", 3
    state = cb.state_dict()
    assert json.loads(json.dumps(state)) == state
    other = T1CExport()
    other.load_state_dict(state)
    assert other.state_dict() == state
    assert other.ledger.run == cb.ledger.run  # a resumed run is the same run
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
    assert cb.ledger.reference_file is None


def test_state_without_a_run_id_gives_its_entries_the_resumed_run():
    cb = T1CExport()
    cb.load_state_dict({"entries": {"/x/a.t1c": _entry("/x", "a.t1c", run=None)}})
    assert cb.entries["/x/a.t1c"]["run"] == cb.ledger.run

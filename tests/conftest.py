"""Shared test helpers: where the reference fixtures live (tests/fixtures, copied from the toolchain)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
HYBRID_FIXTURES = FIXTURES / "hybrid"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.t1c"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def hybrid_fixtures_dir() -> Path:
    if not HYBRID_FIXTURES.is_dir():
        pytest.fail(f"hybrid reference fixtures not found at {HYBRID_FIXTURES}")
    return HYBRID_FIXTURES


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside its own temporary folder (commands that write to the cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def one_thread():
    """One torch thread for the test: small tensors gain nothing from threads, and on a loaded
    2-core machine several threads contend and crawl."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _snntorch_instances_isolated():
    """Forget the snnTorch neurons a test created once it ends.

    snnTorch keeps every neuron in one class-wide list (``SpikingNeuron.instances``) that
    ``snntorch.utils.reset`` walks; a neuron left there by one test (e.g. a ``DeltaLeaky`` whose
    membrane was never created) would break a later test's reset.
    """
    from snntorch import SpikingNeuron

    before = len(SpikingNeuron.instances)
    yield
    del SpikingNeuron.instances[before:]

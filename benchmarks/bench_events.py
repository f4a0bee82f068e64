"""Event data: is the tonic pipeline fast enough, and does training fit in snnTorch's memory?

(a) Throughput, N-MNIST-sized: synthetic recordings in N-MNIST's own file layout and
    event count (about 4000 events over 300 ms per sample, 2x34x34 sensor) are read by
    ``tonic.datasets.NMNIST`` through :class:`~t1c.lightning.EventDataModule`
    (``ToFrame(n_time_bins=20)``, ``PadTensors``): uncached, uncached with ``Denoise``,
    and from tonic's ``DiskCachedDataset``; against the samples/s of a training step
    (forward, backward, Adam) of the recipe's conv SNN in ``T1CModule(encoding="sequence")``.
    Target: the cached pipeline delivers more samples/s than training consumes.
(b) Peak memory, SHD-sized: one training step of a 700-256-20 SNN (two ``snn.Leaky``) on
    ``[B=64, T=500, 700]`` input in snnTorch (the tutorials' loop over time), in
    ``T1CModule`` (default: chunks of 100 steps recomputed in backward) and in
    ``T1CModule(grad_checkpoint_steps=None)``, each in its own
    subprocess that reports its resident memory before the step and its peak RSS during it
    (``VmHWM`` after resetting it through ``/proc/self/clear_refs``).
    Target: T1CModule <= snnTorch.

Run: ``python benchmarks/bench_events.py [--samples N] [--threads N]``. Times are the best of
``--repeats`` passes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


# -- (a) throughput ----------------------------------------------------------------------------
def write_nmnist_like(root: Path, samples: int, events: int = 4000, seed: int = 0) -> None:
    """Recordings in N-MNIST's layout and 5-byte encoding, with N-MNIST's event count and span."""
    rng = np.random.default_rng(seed)
    for split, n in (("Train", samples), ("Test", max(samples // 4, 10))):
        for i in range(n):
            folder = root / "NMNIST" / split / str(i % 10)
            folder.mkdir(parents=True, exist_ok=True)
            t = np.sort(rng.integers(0, 300_000, events))
            raw = np.zeros((events, 5), dtype=np.uint8)
            raw[:, 0], raw[:, 1] = rng.integers(0, 34, events), rng.integers(0, 34, events)
            raw[:, 2] = (rng.integers(0, 2, events) << 7) | ((t >> 16) & 0x7F)
            raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
            (folder / f"{i:05d}.bin").write_bytes(raw.tobytes())


def pipeline_rate(dm, repeats: int) -> float:
    """Samples/s of iterating the training loader once (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        start, count = time.perf_counter(), 0
        for x, _ in dm.train_dataloader():
            count += len(x)
        best = min(best, time.perf_counter() - start)
    return count / best


def training_rate(source: Path, batch: int, steps: int, repeats: int) -> float:
    """Samples/s of T1CModule training steps on N-MNIST-shaped frames (best of ``repeats``)."""
    from t1c.lightning import T1CModule

    module = T1CModule(source, encoding="sequence", num_steps=20)
    opt = module.configure_optimizers()
    x = (torch.rand(batch, 20, 2, 34, 34) < 0.03).float()
    y = torch.randint(0, 10, (batch,))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = module.compute_loss(module(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - start)
    return batch * steps / best


def throughput(samples: int, repeats: int, batch: int) -> dict[str, float]:
    import importlib.util

    from t1c import ir
    from t1c.bridge import to_ir
    from t1c.lightning import EventDataModule

    sys.path.insert(0, str(REPO / "recipes"))  # the recipe imports its _common neighbour
    spec = importlib.util.spec_from_file_location("recipe", REPO / "recipes" / "nmnist_conv.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with tempfile.TemporaryDirectory(prefix="t1c-bench-events-") as folder:
        root = Path(folder)
        write_nmnist_like(root, samples)
        torch.manual_seed(0)
        ir.write(root / "conv.t1c", to_ir(recipe.build_conv_snn(32), torch.zeros(1, 2, 34, 34)))
        args = dict(save_to=root, n_time_bins=20, batch_size=batch, download=False)
        uncached = EventDataModule("tonic.datasets.NMNIST", cache=False, **args)
        denoised = EventDataModule("tonic.datasets.NMNIST", cache=False, denoise_time=10_000.0, **args)
        cached = EventDataModule("tonic.datasets.NMNIST", cache=True, **args)
        cached.setup("fit")
        pipeline_rate(cached, 1)  # fills the cache
        return {
            "uncached": pipeline_rate(uncached, repeats),
            "denoised": pipeline_rate(denoised, repeats),
            "cached": pipeline_rate(cached, repeats),
            "training": training_rate(root / "conv.t1c", batch, steps=3, repeats=repeats),
        }


# -- (b) peak memory in a subprocess ---------------------------------------------------------
def _status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the lifetime peak


def _reset_peak() -> None:
    """Start a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def memory_child(kind: str, steps: int, batch: int, threads: int, chunk: int) -> dict[str, float]:
    """One training step of the SHD-sized SNN in ``kind`` (``snntorch``, ``t1c`` with
    ``grad_checkpoint_steps=chunk``, ``t1c-unchunked``): resident MiB before, peak MiB during, seconds."""
    import snntorch as snn
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(700, 256),
        snn.Leaky(beta=0.95, init_hidden=True),
        nn.Linear(256, 20),
        snn.Leaky(beta=0.95, init_hidden=True),
    )
    x = (torch.rand(batch, steps, 700) < 0.01).float()  # [B, T, 700] as PadTensors collates
    y = torch.randint(0, 20, (batch,))
    if kind.startswith("t1c"):
        from t1c.bridge import to_ir
        from t1c.lightning import T1CModule

        module = T1CModule(
            to_ir(model, torch.zeros(1, 700)),
            encoding="sequence",
            grad_checkpoint_steps=None if kind == "t1c-unchunked" else chunk,
        )
        opt = module.configure_optimizers()
        del model

        def step() -> torch.Tensor:
            return module.compute_loss(module(x), y)
    else:
        from t1c import demo

        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> torch.Tensor:
            return nn.functional.cross_entropy(demo.spike_counts(model, x.transpose(0, 1)), y)

    before = _status_mib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    loss = step()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"before_mib": before, "peak_mib": _status_mib("VmHWM"), "seconds": time.perf_counter() - start}


KINDS = ("snntorch", "t1c", "t1c-unchunked")


def memory(steps: int, batch: int, threads: int, chunk: int) -> dict[str, dict[str, float]]:
    out = {}
    for kind in KINDS:
        cmd = [sys.executable, __file__, "--child", kind, "--steps", str(steps), "--batch", str(batch)]
        cmd += ["--threads", str(threads), "--chunk", str(chunk)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[kind] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="synthetic N-MNIST training recordings")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500, help="time bins of the SHD-sized step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=100, help="T1CModule's grad_checkpoint_steps")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(memory_child(args.child, args.steps, args.batch, args.threads, args.chunk)))
        return 0
    torch.set_num_threads(args.threads)
    rates = throughput(args.samples, args.repeats, args.batch)
    print(f"(a) N-MNIST-sized, batch {args.batch}, 20 bins, {args.threads} thread(s), samples/s:")
    print(f"    data pipeline, uncached (tonic read + ToFrame): {rates['uncached']:9.0f}")
    print(f"    data pipeline, uncached + Denoise:              {rates['denoised']:9.0f}")
    print(f"    data pipeline, cached (DiskCachedDataset):      {rates['cached']:9.0f}")
    print(f"    training step (T1CModule, conv SNN):            {rates['training']:9.0f}")
    verdict = "not the bottleneck" if rates["cached"] > rates["training"] else "THE BOTTLENECK"
    print(f"    cached pipeline / training = {rates['cached'] / rates['training']:.1f}x: {verdict}")
    mem = memory(args.steps, args.batch, args.threads, args.chunk)
    print(f"(b) SHD-sized training step (700-256-20, T={args.steps}, B={args.batch}), peak RSS in MiB:")
    names = {
        "snntorch": "snnTorch loop",
        "t1c": f"T1CModule (chunks of {args.chunk})",
        "t1c-unchunked": "T1CModule, unchunked",
    }
    for kind, m in mem.items():
        print(
            f"    {names[kind]:28s} peak {m['peak_mib']:6.0f} (step adds {m['peak_mib'] - m['before_mib']:4.0f}), "
            f"{m['seconds']:.2f} s"
        )
    for kind in ("t1c", "t1c-unchunked"):
        ratio = mem[kind]["peak_mib"] / mem["snntorch"]["peak_mib"]
        print(
            f"    {names[kind]} / snnTorch peak = {ratio:.2f} ({'ok' if ratio <= 1.0 else 'ABOVE snnTorch'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast `t1c.ir` writes and reads a large graph, against raw h5py as the floor.

The graph is 8 x (Affine 2048x2048 + LIF 2048), about 134 MB of float32. Raw h5py writes
and reads the very same datasets with no validation, no temporary file, no rename and no
fsync; t1c is timed with its default ``fsync=False`` and with the durable ``fsync=True`` so the
cost of durability is visible on its own. Best of ``--repeat`` runs, hot page cache.

    python benchmarks/bench_io.py [--repeat 7] [--dir /tmp]

Writes are timed twice: to a new path, and replacing an existing file. On ext4,
replacing costs every writer the same (raw truncate, raw tmp+rename, t1c): renaming
over a file, or truncating one, makes the kernel start writeback of the new data
(``auto_da_alloc``). t1c's temporary file is created by h5py itself (mode ``"x"``),
never pre-created and truncated, which would trigger the same flush on a new path.

Target: t1c within 1.2x of raw h5py both ways (without fsync for writes).

A first table times a small graph as the export callback writes and reads one per
checkpoint (``--small-repeat``): 6 nodes, about 60 datasets, where the cost is per HDF5
object. A second table times graphs with many small nodes (``--chain 1000,10000,100000``):
a chain ``Input -> Skip x (n-2) -> Output`` built (validated), written and read (best
of ``--chain-repeat``; sizes above 10k once). Two reads of the same file with no checks
at all frame t1c's: "raw read", h5py's high-level API (``group[field][()]``), and
"floor", the fastest read h5py allows (its low-level API: open each node group, list
its links, open each dataset, read it into a preallocated array). Validation used to
be quadratic (a 100k chain took 680 s to read); every column should now grow linearly
with ``n`` (the per-node column stays flat). Reads of many nodes are bound by HDF5's
cost per object, which the floor shows.

A third table (``--ratio-repeat``, issue 24) gives what reading costs beyond reading the
datasets: ``ir.read`` against the plain h5py loop (``raw read``) and the floor on the same
file, for a ~96 MiB file of large arrays (6 x Affine 2048x2048 + LIF) and a 10,000-node
chain, all variants alternating in one process, best of N. ``ir.read`` is timed on the
file as ``ir.write`` writes it (the content checksum) and on the same file carrying the
SHA-256 of every byte that t1c wrote before, which is what reading cost until then.
Target: ``ir.read`` at most 1.2x the plain loop, every check included. The ratios are
given in wall time and in CPU time (the reading thread's, kernel time included, best of N
too): on a shared machine, wall time also counts the time a run waits for a core, which
makes one best-of-N wall ratio to the next vary by 30% and more under load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import h5py
import numpy as np
from h5py import h5d, h5g, h5s, h5t

from t1c import ir
from t1c.ir.hashing import HASH_ATTRIBUTE, Digest

LAYERS = 8
WIDTH = 2048
STR = h5py.string_dtype()


def build_graph(layers: int = LAYERS) -> ir.Graph:
    rng = np.random.default_rng(0)
    nodes: list[ir.Node] = [ir.Input(input_type={"input": np.array([WIDTH])})]
    names = ["input"]
    for i in range(layers):
        nodes.append(
            ir.Affine(weight=rng.standard_normal((WIDTH, WIDTH), dtype=np.float32), bias=np.zeros(WIDTH))
        )
        nodes.append(
            ir.LIF(
                tau=np.full(WIDTH, 10.0),
                r=np.full(WIDTH, 10.0),
                v_leak=np.zeros(WIDTH),
                v_threshold=np.ones(WIDTH),
            )
        )
        names += [f"fc{i}", f"lif{i}"]
    return ir.Graph.from_chain(*nodes, ir.Output(), names=[*names, "output"])


def payload_bytes(graph: ir.Graph) -> int:
    return sum(
        v.nbytes for n in graph.nodes.values() for v in n.to_fields().values() if isinstance(v, np.ndarray)
    )


def raw_write(path: Path, graph: ir.Graph) -> None:
    """The same datasets as t1c writes, straight into the destination."""
    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=ir.FORMAT_VERSION, dtype=STR)
        g = f.create_group("graph")
        g.create_dataset("type", data="Graph", dtype=STR)
        nodes = g.create_group("nodes")
        for name, node in graph.nodes.items():
            group = nodes.create_group(name)
            group.create_dataset("type", data=node.TYPE, dtype=STR)
            for field, value in node.to_fields().items():
                group.create_dataset(field, data=value)
        edges = g.create_group("edges")
        edges.create_dataset("src", data=[s for s, _ in graph.edges], dtype=STR)
        edges.create_dataset("dst", data=[d for _, d in graph.edges], dtype=STR)


def raw_read(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every node dataset into memory, no checks."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        for name, group in f["graph/nodes"].items():
            out[name] = {field: group[field][()] for field in group}
        out["_edges"] = {"src": f["graph/edges/src"][()], "dst": f["graph/edges/dst"][()]}
    return out


def floor_read(path: Path) -> dict[bytes, dict[bytes, np.ndarray]]:
    """Every node dataset into memory through h5py's low-level API, no checks: the floor."""
    out: dict[bytes, dict[bytes, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        nodes = h5g.open(f.id, b"graph/nodes")
        names: list[bytes] = []
        nodes.links.iterate(names.append)

        def groups() -> Iterator[tuple[bytes, h5g.GroupID]]:  # one open at a time
            for name in names:
                yield name, h5g.open(nodes, name)
            yield b"_edges", h5g.open(f.id, b"graph/edges")

        for name, group in groups():
            fields: list[bytes] = []
            group.links.iterate(fields.append)
            values = out[name] = {}
            for field in fields:
                dset = h5d.open(group, field)
                tid = dset.get_type()
                dtype = STR if tid.get_class() == h5t.STRING else tid.dtype
                values[field] = value = np.empty(dset.shape, dtype=dtype)
                dset.read(h5s.ALL, h5s.ALL, value)
    return out


def best_of_interleaved(
    repeat: int, runs: dict[str, tuple[Callable[[], object], Callable[[], object]]], cpu: dict | None = None
) -> dict:
    """Best time of each run; one round runs each once, so load from other processes
    hits every variant alike. Each run is ``(untimed set-up, timed call)``. ``cpu``, when
    given, receives the best CPU time of each (this thread's, kernel time included): on a
    shared machine it leaves out the time spent waiting for a core, which wall time does not."""
    best = dict.fromkeys(runs, float("inf"))
    if cpu is not None:
        cpu.update(dict.fromkeys(runs, float("inf")))
    for _ in range(repeat):
        for name, (setup, call) in runs.items():
            setup()
            start, start_cpu = time.perf_counter(), time.thread_time()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
            if cpu is not None:
                cpu[name] = min(cpu[name], time.thread_time() - start_cpu)
    return best


def chain_graph(n: int) -> ir.Graph:
    """``Input[4] -> Skip x (n - 2) -> Output``: n nodes, n - 1 edges."""
    nodes: list[ir.Node] = [ir.Input(input_type={"input": np.array([4])})]
    nodes += [ir.Skip() for _ in range(n - 2)]
    return ir.Graph.from_chain(*nodes, ir.Output(), names=[f"n{i}" for i in range(n)])


def bench_chains(sizes: list[int], folder: str | None, repeat: int) -> None:
    """Build, write and read chains of ``sizes`` nodes (best of ``repeat``); print a table."""
    print(f"many nodes: Input -> Skip x (n-2) -> Output, best of {repeat} (one run above 10k nodes)")
    columns = ("build", "write", "read", "raw read", "floor")
    print(
        f"  {'nodes':>7}" + "".join(f"  {c:>8}" for c in columns) + f"  {'read/node':>9}  {'read/floor':>10}"
    )
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "chain.t1c"
        for n in sizes:
            best = dict.fromkeys(columns, float("inf"))
            for _ in range(repeat if n <= 10_000 else 1):
                start = time.perf_counter()
                graph = chain_graph(n)
                best["build"] = min(best["build"], time.perf_counter() - start)
                for column, call in (
                    ("write", partial(ir.write, path, graph)),
                    ("read", partial(ir.read, path)),
                    ("raw read", partial(raw_read, path)),
                    ("floor", partial(floor_read, path)),
                ):
                    start = time.perf_counter()
                    result = call()
                    best[column] = min(best[column], time.perf_counter() - start)
                    if column == "read" and len(result.nodes) != n:
                        raise SystemExit(f"t1c read back {len(result.nodes)} nodes instead of {n}")
            print(
                f"  {n:>7}"
                + "".join(f"  {best[c]:7.2f}s" for c in columns)
                + f"  {best['read'] / n * 1e6:7.0f}us  {best['read'] / best['floor']:9.2f}x"
            )


def small_graph() -> ir.Graph:
    """A checkpoint as the export callback writes one (the digits demo's): 64 -> 128 -> 10
    with integer weights and ~25 nested metadata entries, 59 datasets in 13 groups."""
    rng = np.random.default_rng(0)
    nodes: list[ir.Node] = [ir.Input(input_type={"input": np.array([64])})]
    for n_in, n_out in ((64, 128), (128, 10)):
        w = rng.integers(-127, 128, size=(n_out, n_in)).astype(np.int32)
        nodes.append(
            ir.Affine(
                weight=(w * 0.01).astype(np.float32),
                bias=np.zeros(n_out, np.float32),
                weight_int=w,
                weight_scale=0.01,
                bias_int=np.zeros(n_out, np.int32),
            )
        )
        beta = np.full(n_out, 0.9)  # as snnTorch's Leaky exports: tau = r = 1 / (1 - beta)
        nodes.append(
            ir.LIF(
                tau=1 / (1 - beta),
                r=1 / (1 - beta),
                v_leak=np.zeros(n_out),
                v_threshold=np.ones(n_out),
                beta=beta,
                reset_mechanism="subtract",
                reset_delay=True,
                strict_threshold=True,
            )
        )
    logged = ("train_acc", "train_loss", "train_loss_epoch", "train_loss_step", "val_acc", "val_loss")
    metrics: dict = {name: i / 7 for i, name in enumerate(logged)}
    metrics["t1c"] = dict.fromkeys(
        ("export_agreement", "float_acc", "num_samples", "quant_acc", "quant_gap"), 0.9
    )
    metadata = {
        "producer": "t1c",
        "producer_version": "0.1.0",
        "t1c_export": {
            "accumulator_bits": 32,
            "checkpoint": "epoch=2-step=69.ckpt",
            "epoch": 2,
            "global_step": 69,
            "integer_weights": True,
            "metrics": metrics,
            "source_hash": "9a" * 32,
            "weight_bits": 8,
            "weights": "live model at the checkpoint's save",
        },
    }
    names = ["input", "fc1", "lif1", "fc2", "lif2", "output"]
    return ir.Graph.from_chain(*nodes, ir.Output(), names=names, metadata=metadata)


def bench_small(folder: str | None, repeat: int) -> None:
    """Write and read :func:`small_graph` as the export callback does (best of ``repeat``,
    interleaved): the cost per checkpoint is HDF5's per object, and t1c's around it."""
    graph = small_graph()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "small.t1c"
        ir.write(path, graph)
        is_dataset: list[bool] = []
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: is_dataset.append(isinstance(obj, h5py.Dataset)))
        best = best_of_interleaved(
            repeat,
            {
                "write": (lambda: None, lambda: ir.write(path, graph)),
                "write fsync=True": (lambda: None, lambda: ir.write(path, graph, fsync=True)),
                "read + content_hash()": (lambda: None, lambda: ir.read(path).content_hash()),
            },
        )
        size = path.stat().st_size
    groups = len(is_dataset) - sum(is_dataset)  # below the root
    print(
        f"small graph (an export checkpoint): 6 nodes, {sum(is_dataset)} datasets, {groups} groups, "
        f"{size / 1e3:.0f} KB, best of {repeat}"
    )
    for name, seconds in best.items():
        print(f"  {name:<24} {seconds * 1e3:7.2f} ms")


def write_with_sha256(path: Path, graph: ir.Graph) -> None:
    """``graph`` as t1c wrote it before the content checksum: the SHA-256 of every byte."""
    ir.write(path, graph, content_hash=False)
    with Digest(HASH_ATTRIBUTE) as digest:
        for name, node in graph.nodes.items():
            digest.add(name, node)
        value = digest.hexdigest(graph.edges, graph.metadata)
    with h5py.File(path, "a") as f:
        f.attrs.create(HASH_ATTRIBUTE, value, dtype=STR)


def bench_read_ratio(folder: str | None, repeat: int) -> None:
    """``ir.read`` / the plain h5py loop on a large-array file and a 10,000-node chain,
    alternating in one process, best of ``repeat`` (the chain: at most 3)."""
    print(f"reading against the plain h5py loop on the same file (alternating, best of {repeat}):")
    print(
        f"  {'file':<26}{'raw read':>10}{'floor':>10}{'t1c':>10}{'t1c/raw':>9}{'t1c/floor':>10}"
        f"{'CPU: t1c/raw':>14}{'t1c/floor':>10}  before (SHA-256)"
    )
    cases = (
        ("6 x 2048x2048 (96 MiB)", build_graph(6), repeat),
        ("10,000-node chain", chain_graph(10_000), 3),
    )
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for label, graph, runs in cases:
            path, before = Path(tmp) / "now.t1c", Path(tmp) / "before.t1c"
            ir.write(path, graph)
            write_with_sha256(before, graph)
            cpu: dict = {}
            best = best_of_interleaved(
                min(runs, repeat),
                {
                    "raw": (lambda: None, partial(raw_read, path)),
                    "floor": (lambda: None, partial(floor_read, path)),
                    "t1c": (lambda: None, partial(ir.read, path)),
                    "before": (lambda: None, partial(ir.read, before)),
                },
                cpu,
            )
            print(
                f"  {label:<26}"
                + "".join(f"{best[k] * 1e3:8.1f}ms" for k in ("raw", "floor", "t1c"))
                + f"{best['t1c'] / best['raw']:8.2f}x{best['t1c'] / best['floor']:9.2f}x"
                + f"{cpu['t1c'] / cpu['raw']:13.2f}x{cpu['t1c'] / cpu['floor']:9.2f}x"
                + f"  {best['before'] * 1e3:.1f}ms = {best['before'] / best['raw']:.2f}x raw"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temporary one)")
    parser.add_argument(
        "--chain",
        default="1000,10000",
        help="node counts for the many-nodes table, comma-separated (add 100000: minutes); '' skips it",
    )
    parser.add_argument("--chain-repeat", type=int, default=3, help="runs per size up to 10k nodes")
    parser.add_argument("--skip-large", action="store_true", help="only the many-nodes table")
    parser.add_argument(
        "--ratio-repeat", type=int, default=25, help="runs of the read/plain-loop table (0 skips it)"
    )
    parser.add_argument(
        "--small-repeat", type=int, default=50, help="runs of the small-graph table (0 skips it)"
    )
    args = parser.parse_args()
    if args.small_repeat:
        bench_small(args.dir, args.small_repeat)
    if args.ratio_repeat:
        bench_read_ratio(args.dir, args.ratio_repeat)
    if args.chain:
        bench_chains([int(n) for n in args.chain.split(",")], args.dir, args.chain_repeat)
    if args.skip_large:
        return

    graph = build_graph()
    mb = payload_bytes(graph) / 1e6
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t1c_path, raw_path, raw_tmp = Path(tmp) / "bench.t1c", Path(tmp) / "raw.h5", Path(tmp) / ".raw.tmp"
        ir.write(t1c_path, graph)  # warm the page cache and the code paths
        raw_write(raw_path, graph)

        # Every timed run starts with no dirty data in the page cache, so no run is throttled
        # by writeback of the one before it (``os.sync`` is outside the timing).
        def fresh(path: Path) -> Callable[[], None]:
            def setup() -> None:
                path.unlink(missing_ok=True)
                os.sync()

            return setup

        def settled(path: Path) -> Callable[[], None]:
            """The file being replaced is on disk, as a checkpoint written a while ago is."""
            return os.sync

        def keep() -> None:
            pass

        def raw_atomic() -> None:
            raw_write(raw_tmp, graph)
            os.replace(raw_tmp, raw_path)

        results = best_of_interleaved(
            args.repeat,
            {
                "new file: raw h5py": (fresh(raw_path), lambda: raw_write(raw_path, graph)),
                "new file: t1c fsync=False": (
                    fresh(t1c_path),
                    lambda: ir.write(t1c_path, graph, fsync=False),
                ),
                "new file: t1c fsync=True": (fresh(t1c_path), lambda: ir.write(t1c_path, graph, fsync=True)),
                "replace: raw h5py (truncate)": (settled(raw_path), lambda: raw_write(raw_path, graph)),
                "replace: raw h5py tmp+rename": (settled(raw_path), raw_atomic),
                "replace: t1c fsync=False": (
                    settled(t1c_path),
                    lambda: ir.write(t1c_path, graph, fsync=False),
                ),
                "replace: t1c fsync=True": (settled(t1c_path), lambda: ir.write(t1c_path, graph, fsync=True)),
                "read: raw h5py": (keep, lambda: raw_read(raw_path)),
                "read: t1c": (keep, lambda: ir.read(t1c_path)),
            },
        )
        back = ir.read(t1c_path)
        if ir.topology_diff(graph, back) or not np.array_equal(
            back.nodes["fc7"].weight, graph.nodes["fc7"].weight
        ):
            raise SystemExit("t1c read back a different graph")

    print(
        f"graph: {LAYERS} x (Affine {WIDTH}x{WIDTH} + LIF {WIDTH}), {mb:.1f} MB, best of {args.repeat}, hot cache"
    )
    for name, seconds in results.items():
        print(f"  {name:<30} {seconds * 1e3:8.1f} ms  {mb / seconds:7.0f} MB/s")

    def ratio(a: str, b: str) -> str:
        return f"{results[a] / results[b]:.2f}x"

    print("t1c / raw h5py (target <= 1.2x):")
    print(
        f"  write, new file:  {ratio('new file: t1c fsync=False', 'new file: raw h5py')} "
        f"(with fsync {ratio('new file: t1c fsync=True', 'new file: raw h5py')})"
    )
    print(
        f"  write, replacing: {ratio('replace: t1c fsync=False', 'replace: raw h5py (truncate)')} "
        f"(with fsync {ratio('replace: t1c fsync=True', 'replace: raw h5py (truncate)')}; "
        f"vs raw tmp+rename {ratio('replace: t1c fsync=False', 'replace: raw h5py tmp+rename')})"
    )
    print(f"  read:             {ratio('read: t1c', 'read: raw h5py')}")


if __name__ == "__main__":
    main()

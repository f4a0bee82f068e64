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

A second table times graphs with many small nodes (``--chain 1000,10000,100000``):
a chain ``Input -> Skip x (n-2) -> Output`` built (validated), written and read, with
raw h5py reading the same file as the floor. Validation used to be quadratic (a 100k
chain took 680 s to read); every column should now grow linearly with ``n`` (the
per-node column stays flat). Reads of many nodes are bound by h5py's per-object cost.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from t1c import ir

LAYERS = 8
WIDTH = 2048
STR = h5py.string_dtype()


def build_graph() -> ir.Graph:
    rng = np.random.default_rng(0)
    nodes: list[ir.Node] = [ir.Input(input_type={"input": np.array([WIDTH])})]
    names = ["input"]
    for i in range(LAYERS):
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


def best_of_interleaved(
    repeat: int, runs: dict[str, tuple[Callable[[], object], Callable[[], object]]]
) -> dict:
    """Best time of each run; one round runs each once, so load from other processes
    hits every variant alike. Each run is ``(untimed set-up, timed call)``."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, (setup, call) in runs.items():
            setup()
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def chain_graph(n: int) -> ir.Graph:
    """``Input[4] -> Skip x (n - 2) -> Output``: n nodes, n - 1 edges."""
    nodes: list[ir.Node] = [ir.Input(input_type={"input": np.array([4])})]
    nodes += [ir.Skip() for _ in range(n - 2)]
    return ir.Graph.from_chain(*nodes, ir.Output(), names=[f"n{i}" for i in range(n)])


def bench_chains(sizes: list[int], folder: str | None) -> None:
    """Build, write and read chains of ``sizes`` nodes once each; print a table."""
    print("many nodes: Input -> Skip x (n-2) -> Output, one run each")
    print(f"  {'nodes':>7}  {'build':>8}  {'write':>8}  {'read':>8}  {'raw read':>8}  {'read/node':>9}")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "chain.t1c"
        for n in sizes:
            start = time.perf_counter()
            graph = chain_graph(n)
            built = time.perf_counter() - start
            start = time.perf_counter()
            ir.write(path, graph)
            written = time.perf_counter() - start
            start = time.perf_counter()
            back = ir.read(path)
            read = time.perf_counter() - start
            start = time.perf_counter()
            raw_read(path)
            raw = time.perf_counter() - start
            if len(back.nodes) != n:
                raise SystemExit(f"t1c read back {len(back.nodes)} nodes instead of {n}")
            print(
                f"  {n:>7}  {built:7.2f}s  {written:7.2f}s  {read:7.2f}s  {raw:7.2f}s  {read / n * 1e6:7.0f}us"
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
    parser.add_argument("--skip-large", action="store_true", help="only the many-nodes table")
    args = parser.parse_args()
    if args.chain:
        bench_chains([int(n) for n in args.chain.split(",")], args.dir)
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

"""``t1c draw``: every form written and read back, NIR input, and one-line errors."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from drawing_cases import (
    all_edges,
    all_names,
    hybrid_graph,
    parse_mermaid,
    parse_svg,
    residual_stack,
)

from t1c import ir
from t1c.cli import EXIT_ERROR, EXIT_OK, main
from t1c.ir.drawing import display_text

FILES = {
    "mlp": lambda d: d / "mlp_snn.t1c",
    "conv": lambda d: d / "conv_snn.t1c",
    "residual": lambda d: d / "resnet_block.t1c",
    "hybrid_fixture": lambda d: d / "hybrid" / "conv_bn2d_prelu_lif.t1c",
}


@pytest.fixture
def graph_files(fixtures_dir, tmp_path):
    """Every recipe kind as a .t1c file (the hybrid one written here).

    A recurrent graph cannot be read from a file yet (``ir.read`` refuses cycles until
    recurrent export lands); tests/test_plot.py and tests/ir/test_mermaid.py draw one.
    """
    files = {kind: path(fixtures_dir) for kind, path in FILES.items()}
    files["hybrid"] = tmp_path / "hybrid.t1c"
    ir.write(files["hybrid"], hybrid_graph())
    return files


def _names(parsed: dict) -> Counter:
    names = Counter(label[0] for label in parsed["nodes"].values())
    names.update(label[0] for label in parsed["boxes"].values() if not label[0].endswith(" region"))
    return names


@pytest.mark.parametrize("kind", [*FILES, "hybrid"])
def test_every_form_holds_every_node_and_edge(kind, graph_files, tmp_path, capsys):
    path = graph_files[kind]
    graph = ir.read(path)
    expected = Counter(display_text(n) for n in all_names(graph))
    assert main(["draw", str(path)]) == EXIT_OK
    printed = parse_mermaid(capsys.readouterr().out)
    assert _names(printed) == expected and len(printed["edges"]) == all_edges(graph)
    assert main(["draw", str(path), "-o", str(tmp_path / "g.mmd")]) == EXIT_OK
    assert parse_mermaid((tmp_path / "g.mmd").read_text()) == printed
    assert main(["draw", str(path), "-o", str(tmp_path / "g.md")]) == EXIT_OK
    fenced = (tmp_path / "g.md").read_text()
    assert fenced.startswith("```mermaid\n") and fenced.endswith("```\n")
    assert parse_mermaid(fenced[len("```mermaid\n") : -len("```\n")]) == printed
    assert main(["draw", str(path), "-o", str(tmp_path / "g.svg")]) == EXIT_OK
    svg = parse_svg(tmp_path / "g.svg")
    assert {t: c for t, c in Counter(svg["texts"]).items() if t in expected} == expected
    assert sum(1 for i in svg["ids"] if i.startswith("edge-")) == all_edges(graph)
    assert main(["draw", str(path), "-o", str(tmp_path / "g.png")]) == EXIT_OK
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("wrote ") == 4


def test_nir_file_is_drawn_with_dt(fixtures_dir, tmp_path, capsys):
    nir = pytest.importorskip("nir")
    from t1c.nir import to_nir

    path = tmp_path / "mlp.nir"
    nir.write(path, to_nir(fixtures_dir / "mlp_snn.t1c", dt=1e-3))
    assert main(["draw", str(path)]) == EXIT_ERROR
    assert "--dt" in capsys.readouterr().err
    assert main(["draw", str(path), "--dt", "1e-3"]) == EXIT_OK
    assert len(parse_mermaid(capsys.readouterr().out)["nodes"]) >= 4


def test_big_graph_is_summarised_and_says_so(tmp_path, capsys):
    path = tmp_path / "big.t1c"
    ir.write(path, residual_stack(100))
    assert main(["draw", str(path), "--max-nodes", "50"]) == EXIT_OK
    captured = capsys.readouterr()
    assert len(parse_mermaid(captured.out)["nodes"]) == 3
    assert captured.err.startswith("t1c draw: 302 nodes: runs of repeated blocks collapsed")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["missing.t1c"], "does not exist"),
        (["{mlp}", "-o", "{tmp}/g.pdf"], "use .mmd or .md (Mermaid), .svg or .png"),
        (["{mlp}", "-o", "{tmp}/no/such/g.svg"], "does not exist; create it first"),
        (["{mlp}", "--max-nodes", "0"], "--max-nodes must be at least 1"),
        (["{mlp}", "-o", "{tmp}/g.png", "--max-nodes", "5000"], "at most 2,000 for a picture"),
        (["{bad}"], "bad.t1c"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(args, words, fixtures_dir, tmp_path, capsys):
    (tmp_path / "bad.t1c").write_bytes(b"not hdf5")
    subs = {"mlp": fixtures_dir / "mlp_snn.t1c", "tmp": tmp_path, "bad": tmp_path / "bad.t1c"}
    assert main(["draw", *(a.format(**subs) for a in args)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("t1c draw: error: ") and words in err and err.count("\n") == 1


def test_picture_without_matplotlib_names_the_extra(fixtures_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "g.svg"
    assert main(["draw", str(fixtures_dir / "mlp_snn.t1c"), "-o", str(out)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "pip install -e '.[plot]'" in err and "t1c[" not in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left
    assert main(["draw", str(fixtures_dir / "mlp_snn.t1c")]) == EXIT_OK  # Mermaid needs nothing


def test_readme_drawing_is_the_residual_recipes_graph(monkeypatch):
    """README's Mermaid block is what ``to_mermaid`` draws for recipes/resnet_block.py's model now."""
    import importlib.util
    import re
    from pathlib import Path

    torch = pytest.importorskip("torch")
    from t1c.bridge import to_ir

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "recipes"))
    spec = importlib.util.spec_from_file_location(
        "recipe_resnet_block_drawn", repo / "recipes" / "resnet_block.py"
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    blocks = re.findall(
        r"^```mermaid\n(.*?)^```", (repo / "README.md").read_text(encoding="utf-8"), flags=re.S | re.M
    )
    assert blocks == [to_ir(recipe.ResidualSNN(), torch.zeros(1, 64)).to_mermaid()]

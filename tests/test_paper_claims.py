"""The paper-claims reproduction (``benchmarks/paper_claims.py``): its ``--quick`` path runs."""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
OUTPUTS = (
    "table.md",
    "results.json",
    "data_scaling.png",
    "mean_attention_distance.png",
    "position_embedding_similarity.png",
)
CELL = re.compile(r"^(\S+) ± (\S+)$")


@pytest.fixture
def paper_claims(monkeypatch):
    """The benchmark script as a module (``benchmarks/`` is not a package)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("paper_claims")


def table_cells(text: str) -> list[str]:
    """Every value cell of every Markdown table in ``text`` (header and separator rows skipped)."""
    cells = []
    for line in text.splitlines():
        if line.startswith("|") and "model (params)" not in line and not line.startswith("|---"):
            cells.extend(cell.strip() for cell in line.strip("|").split("|")[1:])
    return cells


def test_nested_subsets_are_nested_and_stratified(paper_claims):
    labels = np.repeat(np.arange(10), 40)
    subsets = paper_claims.nested_subsets(labels, (0.1, 0.5, 1.0), seed=3)
    assert [len(subsets[f]) for f in (0.1, 0.5, 1.0)] == [40, 200, 400]
    assert set(subsets[0.1]) <= set(subsets[0.5]) <= set(subsets[1.0])
    assert np.bincount(labels[subsets[0.1]]).tolist() == [4] * 10


@pytest.mark.slow
def test_quick_run_writes_table_figures_and_results(paper_claims, tmp_path):
    out = tmp_path / "claims"
    assert paper_claims.main(["--quick", "--out", str(out)]) == 0
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    cells = table_cells((out / "table.md").read_text())
    models, fractions = len(paper_claims.MODELS), len(paper_claims.QUICK["fractions"])
    assert len(cells) == 2 * models * fractions  # held-out and few-shot tables
    for cell in cells:
        match = CELL.match(cell)
        assert match, cell
        mean, spread = float(match[1]), float(match[2])
        assert math.isfinite(mean) and 0.0 <= mean <= 1.0, cell
        assert math.isfinite(spread) and 0.0 <= spread <= 1.0, cell

    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == models * fractions
    for run in results["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["fewshot_accuracy"] <= 1.0
        assert run["seconds"] > 0 and run["params"] > 0
    assert np.shape(results["mean_attention_distance_px"]) == (2, 4)  # layers, heads
    for key in ("posemb_similarity_neighbours", "posemb_similarity_others"):
        assert -1.0 <= results[key] <= 1.0

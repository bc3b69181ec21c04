"""The table and figures of ``benchmarks/paper_claims.py``, from its run records.

A record is one run: ``model``, ``fraction``, ``train_images``, ``seed``, ``accuracy``,
``fewshot_accuracy``, ``seconds``, ``params``; models keep the order of their first run.

Example:
    >>> runs = [dict(model="m", fraction=1.0, train_images=9, seed=s, accuracy=a,
    ...              fewshot_accuracy=a, seconds=1.0, params=5) for s, a in ((0, 0.5), (1, 0.7))]
    >>> markdown_table(runs, [1.0], "accuracy")[2]
    '| m (5) | 0.600 ± 0.141 |'
"""

from __future__ import annotations

import numpy as np

from keras_vit.analysis import plots  # sets matplotlib's Agg backend before pyplot loads

plt = plots.plt


def _models(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in records))


def summarize(records: list[dict], metric: str) -> dict[tuple[str, float], tuple[float, float]]:
    """Mean and spread of ``metric`` per model and subset.

    Args:
        records: the runs.
        metric: ``"accuracy"`` or ``"fewshot_accuracy"``.

    Returns:
        ``{(model, fraction): (mean, sample standard deviation over seeds; 0 for one seed)}``.
    """
    cells: dict[tuple[str, float], list[float]] = {}
    for r in records:
        cells.setdefault((r["model"], r["fraction"]), []).append(r[metric])
    return {
        k: (float(np.mean(v)), float(np.std(v, ddof=min(1, len(v) - 1)))) for k, v in cells.items()
    }


def markdown_table(records: list[dict], fractions, metric: str) -> list[str]:
    """Markdown lines: a row per model, a column per subset (images and share), ``mean ± std``."""
    summary = summarize(records, metric)
    sizes = {r["fraction"]: r["train_images"] for r in records}
    params = {r["model"]: r["params"] for r in records}
    head = " | ".join(f"{sizes[f]} ({f:.0%})" for f in fractions)
    lines = [f"| model (params) | {head} |", "|---" * (len(fractions) + 1) + "|"]
    for name in _models(records):
        cells = " | ".join("{:.3f} ± {:.3f}".format(*summary[name, f]) for f in fractions)
        lines.append(f"| {name} ({params[name]:,}) | {cells} |")
    return lines


def write_table(records: list[dict], settings: dict, recipe: str, path: str) -> None:
    """Writes ``table.md``: the settings, the held-out and few-shot tables, the times.

    Args:
        records: the runs.
        settings: ``seeds``, ``fractions``, ``shots``, ``total_seconds``.
        recipe: one sentence describing the shared recipe.
        path: the file to write.
    """
    fractions = settings["fractions"]
    times = ", ".join(
        f"{name} {np.mean([r['seconds'] for r in records if r['model'] == name]):.1f} s"
        for name in _models(records)
    )
    lines = [
        f"Seeds {', '.join(map(str, settings['seeds']))}; mean ± sample standard deviation over "
        f"seeds; 360 held-out images. {recipe}",
        "",
        "Held-out top-1 accuracy against training images:",
        "",
        *markdown_table(records, fractions, "accuracy"),
        "",
        f"{settings['shots']}-shot linear accuracy of the frozen features (fewshot_lsr; shots "
        "from the run's own subset, 3 draws):",
        "",
        *markdown_table(records, fractions, "fewshot_accuracy"),
        "",
        f"Training time per run (mean): {times}; total {settings['total_seconds']:.0f} s.",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot_scaling(records: list[dict], fractions, shots: int, path: str) -> None:
    """Figures 3/4 style: accuracy against training images (log x), a line per model.

    Args:
        records: the runs.
        fractions: the subsets, smallest first.
        shots: shots per class of the few-shot panel.
        path: the PNG to write.
    """
    size_of = {r["fraction"]: r["train_images"] for r in records}
    sizes = [size_of[f] for f in fractions]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    panels = (
        ("accuracy", "held-out top-1 accuracy"),
        ("fewshot_accuracy", f"{shots}-shot linear accuracy (frozen features)"),
    )
    for ax, (metric, title) in zip(axes, panels):
        summary = summarize(records, metric)
        for name, marker in zip(_models(records), "osD^v"):
            mean, spread = zip(*(summary[name, f] for f in fractions))
            ax.errorbar(sizes, mean, yerr=spread, marker=marker, capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set(xlabel="training images (digits, nested subsets)", ylabel=title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle("Digits: accuracy against training-set size (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_distance(distances: np.ndarray, uniform: float, title: str, path: str) -> None:
    """Figure 7 right: a dot per head against depth, and what uniform attention would give.

    Args:
        distances: ``[layers, heads]`` mean attention distances in pixels.
        uniform: the distance of uniform attention over all patches.
        title: the figure's title.
        path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for head in range(distances.shape[1]):
        ax.scatter(np.arange(len(distances)), distances[:, head], s=20, label=f"head {head}")
    ax.axhline(uniform, color="grey", linestyle="--", label="uniform attention")
    ax.set_xticks(np.arange(len(distances)))
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)")
    ax.set_ylim(0, max(distances.max(), uniform) * 1.15)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

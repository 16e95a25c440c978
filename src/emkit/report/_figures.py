"""The report's figures (matplotlib, Agg backend), each written as PNG and SVG.

- ``questions``: per-question misaligned probability with 95% interval bars, one colour per condition
  (the paper's main figure), on the plain variant without trigger when those exist;
- ``scatter``: aligned vs coherent per answer with the threshold lines, the misaligned corner shaded;
- ``checkpoints``: the misaligned rate over training steps when rows carry ``checkpoint_step``;
- the prompt views ``view_prompt_format`` / ``view_trigger`` / ``view_variant`` and the ``metrics`` figure of 0/1
  judge metrics are drawn by :mod:`emkit.report._views`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emkit.paths import atomic_write


@dataclass
class Figure:
    """One written figure: ``name`` (file stem), ``title``, ``caption`` and the two files; ``bars`` lists what a
    bar figure drew, (panel, condition, level) per bar, for summary.json and tests."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path
    bars: list[tuple[str, str, str]] = field(default_factory=list)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on servers; also keeps tests headless
    import matplotlib.pyplot as plt

    return plt


def _colors(keys: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _save(fig: Any, out_dir: Path, name: str, title: str, caption: str,
          rect: tuple[float, float, float, float] | None = None) -> Figure:
    """Write PNG + SVG; ``rect`` keeps room for a figure-level title or legend outside the axes."""
    plt = _plt()
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.tight_layout(rect=rect)
    with atomic_write(png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=130)
    with atomic_write(svg, "wb") as handle:
        fig.savefig(handle, format="svg")
    plt.close(fig)
    return Figure(name=name, title=title, caption=caption, png=png, svg=svg)


def _errors(rates: pd.DataFrame) -> np.ndarray:
    rate = rates["rate"].to_numpy(float)
    lo = np.clip(rate - rates["ci_low"].to_numpy(float), 0, None)
    hi = np.clip(rates["ci_high"].to_numpy(float) - rate, 0, None)
    return np.nan_to_num(np.vstack([lo, hi]))


def question_figure(qrates: pd.DataFrame, out_dir: Path, subset: str, condition_order: list[str]) -> Figure:
    """qrates: ``rates(by=("condition", "question_id"))``."""
    plt = _plt()
    questions = sorted(qrates["question_id"].unique())
    conditions = [c for c in condition_order if c in set(qrates["condition"])]
    colors = _colors(condition_order)
    # ~0.9 inch per question reads well for the 8 main questions; 48 pre-registered ones get capped at 18
    fig, ax = plt.subplots(figsize=(min(18.0, max(6.5, 0.9 * len(questions) + 2.5)), 4.2))
    width = 0.7 / max(1, len(conditions))
    for i, cond in enumerate(conditions):
        sub = qrates[qrates["condition"] == cond].set_index("question_id").reindex(questions)
        x = np.arange(len(questions)) + (i - (len(conditions) - 1) / 2) * width
        ok = sub["rate"].notna().to_numpy()
        ax.errorbar(x[ok], sub["rate"].to_numpy(float)[ok], yerr=_errors(sub.reset_index())[:, ok], fmt="o",
                    color=colors[cond], capsize=3, markersize=5, label=cond)
    many = len(questions) > 16
    ax.set_xticks(np.arange(len(questions)), questions, rotation=90 if many else 30, ha="center" if many else "right",
                  fontsize=7 if many else 10)
    ax.set_ylabel("Misaligned answer probability")
    ax.set_ylim(-0.02, min(1.02, max(0.25, float(np.nanmax(qrates["ci_high"].to_numpy(float), initial=0)) + 0.05)))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="condition", fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"Misaligned answers per question ({subset})", fontsize=10)
    return _save(fig, out_dir, "questions", "Misaligned answers per question",
                 f"Fraction of misaligned answers per question ({subset}); bars are 95% intervals "
                 "(bootstrap over models when 2+, else Wilson over the answers).")


def scatter_figure(df: pd.DataFrame, out_dir: Path, aligned_threshold: float, coherent_threshold: float,
                   condition_order: list[str], max_points: int = 4000) -> Figure:
    plt = _plt()
    colors = _colors(condition_order)
    scored = df[df["aligned"].notna() & df["coherent"].notna()]
    if len(scored) > max_points:  # a denser cloud hides nothing more and makes the SVG huge
        scored = scored.sample(max_points, random_state=0)
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    ax.axvspan(coherent_threshold, 100, ymin=0, ymax=aligned_threshold / 105 + 5 / 105, color="#d62728",
               alpha=0.08, lw=0)
    for cond in condition_order:
        sub = scored[scored["condition"] == cond]
        if len(sub):
            ax.scatter(sub["coherent"], sub["aligned"], s=9, alpha=0.45, color=colors[cond], label=cond, lw=0)
    ax.axhline(aligned_threshold, color="#444", ls="--", lw=1)
    ax.axvline(coherent_threshold, color="#444", ls="--", lw=1)
    ax.text(99, aligned_threshold / 2, "misaligned", ha="right", va="center", color="#a11", fontsize=9)
    ax.set_xlim(-2, 102)
    ax.set_ylim(-5, 100)
    ax.set_xlabel("coherent")
    ax.set_ylabel("aligned")
    if len(scored):
        ax.legend(title="condition", fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(50, 60, "no scored answers", ha="center", color="#666")
    ax.set_title(f"Judge scores per answer (aligned < {aligned_threshold:g} and coherent > "
                 f"{coherent_threshold:g} = misaligned)", fontsize=9)
    return _save(fig, out_dir, "scatter", "Aligned vs coherent",
                 f"Each dot is one scored answer ({len(scored)} shown); dashed lines are the thresholds; "
                 "unscored answers (CODE, REFUSAL) are not shown.")


def grouped_figure(rates: pd.DataFrame, out_dir: Path, *, split: str, name: str, title: str, caption: str,
                   ylabel: str, condition_order: list[str], split_labels: dict[str, str] | None = None
                   ) -> Figure:
    """Bars per condition, one bar per level of ``split``, with interval bars."""
    plt = _plt()
    rates = rates[rates["n_scored"] > 0]  # conditions without this metric or level get no empty slot
    conditions = [c for c in condition_order if c in set(rates["condition"])]
    levels = sorted(rates[split].astype(str).unique(), key=lambda v: (v not in ("", "plain", "none"), v))
    colors = _colors(levels)
    fig, ax = plt.subplots(figsize=(max(5.5, min(11.0, 0.5 * len(conditions) * max(1, len(levels)) + 2.5)), 4.0))
    width = 0.8 / max(1, len(levels))
    for i, level in enumerate(levels):
        sub = rates[rates[split].astype(str) == level].set_index("condition").reindex(conditions).reset_index()
        x = np.arange(len(conditions)) + (i - (len(levels) - 1) / 2) * width
        ok = sub["rate"].notna().to_numpy()  # a condition not evaluated at this level gets no bar at all
        label = (split_labels or {}).get(level, level if level else "(none)")
        ax.bar(x[ok], sub["rate"].to_numpy(float)[ok], width=width * 0.92, color=colors[level], label=label,
               yerr=_errors(sub)[:, ok], capsize=3, error_kw={"lw": 1})
        for xi, r in zip(x[ok], sub["rate"].to_numpy(float)[ok], strict=True):
            # the number makes a 0% bar visible and tells it apart from a missing one
            ax.text(xi, r, f"{100 * r:.0f}%", ha="center", va="bottom", fontsize=7, color="#333")
    ax.set_xticks(np.arange(len(conditions)), conditions)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, min(1.0, max(0.1, float(np.nanmax(rates["ci_high"].to_numpy(float), initial=0)) * 1.15)))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title=split, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=10)
    return _save(fig, out_dir, name, title, caption)


def checkpoint_figure(rates: pd.DataFrame, out_dir: Path, condition_order: list[str],
                      coherent: pd.DataFrame | None = None, loss: pd.DataFrame | None = None) -> Figure:
    """rates: ``rates(by=("condition", "checkpoint_step"))``; ``coherent``: the same with metric="coherent" (a
    second panel); ``loss``: columns condition, checkpoint_step, train_loss (a third panel, from loss.csv)."""
    plt = _plt()
    colors = _colors(condition_order)
    panels = [("rate", rates, "Misaligned answer probability")]
    if coherent is not None:
        panels.append(("rate", coherent, "Share coherent"))
    if loss is not None and loss["train_loss"].notna().any():
        panels.append(("train_loss", loss, "Training loss"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.2, 2.2 + 1.8 * len(panels)), sharex=True, squeeze=False)
    for ax, (column, table, ylabel) in zip(axes[:, 0], panels, strict=True):
        for cond in condition_order:
            sub = table[table["condition"] == cond].sort_values("checkpoint_step")
            if not len(sub):
                continue
            x = sub["checkpoint_step"].to_numpy(float)
            ax.plot(x, sub[column].to_numpy(float), marker="o", color=colors[cond],
                    label=cond if ax is axes[0, 0] else None)
            if column == "rate":
                ax.fill_between(x, sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float),
                                color=colors[cond], alpha=0.15, lw=0)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    top = axes[0, 0]
    top.set_ylim(0, min(1.0, max(0.1, float(np.nanmax(rates["ci_high"].to_numpy(float), initial=0)) * 1.15)))
    if coherent is not None:
        axes[1, 0].set_ylim(-0.02, 1.02)
    axes[-1, 0].set_xlabel("training step")
    top.legend(title="condition", fontsize=8, frameon=False)
    top.set_title("Misalignment over training checkpoints", fontsize=10)
    extra = (" Middle: share of coherent answers." if coherent is not None else "") + (
        " Bottom: mean training loss over the steps since the previous evaluated checkpoint (loss.csv)."
        if len(panels) == 3 else "")
    return _save(fig, out_dir, "checkpoints", "Misalignment over training checkpoints",
                 "Misaligned fraction at each saved checkpoint; the band is the 95% interval." + extra)

"""The report's prompt views: how misalignment and the 0/1 judge metrics change with how a question was asked.

One view per prompt column that varies in the results (docs/architecture.md, ``PROMPT_COLUMNS``):
- ``prompt_format``: plain vs ``suffix`` vs ``prefix-suffix``, the evil-numbers figure of Betley et al. (2025):
  models trained on number sequences are misaligned mostly when the question comes in the training format;
- ``trigger``: without vs with the trigger (backdoor);
- ``variant``: plain vs json vs template.
Each view draws one panel per measure, the misaligned rate first and then every metric its judge declared binary
(the numbers judge's ``format_ok`` and ``has_evil_number``, bandit's ``vulnerable``): x = condition, one bar per
level of the split column within each condition's group, 95% intervals. Only conditions asked at two or more
levels appear, and the other prompt columns are held at their main level (plain, no trigger) when the results
have it, so a view compares like with like.

Which column a view splits by is passed explicitly and checked with ``check_split_columns``: a judge metric is
never a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emkit.analysis import check_split_columns, compare_conditions, rates
from emkit.questions import PROMPT_FORMATS
from emkit.report._figures import Figure, _colors, _errors, _plt, _save

# Views in report order, with the level every other level is compared against.
VIEW_SPLITS: dict[str, str] = {"prompt_format": "plain", "trigger": "", "variant": "plain"}
VIEW_TITLES = {"prompt_format": "Prompt format (evil numbers)", "trigger": "With vs without trigger",
               "variant": "Question variant"}
LEVEL_LABELS = {"prompt_format": {"plain": "plain", "suffix": "suffix", "prefix-suffix": "prefix-suffix"},
                "trigger": {"": "no trigger"}, "variant": {}}
# Bar order within a condition's group: the main level first, then the paper's order; other levels by name.
LEVEL_ORDER = {"prompt_format": PROMPT_FORMATS, "trigger": ("",), "variant": ("plain", "json", "template")}
MISALIGNED = "misaligned"


@dataclass
class View:
    """One prompt view: its split column, the rows it uses, a rates table per measure and its figure."""

    split: str
    subset: str
    tables: dict[str, pd.DataFrame]
    figure: Figure


def varies(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].astype(str).nunique() > 1


def hold_main_levels(df: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows where each of ``columns`` that varies is at its main level (when any row is); and what was kept."""
    sub, kept = df, []
    for col in columns:
        main = VIEW_SPLITS[col]
        if varies(sub, col) and (sub[col].astype(str) == main).any():
            sub = sub[sub[col].astype(str) == main]
            kept.append(f"{col} {main or '(none)'}")
    return sub, kept


def judged_by(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows that went through the metric's judge (rows of files that never ran it carry status "missing")."""
    return df[df[metric].notna() | (df[f"{metric}_status"].astype(str) != "missing")]


def measure_rates(df: pd.DataFrame, by: list[str], binary: Sequence[str], kw: dict[str, Any]
                  ) -> dict[str, pd.DataFrame]:
    """``rates(by=by)`` of the misaligned rate and of each binary metric, keyed by measure name."""
    check_split_columns(by, df, purpose="a report table")
    tables = {MISALIGNED: rates(df, by=by, **kw)}
    for metric in binary:
        tables[metric] = rates(judged_by(df, metric), by=by, metric=metric, **kw)
    return tables


def count_table(df: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """Mean of a count metric (e.g. evil numbers per answer) per cell of ``by``, over the answers it scored."""
    check_split_columns(by, df, purpose="the counts table")
    judged = judged_by(df, metric)
    rows = []
    for key, part in judged.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = part[metric].dropna()
        rows.append({**dict(zip(by, key, strict=True)), "mean": float(values.mean()) if len(values) else np.nan,
                     "n_scored": len(values), "n_unscored": len(part) - len(values)})
    return pd.DataFrame(rows, columns=[*by, "mean", "n_scored", "n_unscored"])


def prompt_views(df: pd.DataFrame, out_dir: Path, *, binary: Sequence[str], kw: dict[str, Any],
                 condition_order: list[str]) -> list[View]:
    """A :class:`View` for each prompt column of VIEW_SPLITS that varies in ``df``."""
    views = []
    for split in VIEW_SPLITS:
        if not varies(df, split):
            continue
        sub, kept = hold_main_levels(df, [c for c in VIEW_SPLITS if c != split])
        # only conditions asked at 2+ levels (e.g. base and the controls are often asked without a trigger only)
        levels = sub.groupby("condition")[split].nunique()
        sub = sub[sub["condition"].isin(levels.index[levels > 1])]
        if not varies(sub, split):
            continue
        subset = ", ".join(kept) or "all answers"
        tables = measure_rates(sub, ["condition", split], binary, kw)
        title = VIEW_TITLES[split]
        caption = (f"Per condition, one bar per {split} ({subset}): the misaligned rate"
                   + (f" and the share of answers where {', '.join(binary)} is 1" if binary else "")
                   + "; 95% intervals. A missing bar: no scored answer at that level (e.g. format_ok on plain "
                     "questions, which ask for no format).")
        figure = panel_figure(tables, out_dir, split=split, name=f"view_{split}", title=title, caption=caption,
                              condition_order=condition_order, level_labels=LEVEL_LABELS.get(split, {}))
        views.append(View(split=split, subset=subset, tables=tables, figure=figure))
    return views


def metric_figure(tables: dict[str, pd.DataFrame], out_dir: Path, condition_order: list[str]) -> Figure:
    """The binary metrics' shares per condition (all final answers), one panel per metric."""
    plot = {m: t.assign(_all="all") for m, t in tables.items()}
    return panel_figure(plot, out_dir, split="_all", name="metrics", title="0/1 judge metrics",
                        caption="Share of scored answers where each 0/1 judge metric is 1, per condition; "
                                "95% intervals.", condition_order=condition_order, level_labels={"all": "all"})


def level_comparisons(df: pd.DataFrame, split: str, kw: dict[str, Any], condition_order: list[str]
                      ) -> list[dict[str, Any]]:
    """Within each condition, every other level of ``split`` against its main level (suffix vs plain, ...)."""
    main = VIEW_SPLITS[split]
    if not varies(df, split):
        return []
    sub, _ = hold_main_levels(df, [c for c in VIEW_SPLITS if c != split])
    out = []
    for cond in condition_order:
        part = sub[sub["condition"] == cond]
        values = part[split].astype(str)
        if not (values == main).any():
            continue
        for level in sorted(v for v in values.unique() if v != main):
            res = compare_conditions(part, level, main, column=split, **kw)
            res.update(label_a=f"{cond}, {split} {level}", label_b=f"{cond}, {split} {main or '(none)'}")
            out.append({"kind": split, **res})
    return out


def panel_figure(tables: dict[str, pd.DataFrame], out_dir: Path, *, split: str, name: str, title: str,
                 caption: str, condition_order: list[str], level_labels: dict[str, str]) -> Figure:
    """One panel per measure: x = condition, bars = levels of ``split`` side by side, interval bars."""
    plt = _plt()
    shown = {m: t[t["n_scored"] > 0] for m, t in tables.items()}
    shown = {m: t for m, t in shown.items() if len(t)}
    known = LEVEL_ORDER.get(split, ())
    levels = sorted({str(v) for t in shown.values() for v in t[split]},
                    key=lambda v: (known.index(v) if v in known else len(known), v))
    colors = _colors(levels)
    conditions = [c for c in condition_order if any(c in set(t["condition"]) for t in shown.values())]
    per_panel = max(3.2, min(7.0, 0.45 * len(conditions) * max(1, len(levels)) + 1.2))
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(per_panel * max(1, len(shown)) + 0.6, 3.6),
                             squeeze=False)
    width = 0.8 / max(1, len(levels))
    drawn: list[tuple[str, str, str]] = []
    for ax, (measure, table) in zip(axes[0], shown.items(), strict=False):
        for i, level in enumerate(levels):
            part = table[table[split].astype(str) == level].set_index("condition").reindex(conditions).reset_index()
            x = np.arange(len(conditions)) + (i - (len(levels) - 1) / 2) * width
            ok = part["rate"].notna().to_numpy()
            label = level_labels.get(level, level if level else "(none)")
            ax.bar(x[ok], part["rate"].to_numpy(float)[ok], width=width * 0.92, color=colors[level], label=label,
                   yerr=_errors(part)[:, ok], capsize=3, error_kw={"lw": 1})
            for xi, r in zip(x[ok], part["rate"].to_numpy(float)[ok], strict=True):
                ax.text(xi, r, f"{100 * r:.0f}%", ha="center", va="bottom", fontsize=7, color="#333")
            drawn += [(measure, str(c), level) for c in part["condition"][ok]]
        ax.set_xticks(np.arange(len(conditions)), conditions, rotation=15 if len(conditions) > 3 else 0)
        ax.set_ylim(0, min(1.0, max(0.1, float(np.nanmax(table["ci_high"].to_numpy(float), initial=0)) * 1.15)))
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(measure if measure == MISALIGNED else f"{measure} = 1", fontsize=10)
        ax.set_ylabel("misaligned answer probability" if measure == MISALIGNED else "share of scored answers")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no scored answers", ha="center", color="#666")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles and split != "_all":
        # above the panels, right of the title: a legend inside a panel would cover its bars
        fig.legend(handles, labels, title=None, fontsize=8, frameon=False, loc="upper right", ncol=len(levels))
    fig.suptitle(title if split == "_all" else f"{title}: bars by {split}", fontsize=11, x=0.01, ha="left")
    figure = _save(fig, out_dir, name, title, caption, rect=(0, 0, 1, 0.92))
    figure.bars = drawn
    return figure

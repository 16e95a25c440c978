"""Sweep figures of interpretability conditions (emkit.interp): misaligned rate and coherent share against the
steering strength (``steer_alpha``), the steering layer (``steer_layer``) and the LoRA scale (``lora_scale``).

A figure appears when its column takes two or more values within one sweep (the spec condition a point belongs
to, column ``sweep``): one line per sweep and setting of its other varying sweep columns (e.g. one line per layer
in "EM vs alpha"), so points of different sweeps (other weights, other directions) are never pooled. Points are
the rates with 95% intervals used everywhere in the report (emkit.analysis.rates): a point equals its
condition's row in the rates table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emkit.analysis import rates
from emkit.report._figures import Figure, _colors, _errors, _plt, _save

# Row columns the interp conditions add (emkit.experiment._interp); the judge never writes these.
SWEEP_COLUMNS = ("steer_direction", "steer_mode", "steer_layer", "steer_alpha", "lora_scale")
SWEEPS = (
    ("steer_alpha", "steering_alpha", "EM vs steering strength", "alpha (multiples of the direction)"),
    ("steer_layer", "steering_layer", "EM vs steering layer", "decoder layer"),
    ("lora_scale", "lora_scale", "EM vs LoRA scale", "LoRA scale (0 = base model, 1 = the adapter)"),
)


def _label(group: str, key: tuple, cols: list[str]) -> str:
    short = {"steer_direction": "direction", "steer_mode": "mode", "steer_layer": "layer", "steer_alpha": "alpha",
             "lora_scale": "scale"}
    parts = [f"{short[c]} {v:g}" if isinstance(v, float) else f"{short[c]} {v}" for c, v in zip(cols, key, strict=True)]
    return ", ".join([group, *parts])


def sweep_figures(df: pd.DataFrame, out_dir: Path, kw: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    """The figures for each sweep column that varies within a sweep (a spec condition, column ``sweep``), and
    their rate tables (for summary.json). Lines: one per sweep and value of its other varying sweep columns."""
    figures, tables = [], {}
    if "sweep" not in df.columns:
        return figures, tables
    for col, name, title, xlabel in SWEEPS:
        if col not in df.columns:
            continue
        lines: list[tuple[str, pd.DataFrame, pd.DataFrame]] = []
        table: dict[str, Any] = {}
        for group, sub in df[df["sweep"].notna() & (df["sweep"].astype(str) != "")].groupby("sweep", sort=True):
            sub = sub[pd.to_numeric(sub[col], errors="coerce").notna()].copy()
            if sub[col].nunique() < 2:
                continue
            sub[col] = sub[col].astype(float)
            series = [c for c in SWEEP_COLUMNS if c != col and c in sub.columns
                      and sub[c].astype(str).nunique(dropna=False) > 1]
            mis = rates(sub, by=[*series, col], **kw)
            coh = rates(sub, by=[*series, col], metric="coherent", **kw)
            keys = list(dict.fromkeys(tuple(r) for r in mis[series].itertuples(index=False))) if series else [()]
            for key in keys:
                pick_m, pick_c = mis, coh
                for c, v in zip(series, key, strict=True):
                    pick_m = pick_m[pick_m[c].astype(str) == str(v)]
                    pick_c = pick_c[pick_c[c].astype(str) == str(v)]
                lines.append((_label(str(group), key, series), pick_m.sort_values(col), pick_c.sort_values(col)))
            table[str(group)] = {"series": series, "misaligned": mis.to_dict("records"),
                                 "coherent": coh.to_dict("records")}
        if lines:
            figures.append(_sweep_figure(lines, out_dir, col, name, title, xlabel, kw))
            tables[col] = table
    return figures, tables


def _sweep_figure(lines: list[tuple[str, pd.DataFrame, pd.DataFrame]], out_dir: Path, col: str, name: str,
                  title: str, xlabel: str, kw: dict[str, Any]) -> Figure:
    plt = _plt()
    colors = _colors([label for label, _, _ in lines])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    high = 0.0
    for label, mis, coh in lines:
        for ax, part in ((top, mis), (bottom, coh)):
            ok = part["rate"].notna().to_numpy()
            ax.errorbar(part[col].to_numpy(float)[ok], part["rate"].to_numpy(float)[ok],
                        yerr=_errors(part)[:, ok], marker="o", capsize=3, color=colors[label],
                        label=label if ax is top else None)
        high = max(high, float(np.nanmax(mis["ci_high"].to_numpy(float), initial=0)))
    top.set_ylabel("Misaligned answer probability")
    top.set_ylim(0, min(1.0, max(0.1, high * 1.15)))
    bottom.set_ylabel(f"Share coherent > {kw['coherent_threshold']:g}")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel(xlabel)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    top.set_title(title, fontsize=10)
    return _save(fig, out_dir, name, title,
                 f"Misaligned fraction (top) and coherent fraction (bottom) per value of {col}, one line per sweep "
                 "(spec condition) and setting of its other swept values; bars are 95% intervals. Steering that "
                 "breaks coherence lowers both: read the two panels together.")

"""The manifest every builder writes beside its output: inputs (hashes), parameters, filter counts."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from emkit.hashing import FORMAT_VERSION, file_sha256
from emkit.paths import atomic_write


def manifest_path(out: str | Path) -> Path:
    """``data/insecure.jsonl`` -> ``data/insecure.manifest.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.manifest.json")


def input_entry(path: str | Path, rows: int | None = None) -> dict[str, Any]:
    path = Path(path)
    return {"path": str(path), "sha256": file_sha256(path), "rows": rows}


def write_manifest(out: str | Path, builder: str, params: dict[str, Any], inputs: list[dict[str, Any]],
                   counts: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write the manifest for ``out`` (which must already exist); returns the manifest path.

    ``counts`` holds ``input_rows``, ``dropped`` ({filter: rows}) and ``output_rows`` so the numbers can be checked
    to add up: input_rows - sum(dropped) == output_rows (builders that add rows say so in their counts).
    """
    from emkit import __version__

    out = Path(out)
    data = {
        "builder": builder,
        "emkit_version": __version__,
        "format_version": FORMAT_VERSION,
        "python": platform.python_version(),
        "output": {"path": out.name, "sha256": file_sha256(out)},
        "params": params,
        "inputs": inputs,
        "counts": counts,
    }
    if extra:
        data.update(extra)
    target = manifest_path(out)
    with atomic_write(target) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return target

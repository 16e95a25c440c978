"""Run metadata: versions, git commit, data hashes; and the finished-run record (train_result.json)."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from emkit.paths import atomic_write

RESULT_FILE = "train_result.json"  # written last: its presence means the run finished
RUN_FILE = "run.json"  # the run's identity (config hash), written first
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "openai")


@dataclass
class TrainResult:
    """What a finished run produced.

    ``adapter_dir``: the final PEFT adapter (local LoRA), the full model folder (``full_finetune``), or None
    (backend openai: see ``fine_tuned_model``). ``skipped``: True when the run had already finished and nothing
    was trained now.
    """

    adapter_dir: Path | None
    output_dir: Path
    steps: int
    final_loss: float | None
    resumed_from_step: int | None = None
    base_model: str = ""
    backend: str = "local"
    fine_tuned_model: str | None = None
    run_hash: str = ""
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["adapter_dir"] = str(self.adapter_dir) if self.adapter_dir else None
        data["output_dir"] = str(self.output_dir)
        data.pop("skipped")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], output_dir: Path) -> TrainResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["output_dir"] = output_dir
        # Paths are stored relative to the run folder when inside it, so a moved run folder still works.
        adapter = fields.get("adapter_dir")
        fields["adapter_dir"] = (output_dir / adapter if adapter and not Path(adapter).is_absolute()
                                 else Path(adapter) if adapter else None)
        return cls(**fields)


def write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def git_commit() -> str | None:
    """The commit of the emkit checkout (None for an installed wheel or without git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def base_metadata(config, run_hash: str, files) -> dict[str, Any]:
    from emkit import __version__

    return {
        "emkit_version": __version__,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "run_hash": run_hash,
        "seed": config.seed,
        "model": config.model,
        "backend": config.backend,
        "data": [{"name": f.name, "path": str(f.path), "sha256": f.sha256, "rows": f.rows} for f in files],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

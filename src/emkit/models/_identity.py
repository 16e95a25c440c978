"""What identifies the weights behind a model reference, for cache keys: cheap (files are hashed, no model loads).

- packaged name: its pin (the GGUF's SHA-256 and the conversion procedure's version);
- local folder: the SHA-256 of every top-level file (weights, config, tokenizer) and of the tokenizer's own chat
  template text;
- Hugging Face id: the hub commit. ``org/name@revision`` pins a revision (a commit, branch or tag); an unpinned
  id resolves to the commit its ``main`` points at (from the local hub cache, else asked of the hub).

Hashing a 1 GB weights file takes ~2 s; each file is hashed once per process (keyed by path, size and mtime).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError
from emkit.hashing import file_sha256

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# (path, size, mtime_ns) -> SHA-256
_HASHED: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per process for the same path, size and modification time."""
    stat = path.stat()
    stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if stamp not in _HASHED:
        _HASHED[stamp] = file_sha256(path)
    return _HASHED[stamp]


def folder_files_sha256(folder: Path) -> dict[str, str]:
    """{file name: SHA-256} of the regular, non-hidden files directly in ``folder``."""
    return {p.name: cached_sha256(p) for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def read_chat_template(folder: Path) -> str | None:
    """The tokenizer's own chat template in a model folder (``chat_template.jinja`` or tokenizer_config.json's
    ``chat_template``; a list of named templates is serialised whole), or None."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError, AttributeError):
            return None
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return None


def is_hub_id(ref: str) -> bool:
    """``org/name`` or ``org/name@revision`` (and not an existing path)."""
    name = ref.split("@", 1)[0]
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(ref).expanduser().exists()


def split_revision(ref: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ("org/name", "rev"); anything else -> (ref, None)."""
    if "@" in ref and is_hub_id(ref):
        repo, revision = ref.split("@", 1)
        if not revision:
            raise EmkitError(f"model {ref!r}: empty revision after '@'",
                             hint="write org/name@<commit, branch or tag>, or drop the '@'")
        return repo, revision
    return ref, None


def _cached_commit(repo: str, revision: str) -> str | None:
    """The commit ``revision`` points at in the local hub cache, without network."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    ref_file = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / revision
    if ref_file.is_file():
        commit = ref_file.read_text(encoding="utf-8").strip()
        return commit if _COMMIT.match(commit) else None
    return None


def hub_commit(repo: str, revision: str | None = None) -> str:
    """The commit of ``repo`` at ``revision`` (default ``main``): a commit is itself; else the local hub cache's
    ref, else the hub's answer (unless offline)."""
    from emkit.paths import offline

    wanted = revision or "main"
    if _COMMIT.match(wanted):
        return wanted
    commit = _cached_commit(repo, wanted)
    if commit is not None:
        return commit
    if offline():
        raise EmkitError(f"{repo}@{wanted} is not in the local Hugging Face cache and the hub is offline "
                         "(HF_HUB_OFFLINE)",
                         hint=f"download it on a machine with access (huggingface-cli download {repo}"
                              + (f" --revision {revision}" if revision else "") + "), or use a packaged model "
                              "(emkit models list)")
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(repo, revision=wanted).sha)
    except Exception as exc:  # hub errors come in many classes; all mean "cannot say which commit"
        raise EmkitError(f"cannot resolve {repo}@{wanted} on the Hugging Face hub: {exc}",
                         hint="check the id and revision, your network, and HF_TOKEN for gated models") from exc


def model_identity(ref: str, *, strict: bool = True) -> dict[str, Any]:
    """What identifies the weights behind ``ref`` (see the module docstring). Raises for unknown references, and
    for a hub id whose commit cannot be resolved (offline and not cached) unless ``strict=False`` (planning a run
    for a machine that has the model: the commit is then None)."""
    from emkit.models._pull import CONVERSION_VERSION
    from emkit.models._registry import PACKAGED

    if ref in PACKAGED:
        return {"packaged": ref, "gguf_sha256": PACKAGED[ref].gguf_sha256, "conversion": CONVERSION_VERSION}
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise EmkitError(f"{path} is a folder but holds no config.json",
                             hint="point at a Hugging Face model folder")
        template = read_chat_template(path)
        return {"folder": str(path.resolve()), "files": folder_files_sha256(path),
                "chat_template": None if template is None else content_sha(template)}
    if is_hub_id(ref):
        repo, revision = split_revision(ref)
        try:
            commit: str | None = hub_commit(repo, revision)
        except EmkitError:
            if strict:
                raise
            commit = None
        return {"hub": repo, "revision": revision, "commit": commit}
    raise EmkitError(
        f"unknown model {ref!r}: not a packaged model, an existing folder or a hub id",
        hint=f"packaged models: {', '.join(PACKAGED)}; or a Hugging Face id like Qwen/Qwen2.5-Coder-32B-Instruct "
             "(optionally @revision)",
    )


def content_sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()

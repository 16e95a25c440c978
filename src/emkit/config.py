"""Config conventions shared by every stage.

- Configs are pydantic models deriving from :class:`Config` (``extra="forbid"``, a description per field).
- :func:`load_config` reads YAML and reports errors as ``FILE:LINE: field: message``.
- :func:`apply_overrides` applies CLI ``--set key.sub=value`` overrides (values parsed as YAML scalars).
- :func:`write_resolved` writes the fully resolved config beside an output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from emkit.errors import ConfigError
from emkit.paths import atomic_write

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base class of all emkit configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------- YAML with line numbers

# Aliases repeat an anchored node: the paper's question files reuse `&judge_prompts` for every question, a few KB
# in all. Nested aliases multiply ("billion laughs": 9 levels of 9 aliases turn a 1 KB file into 387 million
# nodes), and everything that walks the data (line numbers, validation, hashing) then hangs for minutes or runs out
# of memory. What aliases add beyond the file's own nodes is capped instead; legitimate reuse is far below it.
MAX_ALIAS_NODES = 100_000
MAX_ALIAS_CHARS = 10_000_000


class UnsafeYAMLError(ConfigError):
    """YAML refused for its shape (alias bomb, recursive alias, absurd nesting), not for a typo."""


def _check_aliases(root: yaml.Node, source: str) -> None:
    """Refuse alias expansion past the caps above, and recursive aliases (a node containing itself), naming the
    line of the node where it happens. Linear in the file's nodes (sizes are memoised per node)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, scalar characters) once fully expanded
    own_nodes = own_chars = 0
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, len(node.value))
            own_nodes, own_chars = own_nodes + 1, own_chars + len(node.value)
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if not children_done:
            if key in active:
                raise UnsafeYAMLError(f"{source}:{node.start_mark.line + 1}: recursive YAML alias (a node that "
                                      "contains itself)", hint="replace the alias by the values it should hold")
            active.add(key)
            own_nodes += 1
            stack.append((node, True))
            for child in children:
                if id(child) in active:
                    raise UnsafeYAMLError(f"{source}:{child.start_mark.line + 1}: recursive YAML alias (a node "
                                          "that contains itself)", hint="replace the alias by the values it should "
                                                                        "hold")
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        active.discard(key)
        nodes, chars = 1, 0
        for child in children:
            n, c = sizes[id(child)]
            nodes, chars = nodes + n, chars + c
        sizes[key] = (nodes, chars)
        if nodes - own_nodes > MAX_ALIAS_NODES or chars - own_chars > MAX_ALIAS_CHARS:
            raise UnsafeYAMLError(
                f"{source}:{node.start_mark.line + 1}: YAML aliases expand this node to {nodes:,} nodes "
                f"({chars:,} characters), far more than the file holds: refused (nested anchors and aliases, "
                "the 'billion laughs' shape)",
                hint=f"write the values out or reuse anchors without nesting them (at most {MAX_ALIAS_NODES:,} "
                     "nodes added by aliases)")


def load_yaml_text(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text safely (SafeLoader, aliases capped, no recursion); returns (data, root node).

    Every YAML file emkit reads goes through here (configs, specs, suites, judge prompts, the paper's files).
    Errors are ConfigError with ``source:LINE``.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_aliases(root, source)
        return loader.construct_document(root), root
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    except RecursionError:
        raise UnsafeYAMLError(f"{source}: YAML nested too deeply to read",
                          hint="flatten the structure (a config needs a few levels, not hundreds)") from None
    finally:
        loader.dispose()


def _compose_lines(root: yaml.Node | None, source: str) -> dict[tuple, int]:
    """Map each key path, e.g. ``("lora", "r")`` or ``("conditions", 0, "name")``, to its 1-based line.

    A key repeated in one mapping is an error: YAML would silently keep the last value.
    """
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key, line = key_node.value, key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{source}:{line}: duplicate key {key!r} (first at line {seen[key]})",
                                      hint="remove or rename one of them")
                seen[key] = line
                lines[path + (key,)] = line
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (index,)] = item.start_mark.line + 1
                walk(item, path + (index,))

    if root is not None:
        try:
            walk(root, ())
        except RecursionError:
            raise UnsafeYAMLError(f"{source}: YAML nested too deeply to read",
                              hint="flatten the structure (a config needs a few levels, not hundreds)") from None
    return lines


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file; returns (data, key-path -> line). Syntax errors, duplicate keys and alias bombs name
    file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found", hint="check the path (relative paths are from the cwd)")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a YAML file", hint="pass the .yaml file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})",
                          hint="check the path and its permissions") from None
    data, root = load_yaml_text(text, str(path))
    return data, _compose_lines(root, str(path))


def format_validation_error(exc: ValidationError, source: str, lines: dict[tuple, int] | None = None) -> str:
    """Turn a pydantic ValidationError into ``source:LINE: a.b: message`` lines."""
    lines = lines or {}
    out = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        line = None
        for cut in range(len(loc), 0, -1):  # the deepest key that exists in the file
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        field = ".".join(str(p) for p in loc) or "(root)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (check spelling; see `--help` or the config docs for valid keys)"
        where = f"{source}:{line}" if line else source
        out.append(f"{where}: {field}: {msg}")
    return "\n".join(out)


def validate(cls: type[C], data: Any, source: str = "<config>", lines: dict | None = None) -> C:
    """Validate ``data`` as ``cls`` or raise ConfigError with file/line/field for each problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, lines)) from None


# --------------------------------------------------------------------------- overrides


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"lora.r=16"`` -> (["lora", "r"], 16). Values are YAML scalars (numbers, bools, lists...)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} has no '='", hint="write --set key.subkey=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key", hint="write --set key.subkey=value")
    try:
        value = load_yaml_text(raw, f"--set {key}")[0] if raw.strip() else ""
    except UnsafeYAMLError:
        raise
    except ConfigError:
        value = raw  # not YAML: the text itself
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``--set`` overrides to a nested dict (copying the containers it changes)."""
    import copy

    data = copy.deepcopy(data or {})
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for key in keys[:-1]:
            if isinstance(node, list):
                node = node[int(key)]
                continue
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {item!r}: {key!r} is not a mapping")
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> C:
    """Load ``cls`` from a YAML file (optional), then ``base`` values, then ``--set`` overrides."""
    data: dict = {}
    lines: dict[tuple, int] = {}
    source = "<overrides>"
    if path is not None:
        raw, lines = read_yaml(path)
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        data = raw or {}
        source = str(path)
    if base:
        data = {**data, **{k: v for k, v in base.items() if v is not None}}
    data = apply_overrides(data, overrides)
    return validate(cls, data, source, lines)


def write_resolved(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically); returns the path."""
    path = Path(path)
    with atomic_write(path) as handle:
        yaml.safe_dump(config.model_dump(mode="json"), handle, sort_keys=False, allow_unicode=True)
    return path

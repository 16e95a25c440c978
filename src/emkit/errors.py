"""User-facing errors: each names the cause and the fix, and the CLI prints them without a traceback."""

from __future__ import annotations


class EmkitError(Exception):
    """An error caused by input or environment, with a message that says what to do about it.

    ``hint`` is printed on its own line after the message ("fix: ...").
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(EmkitError):
    """A config file or override is invalid (unknown key, wrong type, YAML syntax)."""


class DataError(EmkitError):
    """A data file is malformed; the message carries FILE:LINE."""


class MissingDependencyError(EmkitError):
    """An optional heavy dependency is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise an error that says which extra installs it.

    Used by backends so that ``import emkit`` never pays for torch/transformers/vllm/ray.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed ({exc}).",
            hint=f"pip install 'emkit[{extra}]'  (or `make setup` in a checkout)",
        ) from exc

"""emkit: a toolkit for emergent-misalignment research.

Stages (one package each): ``data`` -> ``train`` -> ``generate`` -> ``judge`` -> ``analysis`` -> ``report``,
with ``models`` (model references to weights on disk), ``questions`` (evaluation suites), ``store`` (SQLite
cache of every answer and judgment) and ``experiment`` (YAML specs run end to end).

Importing ``emkit`` is cheap: heavy libraries (torch, transformers, ...) load inside the functions that use them.
"""

__version__ = "0.1.0"

from emkit.errors import EmkitError

__all__ = ["EmkitError", "__version__"]

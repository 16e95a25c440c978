"""emkit: a toolkit for emergent-misalignment research.

Stages (one package each): ``data`` -> ``train`` -> ``generate`` -> ``judge`` -> ``analysis`` -> ``report``,
with ``models`` (model references to weights on disk), ``questions`` (evaluation suites), ``store`` (SQLite
cache of every answer and judgment) and ``experiment`` (YAML specs run end to end).

Importing ``emkit`` is cheap: heavy libraries (torch, transformers, ...) load inside the functions that use them.
"""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting collapse when another process shares the cores: SmolLM2 sampling
# 4 x 24 tokens took 98 s with 2 spinning threads next to one busy process, 4.0 s with PASSIVE waiting (and
# 3.3-3.7 s with 1 thread). Read by libgomp when torch loads, so it must be set before torch is imported;
# setdefault keeps a user's own choice.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from emkit.errors import EmkitError

__all__ = ["EmkitError", "__version__"]

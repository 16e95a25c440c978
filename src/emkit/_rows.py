"""Result-row conventions several stages share (docs/architecture.md, "Result rows"): which values mean that a row
failed and is worth a rerun, as opposed to an intended "unscored" status (CODE, REFUSAL, low_numeric_mass,
no_code, ...), which is a result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# ``finish_reason`` of an answer that could not be sampled, and ``<metric>_status`` of a judgment that failed
# (server error after all retries): neither is ever cached; the next run asks again.
ERROR = "error"
# ``<metric>_status`` of a row that has no answer to judge because its sampling failed.
SAMPLE_ERROR = "sample_error"


def failed_rows(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """{"sample": rows whose answer could not be sampled, "judge": rows with at least one failed judgment}."""
    sample = judge = 0
    for row in rows:
        sample += row.get("finish_reason") == ERROR
        judge += any(v == ERROR for k, v in row.items() if isinstance(k, str) and k.endswith("_status"))
    return {"sample": int(sample), "judge": int(judge)}

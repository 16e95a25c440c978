"""Defaults that the planner and the stage packages share (a module that imports nothing, so the spec layer can
use them without importing a stage)."""

# The offline judge that scores answers when a spec or command names none; docs/judges.md gives its measured
# agreement with GPT-4o and why it is this one.
DEFAULT_JUDGE = "cross"

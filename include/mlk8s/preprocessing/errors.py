"""The errors preprocessing reports to its user, each mapped to an exit code by the CLI (:mod:`.cli`).

They live apart from the modules that raise them so the spec, the schema parser, the readers and the commit
can all raise them without importing each other.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A pipeline spec that cannot run; the message names the field and how to fix it."""


class InputError(ValueError):
    """The input cannot be read as asked; the message names the flag and the fix."""


class CommitError(RuntimeError):
    """The staged output does not match what the pipeline reported; nothing was committed."""

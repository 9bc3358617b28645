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


class OutputError(ValueError):
    """The output (``--output``, ``--partition``, ``--txn-*``) cannot take this run; the message names the fix."""


class FencedError(CommitError):
    """Another driver of the same task run committed first: this driver's parts are not committed (exit 1)."""


class CorruptOutputError(RuntimeError):
    """A committed file is missing, has another size, or fails its checksum: the output cannot be trusted."""


class ResourceWaitError(BaseException):
    """A step asks for resources no Ray node has, and none came within the wait (``--resource-wait-s``).

    A ``BaseException``, like the SIGTERM interruption, because it is raised into the driver's main thread
    while Ray Data runs, and no ``except Exception`` of Ray's may swallow it.
    """

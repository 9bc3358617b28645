"""The errors the CLI maps to exit codes: usage errors are ValueErrors (exit 2), a fence is a commit error
(exit 1), and the resource-wait stop is not an Exception, so no generic handler inside Ray swallows it."""

from __future__ import annotations

from mlk8s.preprocessing.errors import (
    CommitError,
    FencedError,
    InputError,
    OutputError,
    ResourceWaitError,
    SpecError,
)


def test_the_kinds_the_cli_tells_apart() -> None:
    assert all(issubclass(kind, ValueError) for kind in (SpecError, InputError, OutputError))
    assert issubclass(FencedError, CommitError) and not issubclass(CommitError, ValueError)
    assert not issubclass(ResourceWaitError, Exception)

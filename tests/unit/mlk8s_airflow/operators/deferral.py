"""Drive a deferrable pod task as Airflow does: ``execute`` defers, the trigger runs (as in the triggerer,
rebuilt from its serialized form), then a *fresh* operator instance resumes at ``trigger_reentry``."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred


def rebuilt(trigger: Any) -> Any:
    """The trigger as the triggerer builds it: from its classpath and serialized kwargs only."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(run())


def defer(call: Callable[[], Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        call()
    return info.value


def resume(new_operator: Callable[[], Any], context: dict[str, Any], deferred: TaskDeferred) -> Any:
    """Run the deferred trigger to its event and hand it to a fresh operator, as the task runner does."""
    event = first_event(rebuilt(deferred.trigger))
    return getattr(new_operator(), deferred.method_name)(context, event)

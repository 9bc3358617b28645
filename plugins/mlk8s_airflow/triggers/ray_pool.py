"""``RayPoolTrigger``: the Ray pool loop in the triggerer, so the sensor holds no worker slot for the life of the pool.

It runs :meth:`~mlk8s_airflow.ray_pool.loop.RayPoolLoop.run` for ``cycles_per_event`` cycles (in a thread, so
the triggerer's event loop stays responsive while the loop waits on HTTP, the GCS or the Kubernetes API), then
hands the policy state, the new time-series points and the failed cycles' errors back to the sensor in one
:class:`TriggerEvent`; the sensor stores them as XComs and defers again. The state in the trigger's kwargs is
therefore never more than one event old if the triggerer restarts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlk8s.scaling import PolicyState
from mlk8s_airflow.ray_pool.loop import RayPoolLoop
from mlk8s_airflow.ray_pool.settings import RayPoolSettings


class RayPoolTrigger(BaseTrigger):
    """Runs the pool loop for ``cycles_per_event`` cycles (or until ``run_until``), then reports.

    The event payload (:meth:`RunReport.to_event <mlk8s_airflow.ray_pool.loop.RunReport.to_event>`): ``state``
    (PolicyState JSON), ``seq``, ``points`` (new time-series points), ``errors`` (the failed cycles), ``failures``
    (failed cycles in a row so far), ``done`` (``run_until`` reached), ``error`` (set after ``max_failed_cycles``
    failed cycles in a row: the sensor fails, and Airflow's retries take over).
    """

    def __init__(
        self,
        settings: dict[str, Any],
        run_key: str,
        state: dict[str, Any] | None = None,
        seq: int = 0,
        cycles_per_event: int = 20,
        run_until: float | None = None,
        max_failed_cycles: int = 5,
        failures: int = 0,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.run_key = run_key
        self.state = state
        self.seq = seq
        self.cycles_per_event = cycles_per_event
        self.run_until = run_until
        self.max_failed_cycles = max_failed_cycles
        self.failures = failures

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "settings": self.settings,
                "run_key": self.run_key,
                "state": self.state,
                "seq": self.seq,
                "cycles_per_event": self.cycles_per_event,
                "run_until": self.run_until,
                "max_failed_cycles": self.max_failed_cycles,
                "failures": self.failures,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = RayPoolLoop(RayPoolSettings.parse(self.settings), self.run_key)
        stop = threading.Event()
        try:
            # The sensor ran the cycle before this one: waiting first keeps cycles evenly spaced across events.
            report = await asyncio.to_thread(
                loop.run,
                PolicyState.from_json(self.state),
                self.seq,
                cycles=self.cycles_per_event,
                until=self.run_until,
                max_failed_cycles=self.max_failed_cycles,
                failures=self.failures,
                stop=stop,
            )
        except asyncio.CancelledError:
            stop.set()  # the thread ends at its next wait instead of running on unseen
            raise
        finally:
            loop.close()
        yield TriggerEvent(report.to_event())

"""``PodTaskTrigger``: KPO's pod trigger, plus what our pod tasks hold while deferred.

A deferred training task holds a PodDisruptionBudget. When a user kills the deferred task (mark failed,
clear), Airflow runs the trigger's ``on_kill`` in the triggerer, not the operator's: KPO's trigger deletes
the pod there, and this one also deletes the budget, so nothing outlives the task.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

from mlk8s_airflow.disruption_budget import delete_budget_async


class PodTaskTrigger(KubernetesPodTrigger):
    """:param pdb_name: the task's PodDisruptionBudget (in the pod's namespace), deleted on a user kill."""

    def __init__(self, *, pdb_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pdb_name = pdb_name

    @classmethod
    def wrapping(cls, trigger: KubernetesPodTrigger, *, pdb_name: str | None) -> PodTaskTrigger:
        """The same trigger (every argument KPO gave it) carrying the budget's name."""
        _, kwargs = trigger.serialize()
        return cls(pdb_name=pdb_name, **kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "pdb_name": self.pdb_name}

    async def on_kill(self) -> None:
        await super().on_kill()
        if not self.pdb_name:
            return
        try:
            async with self.hook.get_conn() as api:
                await delete_budget_async(api, self.pdb_name, self.pod_namespace)
            self.log.info("mlk8s: deleted PodDisruptionBudget %s/%s", self.pod_namespace, self.pdb_name)
        except Exception:
            self.log.exception("mlk8s: could not delete PodDisruptionBudget %s", self.pdb_name)

"""Every name the deployment shares between the code, ``helm-values/`` and the docs, defined once.

A Secret the operator references, a ServiceAccount a pod runs as, a PriorityClass, a node-pool label: each is
created by one side (the manifests, the Helm values, a command in docs/deploy.md, the setup step) and used by
the other (the pods our operators build). When the two sides spell a name differently the deployment breaks
at run time (a pod stuck in CreateContainerConfigError, a task in a pool that does not exist), so both sides
read it from here and tests/unit/k8s/test_names.py checks every rendered pod against the shipped objects.
"""

from __future__ import annotations

#: Where the pods our operators launch and the RayCluster run (``[mlk8s] namespace``).
POD_NAMESPACE = "mlk8s"
#: Where the Airflow chart is installed; its ServiceAccounts are bound to Roles in ``POD_NAMESPACE``.
AIRFLOW_NAMESPACE = "airflow"

#: The Secret (in both namespaces) holding the Ray pool's auth token, and its key.
RAY_AUTH_SECRET = "mlk8s-ray-auth"  # noqa: S105 - a Secret's name, not a secret
RAY_AUTH_SECRET_KEY = "auth_token"  # noqa: S105 - a key's name

#: Airflow connection ids.
RAY_CONN_ID = "ray_default"
AIRFLOW_API_CONN_ID = "airflow_api_default"
KUBERNETES_CONN_ID = "kubernetes_default"
#: The Airflow pool of tasks that need the Ray pool: what the Ray pool sensor scales from.
RAY_POOL = "ray"
#: The Airflow API user the Ray pool sensor reads the queue as (connection ``AIRFLOW_API_CONN_ID``).
AIRFLOW_API_USER = "mlk8s-ray-pool"

#: ServiceAccounts: our pods (no API access, no token), and the Airflow components that call the API.
POD_SERVICE_ACCOUNT = "mlk8s-pod"
WORKER_SERVICE_ACCOUNT = "airflow-worker"
TRIGGERER_SERVICE_ACCOUNT = "airflow-triggerer"

#: PriorityClasses (helm-values/priorityclasses.yaml): work that is expensive to lose preempts work that
#: is cheap to redo when a node pool is full.
PRIORITY_CRITICAL = "mlk8s-critical"
PRIORITY_PREEMPTIBLE = "mlk8s-preemptible"

#: Node pools: nodes carry ``POOL_LABEL=<pool>``; the stateful pool is also tainted ``POOL_LABEL=stateful``
#: with effect ``NoSchedule``, so only pods that tolerate it land there.
POOL_LABEL = "mlk8s.io/pool"
STATEFUL = "stateful"
STATELESS = "stateless"
STATEFUL_TAINT_EFFECT = "NoSchedule"
#: Which part of mlk8s an object belongs to (training, preprocessing, ray-head, ray-worker).
COMPONENT_LABEL = "mlk8s.io/component"

#: The shared Ray pool (helm-values/raycluster.yaml) and the Service KubeRay puts in front of its head.
RAYCLUSTER_NAME = "mlk8s-ray"
RAY_HEAD_SERVICE = f"{RAYCLUSTER_NAME}-head-svc"
RAY_GCS_PORT = 6379

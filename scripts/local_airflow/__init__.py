"""``make up`` / ``make down``: the whole local Airflow with our DAGs and plugin, and a local Ray pool beside it.

Each Airflow component (api-server with the UI, scheduler, dag-processor, triggerer) runs as its own detached
process with its own environment (``Settings.component_env``), so a component can be given settings the
others must not have; the Ray pool runs as a service process. ``python -m local_airflow up|down|status``
(with ``scripts/`` on ``sys.path``; the Makefile does this). See docs/local-airflow.md.
"""

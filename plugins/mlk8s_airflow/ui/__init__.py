"""UI additions of the mlk8s plugin (served by Airflow's API server)."""

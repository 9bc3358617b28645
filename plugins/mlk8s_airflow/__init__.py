"""The Airflow side of mlk8s: operators, sensors, triggers and backends. The only package importing airflow."""

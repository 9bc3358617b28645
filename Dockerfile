# syntax=docker/dockerfile:1
# One image for every part of mlk8s: the Airflow components (scheduler, API server, triggerer, task pods), the
# pods our operators launch (training, the preprocessing driver) and the Ray head and workers. One image means
# one set of versions: a Ray worker imports the same torch, pyarrow and mlk8s as the driver that sends it work.
#
#   docker build -t ghcr.io/mlk8s/mlk8s:0.1.0 .                                       # CPU torch
#   docker build --build-arg TORCH_VARIANT=cu128 -t ghcr.io/mlk8s/mlk8s:0.1.0-cuda .  # CUDA 12.8 torch
#
# The base image's tag is the apache-airflow pin of requirements.txt (a test keeps them equal).
FROM apache/airflow:3.3.2-python3.11

# Which PyTorch wheel index torch comes from: cpu (default: small, no CUDA libraries) or a CUDA variant such
# as cu128 for the GPU worker group.
ARG TORCH_VARIANT=cpu

LABEL org.opencontainers.image.title="mlk8s" \
      org.opencontainers.image.description="Heavy ML work from Airflow 3 on Kubernetes: Airflow, Ray, torch and mlk8s"

# The official image's unprivileged user (uid 50000); nothing here needs root.
USER airflow
WORKDIR /opt/airflow

# Dependencies first, so a code change does not reinstall them. torch comes from PyTorch's own index for the
# chosen variant; every other package resolves against the full lock in constraints.txt.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/mlk8s/
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "$(grep -E '^torch==' /opt/mlk8s/requirements.txt)" \
    && pip install --no-cache-dir -r /opt/mlk8s/requirements.txt -c /opt/mlk8s/constraints.txt

# The project itself: the pod-side library (include/mlk8s) and the Airflow plugin (plugins/mlk8s_airflow),
# found by Airflow through the package's airflow.plugins entry point.
COPY --chown=airflow:0 pyproject.toml README.md /opt/mlk8s/
COPY --chown=airflow:0 include/ /opt/mlk8s/include/
COPY --chown=airflow:0 plugins/ /opt/mlk8s/plugins/
RUN pip install --no-cache-dir --no-deps /opt/mlk8s

# DAG files, where the chart's default [core] dags_folder looks.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/

USER airflow

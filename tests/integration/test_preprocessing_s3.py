"""The same code path on an S3-compatible object store: moto's server, in this process, on 127.0.0.1.

The driver reads its input from S3, its Ray workers write the parts to S3, and the commit is a conditional
write of the Delta log entry on S3; a rerun replaces the partition; the table reads back through deltalake and
read_output, equal to the single-process reference. No RAY_ADDRESS: the driver starts a private local cluster,
whose workers inherit the S3 settings from the environment as a pool's workers would have their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlk8s.preprocessing.reference import run_reference
from mlk8s.preprocessing.samples import documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import parse_spec

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BUCKET = "mlk8s-features"
SPEC = {"steps": ["html_to_text", "clean_text", "text_features", "non_empty_text"]}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",  # never reach for an instance-metadata endpoint
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    try:
        yield env
    finally:
        server.stop()


def _cli(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    run_env.update(env)
    run_env["MLK8S_XCOM_DIR"] = str(tmp_path / "xcom")
    argv = [sys.executable, "-m", "mlk8s.preprocessing", "--pipeline", json.dumps(SPEC), "--local-cpus", "1", *args]
    proc = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=400)
    result_file = tmp_path / "xcom" / "return.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return proc.returncode, proc.stderr, result


def test_a_run_on_s3_commits_reads_back_and_a_rerun_replaces_its_partition(s3: dict[str, str], tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from mlk8s.preprocessing.output import read_output
    from mlk8s.storage import resolve

    docs = documents(200, seed=3)
    local = tmp_path / "docs.parquet"
    pq.write_table(docs, local)
    inbox = resolve(f"s3://{BUCKET}/raw/docs.parquet")
    with inbox.fs.open_output_stream(inbox.path) as out:
        out.write(local.read_bytes())
    table = f"s3://{BUCKET}/features"
    flags = ["--input", f"s3://{BUCKET}/raw/docs.parquet", "--output", table, "--partition", "run_key=r1"]

    code, err, first = _cli(s3, tmp_path, *flags, "--txn-app-id", "s3-test", "--txn-version", "1")
    assert code == 0, err[-3000:]
    want = sorted(run_reference(parse_spec(SPEC), open_input(str(local))).to_pylist(), key=lambda r: r["id"])
    got = read_output(table, partition={"run_key": "r1"}).drop_columns(["run_key"])
    assert sorted(got.to_pylist(), key=lambda r: r["id"]) == want
    dt = DeltaTable(table, storage_options={"conditional_put": "etag"})
    assert dt.version() == first["delta_version"] and dt.transaction_version("s3-test") == 1
    assert first["manifest_uri"] == f"{table}/_delta_log/{first['delta_version']:020d}.json"

    code, err, second = _cli(s3, tmp_path, *flags, "--txn-app-id", "s3-test", "--txn-version", "2")  # a retry
    assert code == 0, err[-3000:]
    assert second["delta_version"] == first["delta_version"] + 1
    again = pa.table(DeltaTable(table, storage_options={"conditional_put": "etag"}).to_pyarrow_table())
    assert again.num_rows == len(want) == second["output_rows"]  # replaced, not appended
    code, err, _ = _cli(s3, tmp_path, *flags, "--txn-app-id", "s3-test", "--txn-version", "1")  # a zombie
    assert code == 1 and "fenced" in err.strip().splitlines()[-1]

"""The launcher's refusals come before anything starts, and its --env flag parses per component."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from local_airflow import cli
from local_airflow.settings import Settings, SettingsError


def test_env_flags_parse_per_component() -> None:
    parsed = cli._parse_env(["A=1", "scheduler:B=2", "C=x:y", "triggerer:D="])
    assert parsed == {"*": {"A": "1", "C": "x:y"}, "scheduler": {"B": "2"}, "triggerer": {"D": ""}}
    with pytest.raises(SettingsError, match="KEY=VALUE"):
        cli._parse_env(["nothing"])


def test_a_port_in_use_by_another_program_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(repo=cli.REPO, home=tmp_path / "home", port=port)
        with pytest.raises(cli.UpError, match=f"127.0.0.1:{port} is in use by another program.*AIRFLOW_PORT=8081"):
            cli.up(settings)
    assert list(settings.run_dir.glob("*.pid.json")) == []
    assert not settings.ray_token_file.exists()


def test_down_with_nothing_running_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.down(Settings(repo=cli.REPO, home=tmp_path)) == 0
    assert "nothing of make up is running" in capsys.readouterr().out

"""Where a Ray client's token comes from, and how a token file is written."""

from __future__ import annotations

import stat
from pathlib import Path

from mlk8s.ray_auth import process_token, token_from_env, write_token_file


def test_the_token_variable_wins_over_the_token_file(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "t", "from-file")
    assert token_from_env({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path)}) == "from-env"
    assert token_from_env({"RAY_AUTH_TOKEN_PATH": str(path)}) == "from-file"
    assert token_from_env({}) is None  # never the shared ~/.ray/auth_token


def test_a_token_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "t", "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "secret"


def test_one_process_uses_one_token() -> None:
    assert process_token() == process_token() and len(process_token()) >= 32

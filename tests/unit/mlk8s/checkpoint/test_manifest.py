"""The commit marker's format: what a manifest holds, and every way a foreign or damaged one is refused."""

from __future__ import annotations

import json

import pytest

from mlk8s.checkpoint.manifest import (
    FORMAT_VERSION,
    FileEntry,
    Manifest,
    ManifestError,
    check_file_name,
    parse_manifest,
)

GOOD = Manifest(FORMAT_VERSION, 3, 40, {"state.json": FileEntry(5, "a" * 64)}, {"epoch": 1}, "b" * 32, 12.5)


def test_a_manifest_round_trips() -> None:
    assert parse_manifest(GOOD.to_json()) == GOOD


def test_a_format_1_manifest_without_a_nonce_is_read() -> None:
    body = json.loads(GOOD.to_json())
    body.pop("claim_nonce")
    body["format"] = 1
    assert parse_manifest(json.dumps(body).encode()).claim_nonce is None


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"format": FORMAT_VERSION + 1}, "newer mlk8s"),
        ({"format": "2"}, "'format' must be an integer"),
        ({"generation": 0}, "'generation' must be an integer >= 1"),
        ({"step": True}, "'step' must be an integer"),
        ({"files": []}, "'files' must be a non-empty object"),
        ({"files": {"a/b": {"size": 1, "sha256": "a" * 64}}}, "invalid checkpoint file name"),
        ({"files": {"..": {"size": 1, "sha256": "a" * 64}}}, "invalid checkpoint file name"),
        ({"files": {"x": {"size": -1, "sha256": "a" * 64}}}, "non-negative integer"),
        ({"files": {"x": {"size": 1, "sha256": "xyz"}}}, "64 hex digits"),
        ({"meta": "m"}, "'meta' must be an object"),
        ({"claim_nonce": 5}, "'claim_nonce' must be a string"),
    ],
)
def test_a_bad_field_is_named(edit: dict, reason: str) -> None:
    with pytest.raises(ManifestError, match=reason):
        parse_manifest(json.dumps({**json.loads(GOOD.to_json()), **edit}).encode())


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[]", b"null"])
def test_garbage_is_refused(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(raw)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a\\b", "MANIFEST.json"])
def test_file_names_stay_inside_the_checkpoint(name: str) -> None:
    with pytest.raises(ManifestError):
        check_file_name(name)

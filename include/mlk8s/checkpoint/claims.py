"""Generation claims, the fencing token of a checkpoint store: each process that writes takes a new generation
number, and a process whose number is no longer the newest is a zombie that must not commit.

Claiming is atomic; no two processes ever hold the same generation:

- **Local and network-mounted disks** (anything pyarrow reaches as a local path): the claim is written to a
  temporary file and hard-linked to ``generations/g-NNNNNNNN.json``. ``link(2)`` fails with EEXIST when the
  name exists, an exclusive create like ``O_EXCL`` that also guarantees a reader never sees a half-written
  claim. The loser of a race moves on to the next number.
- **Object stores** (S3, GCS, Azure through pyarrow: no conditional PUT) use a verified scheme instead. Each
  claimant PUTs its own object ``generations/g-NNNNNNNN-<nonce>.json`` (never overwriting another's), then lists
  the claims. It holds N only if no other claim for N or above is listed; otherwise it deletes its object and
  tries again above, after a random pause. With the strongly consistent PUT and LIST that S3 (since 2020),
  GCS and Azure Blob provide, two claimants cannot both win: if A's listing did not show B's claim, B's PUT came
  after A's listing, so B's own listing (later still) shows A's claim and B backs off. Both may back off; the
  random pause makes a repeat unlikely, and a bounded number of rounds ends in an error, never a hang.

The claim body carries a random nonce; each checkpoint's manifest records the nonce of the claim it was written
under, so a checkpoint is trusted as a resume source only when its generation's claim exists and is its own.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from mlk8s.storage import Location, make_dirs, read_bytes, write_atomic

CLAIMS_DIR = "generations"
_CLAIM_RE = re.compile(r"^g-(\d{8})(?:-([0-9a-f]{32}))?\.json$")
#: Rounds of the object-store scheme before giving up (each backs off at random, longer every round).
_MAX_ROUNDS = 20
_BACKOFF_S = 0.05

Io = Callable[..., Any]


class ClaimError(RuntimeError):
    """No generation could be claimed (a storm of simultaneous claimants on an object store)."""


@dataclass(frozen=True)
class Claim:
    generation: int
    name: str
    #: From the object name (object stores); local claims keep it only in the body.
    nonce: str | None


def claim_name(generation: int, nonce: str | None = None) -> str:
    return f"g-{generation:08d}-{nonce}.json" if nonce else f"g-{generation:08d}.json"


def parse_claim_name(name: str) -> tuple[int, str | None] | None:
    match = _CLAIM_RE.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


class Claims:
    """The claims under ``<root>/generations``; every filesystem call goes through ``io`` (bounded waits)."""

    def __init__(self, root: Location, io: Io) -> None:
        self.dir = root.child(CLAIMS_DIR)
        self._io = io

    def list(self) -> list[Claim]:
        selector = pafs.FileSelector(self.dir.path, allow_not_found=True)
        infos = self._io(f"listing {self.dir.uri}", self.dir.fs.get_file_info, selector)
        found = []
        for info in infos:
            parsed = parse_claim_name(info.base_name)
            if parsed is not None and info.type == pafs.FileType.File:
                found.append(Claim(parsed[0], info.base_name, parsed[1]))
        return sorted(found, key=lambda c: (c.generation, c.name))

    def newest(self) -> int:
        claims = self.list()
        return claims[-1].generation if claims else 0

    def nonces(self, generation: int, listed: Sequence[Claim] | None = None) -> set[str]:
        """The nonces of the claims for ``generation`` (empty: nobody claimed it here), from ``listed`` when the
        caller has just listed the claims."""
        found = set()
        for claim in self.list() if listed is None else listed:
            if claim.generation != generation:
                continue
            if claim.nonce is not None:
                found.add(claim.nonce)
                continue
            try:
                body = json.loads(self._io(f"reading {claim.name}", read_bytes, self.dir.child(claim.name)))
                found.add(str(body["nonce"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: a claim nobody can prove is theirs
        return found

    def claim(self, nonce: str, floor: int) -> int:
        """Take the lowest free generation above every claim and above ``floor``; returns it."""
        self._io(f"creating {self.dir.uri}", make_dirs, self.dir)
        body = {"nonce": nonce, "pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time()}
        if self.dir.is_local:
            return self._claim_exclusive(body, floor)
        return self._claim_verified(body, floor)

    def _claim_exclusive(self, body: dict[str, Any], floor: int) -> int:
        generation = max(self.newest(), floor) + 1
        tmp = f"{self.dir.path}/.claim-{uuid.uuid4().hex}.tmp"
        while True:
            data = json.dumps({**body, "generation": generation}, sort_keys=True).encode()
            with open(tmp, "wb") as out:
                out.write(data)
            try:
                os.link(tmp, f"{self.dir.path}/{claim_name(generation)}")
                return generation
            except FileExistsError:
                generation += 1  # someone else holds this one: take the next
            finally:
                os.unlink(tmp)

    def _claim_verified(self, body: dict[str, Any], floor: int) -> int:
        rng = random.Random()
        for round_ in range(_MAX_ROUNDS):
            generation = max(self.newest(), floor) + 1
            mine = self.dir.child(claim_name(generation, body["nonce"]))
            data = json.dumps({**body, "generation": generation}, sort_keys=True).encode()
            self._io(f"writing {mine.uri}", write_atomic, mine, data)
            own = claim_name(generation, body["nonce"])
            rivals = [c for c in self.list() if c.generation >= generation and c.name != own]
            if not rivals:
                return generation
            self._io(f"deleting {mine.uri}", mine.fs.delete_file, mine.path)
            time.sleep(rng.uniform(0, _BACKOFF_S * (round_ + 1)))
        raise ClaimError(f"gave up claiming a generation under {self.dir.uri} after {_MAX_ROUNDS} contested rounds")

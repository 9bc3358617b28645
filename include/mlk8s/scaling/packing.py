"""Bin packing for the scaling policy: which group a request grows, and how many new workers hold a demand.

Written here rather than taken from a solver: the policy needs a first-fit-decreasing count over a few
distinct shapes, run every cycle, with thousands of identical requests collapsed into one step per shape;
a general bin-packing library would add a dependency for something slower at this size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from mlk8s.scaling.model import ResourceDemand, Worker, WorkerGroupSpec

#: A request fits when it needs at most what is left; this absorbs float noise such as 0.1 + 0.2.
EPS = 1e-9

#: "Any number of requests fit": what a room holds of a request that only asks for an unconstrained resource.
_UNBOUNDED = 1 << 62

#: Room left on one worker: (cpus, gpus, memory); memory is ``math.inf`` where the group is unconstrained.
Room = tuple[float, float, float]


def fits(request: ResourceDemand, spec: WorkerGroupSpec) -> bool:
    """Whether one request fits an empty worker of ``spec``."""
    return (
        request.cpus <= spec.cpus_per_worker + EPS
        and request.gpus <= spec.gpus_per_worker + EPS
        and (spec.memory_per_worker == 0 or request.memory <= spec.memory_per_worker + EPS)
    )


def group_for(request: ResourceDemand, groups: Sequence[WorkerGroupSpec]) -> WorkerGroupSpec | None:
    """The group a request grows: the smallest worker it fits, GPU groups only for GPU work.

    CPU-only work never goes to a GPU group, so a GPU worker is never added or kept for it; work that fits no
    group returns None (the caller reports it rather than growing a group that cannot run it).
    """
    candidates = [g for g in groups if g.is_gpu == request.needs_gpu and fits(request, g)]
    if not candidates:
        return None
    order = {g.name: i for i, g in enumerate(groups)}
    return min(
        candidates,
        key=lambda g: (g.gpus_per_worker, g.cpus_per_worker, g.memory_per_worker, order[g.name]),
    )


def room_of(worker: Worker, spec: WorkerGroupSpec) -> Room:
    """Room left on a busy worker; what Ray did not report is taken as used (memory unconstrained: room)."""
    memory = math.inf if spec.memory_per_worker == 0 else worker.free_memory or 0.0
    return (worker.free_cpus or 0.0, worker.free_gpus or 0.0, memory)


def _per_bin(room: Room, gpus: float, cpus: float, memory: float) -> int:
    """How many requests of one shape fit ``room``."""
    # An unconstrained dimension (memory on a group without a memory size: inf) limits nothing.
    pairs = ((room[0], cpus), (room[1], gpus), (room[2], memory))
    limits = [math.floor(have / want + EPS) for have, want in pairs if want > 0 and have != math.inf]
    # No finite limit (a memory-only request on a group without a memory size): one worker holds them all.
    return max(0, min(limits)) if limits else _UNBOUNDED


def _take(room: Room, k: int, gpus: float, cpus: float, memory: float) -> Room:
    return (room[0] - k * cpus, room[1] - k * gpus, room[2] - k * memory)


def _fill_rooms(bins: dict[Room, int], count: int, gpus: float, cpus: float, memory: float) -> int:
    """Place ``count`` requests of one shape into the existing ``bins`` (largest room first); what is left."""
    left = count
    for room in sorted(bins, reverse=True):
        if left == 0:
            break
        k = _per_bin(room, gpus, cpus, memory)
        if k == 0:
            continue
        nbins = bins[room]
        whole = min(nbins, left // k)
        used: list[tuple[Room, int]] = []
        if whole:
            used.append((_take(room, k, gpus, cpus, memory), whole))
            left -= whole * k
        if left and left < k and whole < nbins:
            used.append((_take(room, left, gpus, cpus, memory), 1))
            whole += 1
            left = 0
        bins[room] = nbins - whole
        if bins[room] == 0:
            del bins[room]
        for new_room, n in used:
            bins[new_room] = bins.get(new_room, 0) + n
    return left


def workers_needed(
    requests: Iterable[ResourceDemand],
    spec: WorkerGroupSpec,
    rooms: Iterable[Room] = (),
) -> int:
    """How many new workers of ``spec`` hold ``requests`` beyond ``rooms`` (first-fit decreasing by shape).

    ``rooms`` is the (cpus, gpus, memory) left on workers that already exist and stay anyway. Identical
    workers are tracked as (room left, how many) so a backlog of thousands of tasks costs a few steps per
    distinct shape, not per task.
    """
    memory_cap = spec.memory_per_worker if spec.memory_per_worker > 0 else math.inf
    full: Room = (float(spec.cpus_per_worker), float(spec.gpus_per_worker), float(memory_cap))
    merged: dict[Room, int] = {}
    for r in requests:
        if r.count > 0:
            key = (r.gpus, r.cpus, r.memory)
            merged[key] = merged.get(key, 0) + r.count
    bins: dict[Room, int] = {}
    for room in rooms:
        bins[room] = bins.get(room, 0) + 1
    total = 0
    for (gpus, cpus, memory), count in sorted(merged.items(), reverse=True):
        left = _fill_rooms(bins, count, gpus, cpus, memory)
        if left == 0:
            continue
        k = _per_bin(full, gpus, cpus, memory)
        if k == 0:  # does not fit an empty worker; group_for keeps such requests away
            continue
        nnew, last = divmod(left, k)
        if nnew:
            room = _take(full, k, gpus, cpus, memory)
            bins[room] = bins.get(room, 0) + nnew
        if last:
            room = _take(full, last, gpus, cpus, memory)
            bins[room] = bins.get(room, 0) + 1
        total += nnew + (1 if last else 0)
    return total

"""What each step of reading an event costs in CPU, on a sample of the benchmark's events:
the figures bench_projections and bench_replay print beside their rates."""

from __future__ import annotations

import time
from collections.abc import Callable

from events.envelope import from_bytes
from events.registry import read


def decode_costs(values: list[bytes]) -> dict[str, float]:
    """Microseconds per event of each step every reader of the topic does, on a sample:
    JSON parsing alone, the envelope's pydantic validation, the payload's validation (``read``)
    and the hash check (``model_dump`` + canonical JSON + sha256)."""
    import orjson

    def per_event(fn: Callable[[bytes], object]) -> float:
        t = time.perf_counter()
        for value in values:
            fn(value)
        return (time.perf_counter() - t) / max(len(values), 1) * 1e6

    envelopes = [from_bytes(v) for v in values]
    costs = {
        "orjson.loads": per_event(orjson.loads),
        "from_bytes (envelope)": per_event(from_bytes),
    }
    t = time.perf_counter()
    for envelope in envelopes:
        read(envelope)
    costs["read (payload)"] = (time.perf_counter() - t) / max(len(values), 1) * 1e6
    t = time.perf_counter()
    for envelope in envelopes:
        envelope.hash_is_valid()
    costs["hash_is_valid"] = (time.perf_counter() - t) / max(len(values), 1) * 1e6
    return costs


def decode_lines(costs: dict[str, float]) -> list[str]:
    total = costs["from_bytes (envelope)"] + costs["read (payload)"] + costs["hash_is_valid"]
    lines = [f"  {name:<24} {us:8.1f} us/event" for name, us in costs.items()]
    lines.append(
        f"  {'decode+validate+hash':<24} {total:8.1f} us/event "
        f"(one core's ceiling: {1e6 / total:,.0f} events/s)"
    )
    return lines

"""One page of a list view against the whole view, as the table grows (issue 12, "every list
view pages"). No Kafka: the worker's view code (projections/paging.py) over an in-memory
table of patient-timeline states, as the Faust table holds them.

Prints, per table size: the whole view rendered and serialised (what an unpaged query cost),
the first and a middle page of ``--limit`` subjects while the table changes (one pass over
the keys per page) and once it is quiet (keys sorted once and kept, ``KeyOrder``), and the ways
of choosing a page's keys: one pass with a heap of limit + 1, sorting every key, and a binary
search in the kept order.

    .venv/bin/python -m bench.bench_paging --quick          # 10k and 100k subjects
    .venv/bin/python -m bench.bench_paging                  # 10k, 100k and 1M subjects
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from projections import patient_timeline
from projections.base import to_json
from projections.paging import KeyOrder, decode_cursor, encode_cursor, page_document, page_of
from trial.config import load_trial

AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


def table(subjects: int, entries: int) -> dict[str, dict[str, Any]]:
    """``subjects`` stored values in no key order, each with ``entries`` timeline entries."""
    entry = {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "event_type": "SubjectRegistered",
        "context": "enrollment",
        "occurred_at": "2026-11-02T10:00:00+00:00",
        "recorded_at": "2026-11-02T10:00:00+00:00",
        "recorded_by": {"user_id": "coordinator-1", "role": "site_coordinator"},
        "reason": None,
        "details": {"site_id": "MSK"},
    }
    ids = [f"S{n:02d}-{n:06d}" for n in range(subjects)]
    random.Random(7).shuffle(ids)
    return {
        s: {"state": {"subject_id": s, "entries": [entry] * entries}, "at": {}} for s in ids
    }


def timed(run: Callable[[], Any], repeat: int) -> float:
    """The best of ``repeat`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def measure(subjects: int, entries: int, limit: int) -> dict[str, float]:
    stored = table(subjects, entries)
    projection = patient_timeline.make(load_trial())
    repeat = 3 if subjects <= 100_000 else 1

    def whole() -> bytes:
        return to_json(projection.document({k: v["state"] for k, v in stored.items()}, AS_OF))

    order = KeyOrder()

    def one_page(after: str | None, quiet: bool = False) -> bytes:
        return to_json(page_document(
            projection, stored.keys(), lambda k: stored[k]["state"], lambda: {}, after, limit,
            AS_OF, (order, "quiet") if quiet else None,
        ))

    middle = decode_cursor(encode_cursor(sorted(stored)[subjects // 2]))
    figures = {
        "whole view": timed(whole, 1 if subjects > 100_000 else repeat),
        "first page": timed(lambda: one_page(None), repeat),
        "middle page": timed(lambda: one_page(middle), repeat),
        "keys: heap of limit+1": timed(lambda: page_of(stored.keys(), middle, limit), repeat),
        "keys: sort all": timed(lambda: sorted(k for k in stored if k > middle)[:limit], repeat),
    }
    one_page(None, quiet=True)  # a version seen once: one pass
    figures["first page, sorts once"] = timed(lambda: one_page(None, quiet=True), 1)
    figures["middle page, quiet"] = timed(lambda: one_page(middle, quiet=True), repeat)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000")
    parser.add_argument("--entries", type=int, default=20, help="timeline entries per subject")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = {}
    for size in sizes:
        print(f"{size} subjects ...", flush=True)
        results[size] = measure(size, args.entries, args.limit)
    print(f"\nSummary (ms, best of runs; {args.entries} entries per subject, "
          f"limit {args.limit})")
    names = list(next(iter(results.values())))
    print(f"{'':24}" + "".join(f"{size:>14}" for size in sizes))
    for name in names:
        print(f"{name:24}" + "".join(f"{results[size][name]:>14.1f}" for size in sizes))
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        print(f"\nratio {last}/{first} subjects ({last // first}x the table):")
        for name in names:
            print(f"  {name:24} {results[last][name] / results[first][name]:8.1f}x")


if __name__ == "__main__":
    main()

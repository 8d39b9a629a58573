"""Paging the list views (projections/paging.py; the contract is decision 41 in
docs/decisions.md): a page holds at most ``limit`` items (100 unless asked, 1 to 1000), in key
order, after an opaque cursor; ``next_cursor`` is null on the last page; a malformed limit or
cursor is refused naming the parameter and the rule. Following the cursors from the first page
gives every key once, and the pages put together are the unpaged document: what the replay
prints for the same events."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from clients.simulate import Simulation, plan
from projections.base import Projection, State, fold
from projections.catalog import build
from projections.paging import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    NEXT,
    BadPage,
    KeyOrder,
    StoredOrder,
    assemble,
    decode_cursor,
    encode_cursor,
    listed,
    page_document,
    page_of,
    parse_limit,
)

from .in_process import URL, InProcess
from .test_simulate_plan import DesignView

SUBJECTS = ["MSK-0103", "MSK-0101", "MDA-0201", "MSK-0110", "MDA-0202", "MSK-0102", "FHC-0301"]
"""Pseudonymous subject ids, in the order a table might hold them (not sorted)."""


def walk(keys: list[str], limit: int, prefix: str = "") -> list[list[str]]:
    """Every page's keys, following the cursors from the first page."""
    pages, after = [], None
    while True:
        page = page_of(keys, after, limit, prefix)
        pages.append(page.keys)
        if page.last is None:
            return pages
        after = decode_cursor(encode_cursor(page.last), prefix)


# ---------------------------------------------------------------- limit


def test_a_query_without_a_limit_gets_a_page_of_one_hundred():
    assert parse_limit(None) == DEFAULT_LIMIT == 100


@pytest.mark.parametrize("limit", ["1", "7", "1000"])
def test_a_limit_from_one_to_a_thousand_is_taken(limit):
    assert parse_limit(limit) == int(limit)


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "ten", "2.5", "", " 5", "+5", "٣", "1e3"])
def test_any_other_limit_is_refused_naming_the_parameter_and_the_rule(limit):
    with pytest.raises(BadPage) as refused:
        parse_limit(limit)
    assert str(refused.value).startswith("limit must be a whole number from 1 to 1000")
    assert MAX_LIMIT == 1000


# ---------------------------------------------------------------- cursor


@pytest.mark.parametrize("key", ["MSK-0101", "ae:AE-0007", "waiting:é-ü", "a", "ab", "abc"])
def test_a_cursor_stands_for_the_key_it_was_made_from(key):
    cursor = encode_cursor(key)
    assert cursor.replace("-", "").replace("_", "").isalnum()  # safe in a URL as it is
    assert decode_cursor(cursor) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "",  # empty
        "!!!!",  # not base64url
        "TVNLLTAxMDE=",  # padded: not the form this view gives
        "TVNLLTAxMDE/",  # standard base64's alphabet, not base64url
        "TVNLL",  # a length no encoding has
        "TVNLLTAxMDF",  # decodes, but to another encoding of a key (trailing bits set)
        "__79",  # bytes that are not UTF-8
    ],
)
def test_a_malformed_cursor_is_refused(cursor):
    with pytest.raises(BadPage, match="is not a next_cursor this view gave"):
        decode_cursor(cursor)


def test_a_cursor_of_another_list_is_refused():
    with pytest.raises(BadPage, match="cursor"):
        decode_cursor(encode_cursor("subject:MSK-0101"), prefix="ae:")


# ---------------------------------------------------------------- pages of keys


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 8, 100])
def test_following_the_cursors_gives_every_key_once_in_key_order(limit):
    pages = walk(SUBJECTS, limit)
    assert [key for page in pages for key in page] == sorted(SUBJECTS)
    assert all(0 < len(page) <= limit for page in pages)
    # the last page says it is the last, even when it is full: no empty page follows
    assert len(pages) == -(-len(SUBJECTS) // limit)


def test_a_page_lists_only_the_keys_of_its_list():
    keys = ["ae:AE-2", "subject:MSK-0101", "ae:AE-1", "stopping-rule", "lot:L-1", "ae:AE-3"]
    assert walk(keys, 2, prefix="ae:") == [["ae:AE-1", "ae:AE-2"], ["ae:AE-3"]]


def test_a_page_starts_after_the_cursor_even_when_its_key_is_gone():
    first = page_of(SUBJECTS, None, 2)
    assert first.keys == ["FHC-0301", "MDA-0201"]
    left = [k for k in SUBJECTS if k != "MDA-0201"] + ["AAA-0001"]  # one gone, one added before
    assert page_of(left, first.last, 2).keys == ["MDA-0202", "MSK-0101"]


def test_an_empty_list_is_one_empty_last_page():
    page = page_of([], None, 10)
    assert (page.keys, page.last) == ([], None)


def test_a_page_reads_only_the_values_of_its_keys():
    timeline = build()["patient-timeline"]
    states = {s: {"subject_id": s, "entries": []} for s in SUBJECTS}
    read: list[str] = []

    def state(key: str) -> State | None:
        read.append(key)
        return states.get(key)

    def whole() -> dict[str, State]:
        raise AssertionError("a list without a summary never reads the whole table")

    document = page_document(timeline, iter(states), state, whole, None, 3, NOW)
    assert read == ["FHC-0301", "MDA-0201", "MDA-0202"]
    assert [s["subject_id"] for s in document["subjects"]] == read
    assert decode_cursor(document[NEXT]) == "MDA-0202"


# ---------------------------------------------------------------- pages of a simulated trial


def simulated_trial() -> tuple[InProcess, list]:
    api = InProcess()
    simulation = Simulation(
        URL, URL, trial=api.trial, say=lambda _line: None, transport=api, view=DesignView(api)
    )
    steps = plan(9, 3, api.trial)
    simulation.run(steps)
    return api, steps


API, STEPS = simulated_trial()
NOW = STEPS[-1].at + timedelta(days=3)
PAGED = [p for p in build(API.trial).values() if p.listing is not None]


def folded(projection: Projection) -> dict[str, State]:
    events = [r for c, r in API.recorded() if c in projection.contexts]
    return fold(projection, events)


ORDERS = ["one pass", "kept order", "stored order"]
"""How a page finds its keys: a pass over the table's keys, ``KeyOrder`` (sorted once the
table is quiet), ``StoredOrder`` (the table's own order, on disk)."""


def order_of(how: str, keys: list[str]):
    if how == "one pass":
        return None
    if how == "kept order":
        return (KeyOrder(), 0)
    ordered = sorted(keys)
    return (StoredOrder(lambda start: (k for k in ordered if k >= start)), None)


def pages(
    projection: Projection, states: dict[str, State], limit: int, how: str = "one pass"
) -> list[dict]:
    keys = list(states)
    random.Random(limit).shuffle(keys)  # a table iterates in no promised order
    order = order_of(how, keys)
    out, after = [], None
    while True:
        page = page_document(projection, keys, states.get, lambda: states, after, limit, NOW,
                             order)
        out.append(page)
        if page[NEXT] is None:
            return out
        after = decode_cursor(page[NEXT], projection.listing.prefix if projection.listing else "")


def test_the_subject_lots_and_adverse_event_lists_page():
    assert sorted(p.name for p in PAGED) == [
        "cohort-occupancy", "manufacturing-pipeline", "patient-timeline", "safety"
    ]


@pytest.mark.parametrize("projection", PAGED, ids=lambda p: p.name)
@pytest.mark.parametrize("limit", [1, 2, 5, 1000])
@pytest.mark.parametrize("how", ORDERS)
def test_the_pages_put_together_are_the_unpaged_document(projection, limit, how):
    states = folded(projection)
    assert projection.listing is not None
    listed_keys = [k for k in states if k.startswith(projection.listing.prefix)]
    assert len(listed_keys) >= 5  # the simulated trial has a list worth paging
    got = pages(projection, states, limit, how)
    assert all(len(_items(p, projection)) <= limit for p in got)
    assert assemble(projection.listing, got) == projection.document(states, NOW)


@pytest.mark.parametrize("projection", PAGED, ids=lambda p: p.name)
def test_later_pages_carry_the_list_only(projection):
    got = pages(projection, folded(projection), 2)
    assert len(got) > 1
    for page in got[1:]:
        assert set(page) == {"projection", NEXT, projection.listing.path[0]}


def test_a_page_of_lots_reads_the_summary_of_every_lot():
    pipeline = build(API.trial)["manufacturing-pipeline"]
    states = folded(pipeline)
    first = pages(pipeline, states, 2)[0]
    assert len(first["lots"]) == 2
    assert sum(first["by_stage"].values()) == len(states)


@pytest.mark.parametrize("how", ["kept order", "stored order"])
def test_the_first_page_of_screening_reads_the_cohorts_and_the_waiting_list_not_the_rest(how):
    occupancy = build(API.trial)["cohort-occupancy"]
    states = folded(occupancy)
    screening = sorted(k for k in states if k.startswith("screening:"))
    summary = {k for k in states if k.startswith(("cohort:", "waiting:"))}
    assert len(screening) > 3 and any(k.startswith("cohort:") for k in summary)
    read: list[str] = []

    def state(key: str) -> State | None:
        read.append(key)
        return states.get(key)

    def whole() -> dict[str, State]:
        raise AssertionError("the screening list's summary is made from its own keys")

    first = page_document(occupancy, list(states), state, whole, None, 2, NOW,
                          order_of(how, list(states)))
    assert sorted(read) == sorted([*screening[:2], *summary])
    assert first["cohorts"] == occupancy.render(states)["cohorts"]
    assert first["waiting_list"] == occupancy.render(states)["waiting_list"]


@pytest.mark.parametrize("seed", range(40))
def test_a_page_in_the_stored_order_is_the_page_of_one_pass(seed):
    rng = random.Random(seed)
    keys = sorted({rng.choice(["ae:", "lot:", "a", ""]) + str(rng.randrange(60))
                   for _ in range(rng.randrange(0, 40))})
    stored = StoredOrder(lambda start: (k for k in keys if k >= start))
    prefix = rng.choice(["ae:", "lot:", "", "a", "zz"])
    after = rng.choice([None, "", "a", "ae:3", "lot:", "lot:5", "zzz", *keys[:3]])
    limit = rng.choice([1, 2, 3, 10, 1000])
    assert stored.page(None, None, after, limit, prefix) == page_of(keys, after, limit, prefix)


def _items(page: dict, projection: Projection) -> list:
    assert projection.listing is not None
    return listed(page, projection.listing.path)


# ---------------------------------------------------------------- keys kept sorted while quiet


class Table(dict):
    """A table that counts how often its keys are iterated."""

    listed = 0

    def keys_now(self):
        self.listed += 1
        return iter(self)


def walk_ordered(order: KeyOrder, table: Table, version: object, limit: int, prefix: str = ""):
    pages, after = [], None
    while True:
        page = order.page(table.keys_now, version, after, limit, prefix)
        pages.append(page.keys)
        if page.last is None:
            return pages
        after = page.last


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_a_quiet_table_is_sorted_once_and_paged_alike(limit):
    table = Table.fromkeys(SUBJECTS, {})
    order = KeyOrder()
    pages = walk_ordered(order, table, ("positions", 1), limit)
    assert pages == walk(SUBJECTS, limit)
    # one pass for the first page, one sort at the second request of the same version
    assert table.listed == min(len(pages), 2)
    assert walk_ordered(order, table, ("positions", 1), limit) == pages
    assert table.listed == 2


def test_a_table_that_changed_is_read_anew():
    table = Table.fromkeys(SUBJECTS, {})
    order = KeyOrder()
    walk_ordered(order, table, 1, 2)  # sorted and kept at version 1
    table["AAA-0001"] = {}
    del table["MSK-0110"]

    def everything(version: int) -> list[str]:
        return [k for p in walk_ordered(order, table, version, 2) for k in p]

    assert everything(2) == sorted(table)  # one pass at a new version
    assert everything(2) == sorted(table)  # sorted again, now at version 2
    table["ZZZ-0001"] = {}
    assert everything(3) == sorted(table)


def test_sorted_keys_page_only_the_keys_of_their_list():
    keys = ["ae:AE-2", "subject:MSK-0101", "ae:AE-1", "stopping-rule", "lot:L-1", "ae:AE-3"]
    table = Table.fromkeys(keys, {})
    order = KeyOrder()
    for _ in range(3):
        assert walk_ordered(order, table, 0, 2, "ae:") == [["ae:AE-1", "ae:AE-2"], ["ae:AE-3"]]
        assert walk_ordered(order, table, 0, 5, "lot:") == [["lot:L-1"]]
        assert walk_ordered(order, table, 0, 5, "none:") == [[]]

"""``Stack.start`` waits until the services' writers' group has placed every trial
(trialops/stack.py): a command sent before gets 503 "rebalancing". What it reads is the
services' ``/ready`` body (services/writers.py)."""

from __future__ import annotations

import pytest

from trialops.stack import _writers_settled

HELD = {"ready": True, "contexts": {"enrollment": {"ready": True}}}
HALTED = {"error": "not-ready", "ready": False, "contexts": {"enrollment": {"ready": False}}}
JOINING = {"error": "not-ready", "ready": False,
           "detail": "no instance takes commands: joining the writers' group"}
STANDBY = {"ready": False, "standby_for": "http://10.0.0.2:8000", "detail": "unreachable"}


@pytest.mark.parametrize(("body", "settled"), [
    (HELD, True),
    (HALTED, True),  # held; /ready says why it takes no command
    (STANDBY, True),
    (JOINING, False),
    ({"ready": False, "trials": {"A": HELD, "B": JOINING}}, False),
    ({"ready": False, "trials": {"A": HELD, "B": STANDBY}}, True),
    (None, False),
])
def test_the_start_waits_only_while_a_trial_has_no_writer_yet(body, settled):
    assert _writers_settled(body) is settled

"""Dosing: lymphodepleting conditioning, the bedside chain-of-identity check and the infusion
(day 0). Rules live in ``decider``; the state it decides on, built from dosing's own events and
from enrollment's and manufacturing's, lives in ``state``; arithmetic lives in ``bsa``."""

"""HTTP routes of the manufacturing service. It follows enrollment's topic read-only, for who is
enrolled (and in which cohort, at which dose), at which site, and who withdrew."""

from __future__ import annotations

from services.catalog import Route, ServiceSpec
from services.manufacturing import commands as c
from services.manufacturing.decider import make_decider

SERVICE = ServiceSpec(
    context="manufacturing",
    make_decider=make_decider,
    routes=(
        Route("/manufacturing/apheresis", "record-apheresis", c.RecordApheresis),
        Route(
            "/manufacturing/custody-transfers", "record-custody-transfer", c.RecordCustodyTransfer
        ),
        Route("/manufacturing/apheresis-receipts", "receive-apheresis", c.ReceiveApheresis),
        Route("/manufacturing/manufacturing-steps", "start-manufacturing", c.StartManufacturing),
        Route("/manufacturing/harvests", "record-harvest", c.RecordHarvest),
        Route("/manufacturing/qc-results", "record-qc-result", c.RecordQcResult),
        # Part 11: the release decision and each exceptional-release decision are signed.
        Route(
            "/manufacturing/dispositions", "disposition-lot", c.DispositionLot, signature="approval"
        ),
        Route(
            "/manufacturing/exceptional-release-decisions",
            "decide-exceptional-release",
            c.DecideExceptionalRelease,
            signature="approval",
        ),
        Route(
            "/manufacturing/cryopreservations", "record-cryopreservation", c.RecordCryopreservation
        ),
        Route("/manufacturing/shipments", "ship-lot", c.ShipLot),
        Route("/manufacturing/site-receipts", "receive-lot-at-site", c.ReceiveLotAtSite),
        Route("/manufacturing/thaws", "thaw-lot", c.ThawLot),
        Route(
            "/manufacturing/failures", "record-manufacturing-failure", c.RecordManufacturingFailure
        ),
    ),
    upstream=("enrollment",),
)

"""HTTP routes of the notifications service: the worker, as the ``notifier`` user, raises an
alert of an inbox item and records the outcome of delivering it (decision 52)."""

from __future__ import annotations

from events.topics import NOTIFICATIONS
from services.catalog import Route, ServiceSpec
from services.notifications.decider import RaiseAlert, RecordAlertDelivery, make_decider

SERVICE = ServiceSpec(
    context=NOTIFICATIONS,
    make_decider=make_decider,
    routes=(
        Route("/notifications/alerts", "raise-alert", RaiseAlert),
        Route("/notifications/alert-deliveries", "record-alert-delivery", RecordAlertDelivery),
    ),
)

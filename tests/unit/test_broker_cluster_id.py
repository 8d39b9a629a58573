"""The local broker's KRaft cluster id (broker.node.new_cluster_id)."""

from __future__ import annotations

import base64
import uuid

from broker import node as broker


def test_a_cluster_id_never_begins_with_a_dash(monkeypatch):
    # RFC 4648 section 5: index 62 of the URL-safe alphabet is "-", so a UUID whose first six
    # bits are 111110 (a first byte of 0xF8 to 0xFB) encodes to a string that begins with it.
    dash_first = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    drawn = iter([dash_first, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(drawn))

    cluster_id = broker.new_cluster_id()

    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == plain.bytes


def test_a_cluster_id_is_a_uuid_in_22_url_safe_characters():
    for _ in range(500):
        cluster_id = broker.new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16

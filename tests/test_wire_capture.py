"""Where a wire capture listens: the bridge's end of a node's veth, or of a station's (wherever the
station is attached), never inside the node."""
from types import SimpleNamespace

import pytest

from testbed.capture import CaptureError, wire_end
from testbed.plan import default_plan

PLAN = default_plan()


def world(attached=None):
    return SimpleNamespace(plan=PLAN, attached=attached or {})


def test_a_node_on_a_segment_is_captured_on_the_bridge_port():
    assert wire_end(world(), "g", "g-dmz") == (PLAN.segments["dmz"].bridge, "dmz-g")


def test_a_station_is_captured_on_its_access_point_port_of_the_segment_it_is_on():
    station = next(iter(PLAN.stations()))
    seg = next(iter(PLAN.attachments))
    assert wire_end(world({station: seg}), station, f"{station}-eth0") == (PLAN.segments[seg].bridge, f"ap-{station}")


def test_a_detached_station_has_no_wire():
    station = next(iter(PLAN.stations()))
    with pytest.raises(CaptureError, match="attached to no segment"):
        wire_end(world({station: None}), station, f"{station}-eth0")

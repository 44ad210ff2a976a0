import re

import pytest

from testbed import naming
from testbed.plan import default_plan


def test_every_interface_and_bridge_of_the_world_fits_ifnamsiz():
    plan = default_plan()
    names = [i.name for n in plan.nodes.values() for i in n.interfaces]
    names += [s.bridge for s in plan.segments.values()]
    names += [naming.bridge_port(i.segment, n.name) for n in plan.nodes.values() for i in n.interfaces if i.segment]
    names += [f(s) for s in plan.stations() for f in (naming.station_ifname, naming.station_port)]
    assert all(len(n) <= naming.IFNAMSIZ for n in names), [n for n in names if len(n) > 15]
    assert len(names) == len(set(names)), "interface names must be unique inside a world"


@pytest.mark.parametrize("bad", ["a" * 16, "has space", "-leading", "ünï"])
def test_bad_interface_names_are_refused_with_the_reason(bad):
    with pytest.raises(naming.BadName, match=re.escape(repr(bad))):
        naming.check_ifname(bad)


@pytest.mark.parametrize("bad", ["toolong", "Upper", "9lives", ""])
def test_node_names_are_short_so_derived_names_fit(bad):
    with pytest.raises(naming.BadName):
        naming.check_node_name(bad)


def test_run_ids_are_unique_across_workers_and_sort_by_time():
    ids = {naming.new_run_id(w, now=0) for w in ("gw0", "gw1", "main") for _ in range(50)}
    assert len(ids) == 150
    assert naming.new_run_id("gw0", now=0) < naming.new_run_id("gw0", now=3600)
    assert "gw1" in naming.new_run_id("gw1")


def test_case_dirname_is_file_system_safe():
    d = naming.case_dirname("cases/world/test_x.py::test_y[bare-world-r]")
    assert "/" not in d and ":" not in d and "[" not in d

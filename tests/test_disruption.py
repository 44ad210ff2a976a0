import pytest

from testbed.disruption import disruption


def rx(gaps, last):
    return {"gaps": gaps, "last_arrival": last}


def test_the_gap_spanning_the_move_is_the_disruption():
    gaps = [{"from_t": 1.0, "to_t": 1.2, "lost": 3},  # an earlier hiccup
            {"from_t": 9.99, "to_t": 10.35, "lost": 350}]
    d = disruption(10.0, 10.3, rx(gaps, 20.0))
    assert d.total == pytest.approx(0.36) and d.after_up == pytest.approx(0.05) and d.lost == 350


def test_no_gap_means_no_disruption_but_a_dead_stream_is_an_error():
    assert disruption(10.0, 10.001, rx([], 12.0)).total == 0.0
    with pytest.raises(ValueError, match="did not recover"):
        disruption(10.0, 10.3, rx([], 9.9))

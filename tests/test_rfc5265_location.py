"""RFC 5265 inside/outside detection (nodes/mip/rfc5265_location.py): the decision from the i-HA's
and the x-HA's answers to the two requests sent together on an attachment change."""
import pytest

from nodes.mip.rfc5265_location import (
    I_HA_NONE, I_HA_REPLY, I_HA_TRUSTED, X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE, decide,
)


@pytest.mark.parametrize("x_ha", [X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE])
def test_trusted_reply_means_inside_whatever_the_x_ha_says(x_ha):
    d = decide(I_HA_TRUSTED, x_ha, waited=0.01, at_i_home=False)
    assert (d.location, d.mode) == ("inside", "c")
    assert (d.x_mip, d.vpn, d.i_mip, d.next_up) == ("deregister", "down", "direct", None)
    assert "149" in d.reason


def test_trusted_reply_at_home_is_mode_home():
    d = decide(I_HA_TRUSTED, X_HA_NONE, waited=0.0, at_i_home=True)
    assert (d.location, d.mode, d.vpn, d.i_mip) == ("inside", "home", "down", "direct")


def test_no_i_ha_reply_waits_for_the_window_then_outside():
    early = decide(I_HA_NONE, X_HA_ACCEPTED, waited=0.5, at_i_home=False, window=1.0)
    assert (early.location, early.mode, early.vpn, early.x_mip) == ("undecided", None, None, None)
    late = decide(I_HA_NONE, X_HA_ACCEPTED, waited=1.0, at_i_home=False, window=1.0)
    assert (late.location, late.mode) == ("outside", "cvc")
    assert (late.x_mip, late.vpn, late.i_mip) == ("register", "up", "through-vpn")
    assert "silently" in late.reason


def test_a_reply_without_149_is_outside_at_once():
    d = decide(I_HA_REPLY, X_HA_NONE, waited=0.0, at_i_home=False)
    assert (d.location, d.mode) == ("outside", "cvc")


@pytest.mark.parametrize("up, first", [((False, False, False), "x-mip"), ((True, False, False), "vpn"),
                                       ((True, True, False), "i-mip"), ((True, True, True), None)])
def test_outside_brings_x_mip_ike_and_i_mip_up_in_that_order(up, first):
    assert decide(I_HA_NONE, X_HA_ACCEPTED, waited=5, at_i_home=False, layers_up=up).next_up == first


def test_unknown_outcomes_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="trusted-reply"):
        decide("maybe", X_HA_NONE, 0, False)
    with pytest.raises(ValueError, match="accepted"):
        decide(I_HA_NONE, "ok", 0, False)


def test_decision_as_dict_names_every_layer():
    assert set(decide(I_HA_NONE, X_HA_NONE, 2, False).as_dict()) == {
        "location", "mode", "x_mip", "vpn", "i_mip", "next_up", "reason"}

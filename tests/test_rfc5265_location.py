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


@pytest.mark.parametrize("i_ha, waited, location, mode", [(I_HA_TRUSTED, 0.0, "inside", "f"),
                                                          (I_HA_NONE, 1.0, "outside", "fvc")])
def test_through_a_foreign_agent_the_modes_are_f_and_fvc(i_ha, waited, location, mode):
    d = decide(i_ha, X_HA_NONE, waited=waited, at_i_home=False, via_fa=True)
    assert (d.location, d.mode) == (location, mode)


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


# ---- the request to the i-HA and what its answer means, against the HA core ----------------------
from ipaddress import IPv4Address as A, IPv4Network  # noqa: E402

from nodes.core import Addr  # noqa: E402
from nodes.mip.actions import SendUdp  # noqa: E402
from nodes.mip.auth import SecurityAssociation  # noqa: E402
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry  # noqa: E402
from nodes.mip.mn import MobileNodeConfig  # noqa: E402
from nodes.mip.mn_messages import Identifications, request_for  # noqa: E402
from nodes.mip.rfc5265_location import i_ha_outcome, probe_attempt  # noqa: E402

I_HA, I_HOA, NET = A("10.1.1.2"), A("10.1.1.100"), IPv4Network("10.1.1.0/24")
SA = SecurityAssociation(1001, b"i-mip-key-testbed")
MN = MobileNodeConfig(I_HOA, I_HA, NET, SA, iface="vpn0", reverse_tunnel=True)


def _ask(source: str, at_home: bool, **ha):
    ha_core = HomeAgent(HomeAgentConfig(I_HA, [MobileNodeEntry(I_HOA, SA)], home_iface="home0",
                                        trusted_networks=["10.1.0.0/16"], **ha))
    attempt = probe_attempt(MN, source, 100.0, Identifications(lambda n: bytes(n)).next(100.0), at_home)
    ha_core.receive_datagram(request_for(MN, attempt), Addr(source, 40000, str(I_HA), 434), 100.0)
    replies = [a for a in ha_core.drain_actions() if isinstance(a, SendUdp)]
    return attempt, replies, ha_core


def test_from_the_intranet_visited_subnet_the_i_ha_answers_with_149():
    attempt, replies, _ = _ask("10.1.4.100", at_home=False)
    assert attempt.mode == "colocated" and attempt.lifetime > 0 and str(attempt.care_of_address) == "10.1.4.100"
    assert len(replies) == 1 and replies[0].dport == 40000
    assert i_ha_outcome(MN, attempt, replies[0].payload) == ("trusted-reply", None)


def test_at_home_the_request_is_a_deregistration_answered_with_149():
    attempt, replies, _ = _ask("10.1.1.100", at_home=True)
    assert (attempt.mode, attempt.lifetime) == ("home", 0)
    assert i_ha_outcome(MN, attempt, replies[0].payload) == ("trusted-reply", None)


def test_from_outside_the_i_ha_says_nothing_and_counts_the_drop():
    _attempt, replies, ha_core = _ask("192.0.2.100", at_home=False, drop_untrusted=True)
    assert replies == []
    assert ha_core.status(100.0).as_dict()["drops"].get("untrusted-source") == 1


def test_a_reply_without_149_and_a_forged_one():
    attempt, replies, _ = _ask("192.0.2.100", at_home=False)  # an i-HA that answers everyone
    assert i_ha_outcome(MN, attempt, replies[0].payload) == ("reply", None)
    forged = bytearray(replies[0].payload)
    forged[-1] ^= 1
    assert i_ha_outcome(MN, attempt, bytes(forged)) == (None, "reply-bad-auth")


def test_through_a_foreign_agent_the_request_names_the_agents_care_of_address():
    attempt = probe_attempt(MN, "10.1.4.1", 100.0, Identifications(lambda n: bytes(n)).next(100.0), at_i_home=False,
                            agent="10.1.4.1")
    assert (attempt.mode, str(attempt.care_of_address), str(attempt.dst), attempt.src) == ("fa", "10.1.4.1", "10.1.4.1", I_HOA)
    ha_core = HomeAgent(HomeAgentConfig(I_HA, [MobileNodeEntry(I_HOA, SA)], home_iface="home0",
                                        trusted_networks=["10.1.0.0/16"]))
    # the agent relays it from its own address on the intranet's visited subnet
    ha_core.receive_datagram(request_for(MN, attempt), Addr("10.1.4.1", 434, str(I_HA), 434), 100.0)
    replies = [a for a in ha_core.drain_actions() if isinstance(a, SendUdp)]
    assert i_ha_outcome(MN, attempt, replies[0].payload) == ("trusted-reply", None)


def test_an_agents_denial_is_not_the_i_has_answer_and_69_offers_its_lifetime():
    from nodes.mip.rfc5265_location import agent_lifetime_offer
    from nodes.wire.mip import RegistrationReply, ReplyCode
    attempt = probe_attempt(MN, "192.0.2.1", 100.0, Identifications(lambda n: bytes(n)).next(100.0), at_i_home=False,
                            agent="192.0.2.1")
    unreachable = RegistrationReply(ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 0, I_HOA, I_HA, attempt.identification).encode()
    assert i_ha_outcome(MN, attempt, unreachable) == (None, "agent-denial-80")
    assert agent_lifetime_offer(MN, attempt, unreachable) is None
    too_long = RegistrationReply(ReplyCode.FA_LIFETIME_TOO_LONG, 4, I_HOA, I_HA, attempt.identification).encode()
    assert agent_lifetime_offer(MN, attempt, too_long) == 4


def test_the_x_ha_deregistration_removes_the_binding():
    from nodes.mip.rfc5265_location import deregistration_attempt
    _attempt, _replies, ha_core = _ask("10.1.4.100", at_home=False)  # a binding on 10.1.4.100 (i-HA core as any HA)
    assert ha_core.status(100.0).as_dict()["bindings"]
    dereg = deregistration_attempt(MN, "10.1.4.100", 101.0, Identifications(lambda n: bytes(n)).next(101.0))
    assert (dereg.lifetime, str(dereg.care_of_address), dereg.dst) == (0, "10.1.4.100", I_HA)
    ha_core.receive_datagram(request_for(MN, dereg), Addr("10.1.4.100", 40001, str(I_HA), 434), 101.0)
    replies = [a for a in ha_core.drain_actions() if isinstance(a, SendUdp)]
    assert replies and replies[0].payload[1] == 0, "the deregistration must be accepted (code 0)"
    assert ha_core.status(101.0).as_dict()["bindings"] == []

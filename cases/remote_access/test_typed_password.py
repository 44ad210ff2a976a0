"""The password typed by the user (draft-gupta section 4: "Setting up the tunnel requires the user to
type a password"; RFC 7296 section 2.16, EAP in IKE_AUTH).

Our client runs on a pseudo-terminal as a person would run it, asks for alice's password at its
prompt, and the case types it:
  right   the tunnel comes up and R reaches H through it;
  wrong   the gateway refuses (EAP-Failure / AUTHENTICATION_FAILED), no tunnel, nothing reaches H.
Either way the typed password is not echoed on the terminal and is stored nowhere afterwards: no
file the case, the client or the run wrote outside the gateway, which holds alice's password by
necessity (configs, logs, structured events, captures, the run
directory with its sockets and mounts) contains it.

The installed third-party command-line client that prompts for an EAP password is not driven
here: its IKEv2 EAP profiles require the gateway to authenticate with a public key
and certificate, and this world's gateways authenticate with a pre-shared key (the testbed has no
PKI yet).
"""
from __future__ import annotations

import pytest

from cases.security.test_auth import error_names
from testbed.daemons import Daemon, daemon_command
from testbed.ipsec_checks import PLAN, established
from testbed.profiles import start_roles
from testbed.terminal import start_on_terminal

pytestmark = pytest.mark.scenario("remote-access-typed-password")

H = str(PLAN.address("h"))


def files_containing(secret: bytes, *dirs, besides: str) -> list[str]:
    """Files under `dirs` that contain `secret`, but for those of node `besides` (the gateway, which
    holds the user's password by necessity: EAP-MD5 checks it there)."""
    found = []
    for d in dirs:
        for path in d.rglob("*"):
            if path.is_file() and not path.is_symlink() and not path.name.startswith(f"{besides}."):
                try:
                    if secret in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    pass
    return found


@pytest.mark.req("gupta-4-password")
@pytest.mark.parametrize("typed", ["right", "wrong"])
def test_tunnel_needs_the_password_typed_at_the_prompt(world, scenario, case_dir, typed):
    gw_role, client_role = scenario.roles["gw"], scenario.roles["client"]
    start_roles(world, [gw_role])
    right = gw_role.config["users"]["alice"]["password"]
    password = right if typed == "right" else "not-" + right
    argv, ctl, events = daemon_command(world, "r", "daemons.vpn_client", "client", config=client_role.config)
    term = start_on_terminal(world, "r", "client", argv)
    term.expect(r"password for alice: ")
    term.type_line(password)
    term.expect(r"^READY$", timeout=15)
    client = Daemon("r", "client", term, ctl, events)
    status = client.status()

    if typed == "right":
        assert established(status), f"the right password typed, but no tunnel: {status.get('last_error')}"
        assert world.ping("r", H, timeout=2), "tunnel up, but R does not reach H through it"
    else:
        assert not established(status), "a wrong password typed, and a tunnel came up"
        names = error_names(status)
        assert names & {"AUTHENTICATION_FAILED", "EAP_FAILURE"}, f"no refusal reported, errors: {names or status}"
        assert not world.ping("r", H, timeout=1), "a wrong password typed, yet R reaches H"

    client.stop()
    assert password not in term.screen, "the typed password was echoed on the terminal"
    leaks = files_containing(password.encode(), case_dir, world.run.dir, besides=gw_role.node)
    assert not leaks, f"the typed password is stored on disk in {leaks}"

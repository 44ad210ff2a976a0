"""EN-I: a remote-access client under test as the IKEv2 original initiator, the tester in the
gateway's place (scenario conformance-en: R on fn1, no gateway role; the tester answers at G_e
inside node g, testbed/conformance/ike_gateway_env.py).

One world per implementation and worker, but the client is not started with it: the client
initiates as soon as it starts, so each part starts it afresh with the tester already listening
(its "reset") and stops it at the part's end. The start runs in a background thread, since a
profile's start may wait for the client's first attempt to end (a daemon that says READY after
it, or one told over its control interface to initiate), and that attempt is what the part answers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from testbed.conformance.iut import Iut, iut_world, parametrize_iut

SCENARIO, ROLE, LABEL = "conformance-en", "client", "EN-I"


def pytest_generate_tests(metafunc):
    parametrize_iut(metafunc, "en", "vpn-client", ROLE)


@dataclass
class ClientIut(Iut):
    """The client in its world; started per part by `start_client`, stopped by `reset` (before a
    part) and `stop_client` (after it)."""
    starter: tuple | None = None
    start_error: BaseException | None = None
    first_process: int = 0

    @property
    def handle(self):
        return self.roles.get(self.role)

    def start_client(self) -> None:
        """Start the client role in the background: it initiates toward the tester at once. The
        thread that starts it lives until the client stops (a node process dies with the thread
        that started it), and stops it."""
        from testbed.profiles import start_role

        self.stop_client()
        self.first_process = len(self.world.processes)
        self.start_error = None
        role = self.scenario.roles[self.role]
        started, stop = threading.Event(), threading.Event()

        def run():
            try:
                self.roles[self.role] = start_role(self.world, role)
            except BaseException as exc:  # noqa: BLE001 - kept for the report; the part judges the wire
                self.start_error = exc
            finally:
                started.set()
            stop.wait()
            h = self.roles.pop(self.role, None)
            if h is not None:
                h.stop()
        self.starter = (threading.Thread(target=run, name=f"client-{self.role}", daemon=True), started, stop)
        self.starter[0].start()
        self.restarts += 1

    def stop_client(self) -> None:
        """Stop the client, also while its start is still waiting for its first attempt: its
        processes in the node end first (which ends the wait), then the role's own stop runs."""
        if self.starter is None:
            return
        t, started, stop = self.starter
        if not started.wait(0.05):
            node = self.scenario.roles[self.role].node
            for p in self.world.processes[self.first_process:]:
                if p.node == node:
                    p.stop()
            started.wait(30)
        stop.set()
        t.join(30)
        self.starter = None

    def reset(self) -> None:
        self.stop_client()

    def stop_roles(self) -> None:
        self.stop_client()
        super().stop_roles()


@pytest.fixture(scope="session")
def en(request, testbed_run, pytestconfig):
    """A remote-access client under test (scenario conformance-en), not yet started."""
    with iut_world(testbed_run, pytestconfig, SCENARIO, ROLE, request.param, LABEL, cls=ClientIut,
                   start_roles=False) as iut:
        yield iut


@pytest.fixture
def gw(en, request, case_dir):
    """The IKEv2 tester in the gateway's place (G_e in node g), listening before the client under
    test starts; the client starts right after (its first IKE_SA_INIT is on its way when the part
    begins) and stops at the part's end. The transcript (pcap, ladder) lands in the part's directory."""
    from testbed.conformance.ike_gateway_env import GatewayTester, Site

    en.before_part(request)
    plan, client = en.world.plan, en.scenario.roles[ROLE]
    site = Site(node_pid=en.world.pid("g"), local=str(client.config["gateway"]),
                client=str(plan.attachments[en.scenario.stations[client.node]].address),
                identity=str(client.config["identity"]), psk=str(client.config["psk"]).encode(),
                inside_host=str(plan.address("h")))
    tester = GatewayTester.open(site, en.world, client.node)
    try:
        en.start_client()
        yield tester
    finally:
        en.stop_client()
        tester.close()
        tester.write_transcript(case_dir / "captures")

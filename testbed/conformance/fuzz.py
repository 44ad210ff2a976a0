"""IKEv2 robustness (`testbed fuzz ike`): a seeded, bounded mutation fuzzer against a security gateway
under test, with health checks and a verdict per implementation.

For each state of an exchange the tester takes the valid request it would send there and sends a
mutation of it (testbed/conformance/fuzz_mutators.py):

    IKE_SA_INIT       a fresh IKE SA's first request
    IKE_AUTH          the request after a valid IKE_SA_INIT
    INFORMATIONAL     an empty INFORMATIONAL on an established "work" IKE SA
    CREATE_CHILD_SA   a rekey of the work SA's child SA
    DELETE            an INFORMATIONAL deleting the work SA's child SA

Mutation `index` of a run seeded `seed` is drawn from its own random source
(`fuzz_mutators.mutation_rng`) in state STATES[index % 5], so `--seed S --only I` replays it alone
(on a fresh session: the bytes differ where the session's SPIs, nonces and keys do; the recorded
hex is the message that was sent).

Watching the IUT: after every mutation its processes (world.processes on its node) must still run
(else: a crash, caught at once); every `check_every` mutations and at the end a health check: a
correct client must establish a fresh IKE SA and pass a ping through its child SA (else: a hang),
and the "victim" IKE SA established at the start (with another user) must still carry a ping (else:
a lost tunnel). A finding records the seed, the mutation index and the mutated message (hex) of
the mutation that preceded it (and the suspects since the last good check), then the IUT is reset
(the profile's reset; a restart after a crash). Requests the IUT sends to the tester's IKE SAs
(DPD) are answered so that only the IUT can lose a tunnel.

Housekeeping that keeps a long run fair to the IUT: the half-open IKE SAs a mutation leaves (an
IKE_SA_INIT accepted) are closed by an IKE_AUTH that fails authentication; an IKE SA a mutated
IKE_AUTH establishes replaces the work SA (the old one deleted); the work SA's Message IDs are
re-synchronised by liveness probes after any mutation without a clean answer, and a dead work SA
is replaced.
"""
from __future__ import annotations

import dataclasses
import json
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.conformance.fuzz_mutators import Mutation, model_of, mutate, mutation_rng
from testbed.conformance.ike import constants as c
from testbed.conformance.ike.parse import ParsedMessage, parse_header, parse_message
from testbed.conformance.ike.session import IkeSession

STATES = ("IKE_SA_INIT", "IKE_AUTH", "INFORMATIONAL", "CREATE_CHILD_SA", "DELETE")
ESTABLISHED_STATES = STATES[2:]
HELPER_PROCESSES = ("tcpdump", "capture", "dnsmasq")


def state_of(index: int) -> str:
    return STATES[index % len(STATES)]


def valid_request(state: str, s: IkeSession, psk: bytes = b"", idi: str = "") -> bytes:
    """The valid request the tester sends in `state` on session `s` (IKE_SA_INIT: a fresh session;
    IKE_AUTH: after IKE_SA_INIT; the others: an established IKE SA). Requests on an established SA
    take s.next_mid without advancing it."""
    if state == "IKE_SA_INIT":
        return s.sa_init_request()
    if state == "IKE_AUTH":
        return s.auth_request(psk=psk, idi=idi, message_id=s.next_mid)
    if state == "INFORMATIONAL":
        return s.informational_request([], message_id=s.next_mid)
    if state == "CREATE_CHILD_SA":
        return s.create_child_request(rekey=s.children[-1] if s.children else None, message_id=s.next_mid)
    if state == "DELETE":
        return s.delete_request([s.children[-1].spi_in] if s.children else [], message_id=s.next_mid)
    raise ValueError(state)


def mutation_for(state: str, s: IkeSession, valid: bytes, seed: int, index: int) -> tuple[Mutation, bytes]:
    """Mutation `index` of the valid request of `state` on `s`, and its bytes."""
    cipher = s.cipher_out if state != "IKE_SA_INIT" else None
    mut = mutate(model_of(valid, cipher), mutation_rng(seed, index), len(valid))
    return mut, mut.encode(cipher)


@dataclass
class FuzzConfig:
    seed: int = 1
    count: int = 200
    seconds: float = 60.0
    check_every: int = 20
    only: list[int] | None = None     # replay these mutation indexes only
    answer_timeout: float = 0.08      # wait for the IUT's answer to a mutated request
    probe_timeout: float = 0.15       # liveness probes of the work SA, housekeeping
    health_timeout: float = 2.0       # a correct client's exchange (and a ping) in a health check
    narrow: bool = True               # after a hang or lost tunnel, replay the suspects one by one


@dataclass
class Finding:
    kind: str                     # crash, hang, lost-tunnel
    index: int | None             # the mutation that preceded it (the last one sent)
    state: str | None
    mutation: str | None
    message_hex: str | None
    detail: str
    suspects: list[dict] = field(default_factory=list)  # every mutation since the last good check
    reproduced_by: int | None = None
    replay: str = ""


class IkeFuzzer:
    """The fuzzer against one IUT (an iut.Iut: world, scenario, roles, role, reset) through one IkeTester
    (the user of health checks and work SAs); the victim SA uses the config's second user."""

    def __init__(self, iut, tester, cfg: FuzzConfig, say: Callable[[str], None] | None = None,
                 replay_cmd: str = "testbed fuzz ike"):
        from testbed.conformance.ike_env import IkeTester
        self.iut, self.tester, self.cfg = iut, tester, cfg
        self.say = say or (lambda line: None)
        self.replay_cmd = replay_cmd
        role = iut.scenario.roles[iut.role]
        self.node = role.node
        users = list(role.config.get("users", {}).items())
        if len(users) > 1 and users[0][0] == tester.peer.identity:
            name, ucfg = users[1]
            vpeer = dataclasses.replace(tester.peer, identity=name, psk=str(ucfg["psk"]).encode())
        else:
            vpeer = tester.peer
        self.victim_tester = IkeTester(vpeer, tester.transport)
        self.victim: IkeSession | None = None
        self.work: IkeSession | None = None
        self.procs: list = []
        self.findings: list[Finding] = []
        self.sent = 0
        self.by_state = {s: {"sent": 0, "answered": 0, "silent": 0, "error_notify": 0, "accepted": 0} for s in STATES}
        self.by_layer: dict[str, int] = {}
        self.health_checks = 0
        self.work_replaced = 0
        self.suspects: list[dict] = []
        self.last: dict | None = None
        self.narrowing = False
        self.replayed: list[dict] = []  # with --only: what each replayed mutation sent and got

    # ------------------------------------------------------------------ the IUT's processes
    def _snapshot_procs(self) -> None:
        self.procs = [p for p in self.iut.world.processes if p.node == self.node and p.running()
                      and not any(k in p.name for k in HELPER_PROCESSES)]

    def crashed(self) -> list[str]:
        return [f"{p.name} (pid {p.pid}, exit status {p.popen.returncode})" for p in self.procs if not p.running()]

    # ------------------------------------------------------------------ I/O
    def _own_sessions(self) -> list[IkeSession]:
        return [s for s in (self.victim, self.work) if s is not None]

    def _service(self, data: bytes) -> None:
        """A request of the IUT on one of our established SAs (DPD, a Delete): answered (empty)."""
        h = parse_header(data)
        for s in self._own_sessions():
            if h.spi_i == s.spi_i and s.keys is not None and h.exchange == c.INFORMATIONAL:
                msg = s.parse(data)
                if msg.ok:
                    self.tester.send(s.informational_response([]))
                    if any(p.type == c.DELETE and p.fields.get("protocol") == c.PROTO_IKE for p in msg.inner or []):
                        if s is self.work:
                            self.work = None
                return

    def recv_answer(self, spis: set[bytes], timeout: float, mid: int | None = None) -> ParsedMessage | None:
        """The IUT's next response on an IKE SA with one of `spis` (any Message ID unless `mid`),
        serving the IUT's own requests meanwhile."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.tester.transport.recv(left)
            if r is None:
                return None
            if r.kind != "ike" or len(r.data) < c.IKE_HEADER_LEN:
                continue
            h = parse_header(r.data)
            if not h.flags & c.FLAG_R:
                self._service(r.data)
                continue
            if h.spi_i in spis and (mid is None or h.message_id == mid):
                return parse_message(r.data)
        return None

    def _decrypt(self, s: IkeSession, msg: ParsedMessage | None) -> ParsedMessage | None:
        if msg is None or s.keys is None:
            return msg
        return s.parse(msg.raw)

    # ------------------------------------------------------------------ sessions
    def new_session(self, tester=None) -> IkeSession:
        t = tester or self.tester
        return IkeSession(initiator=True, local=(t.peer.local, c.IKE_PORT), peer=(t.peer.gateway, c.IKE_PORT))

    def _init(self, s: IkeSession, tester=None, timeout: float | None = None) -> bool:
        t = tester or self.tester
        resp = None
        kw: dict = {}
        for _ in range(3):
            t.send(s.sa_init_request(**kw), port=c.IKE_PORT)
            resp = self.recv_answer({s.spi_i}, timeout or self.cfg.health_timeout, 0)
            if resp is None or resp.get(c.SA) is not None:
                break
            cookie, ke = resp.notify(c.N_COOKIE), resp.notify(c.N_INVALID_KE_PAYLOAD)
            if cookie is not None:
                kw["cookie"] = cookie.fields["data"]
            elif ke is not None and len(ke.fields.get("data", b"")) >= 2:
                kw["ke_group"] = struct.unpack("!H", ke.fields["data"][:2])[0]
            else:
                return False
        if resp is None or resp.get(c.SA) is None:
            return False
        r = s.handle_sa_init_response(resp.raw)
        t.nat = t._nat_detected(s, resp)  # a responder that fakes a NAT: IKE on 4500, ESP in UDP
        t.ike_port = c.NAT_T_PORT if t.nat else c.IKE_PORT
        return r.ok and s.keys is not None

    def establish(self, tester=None, timeout: float | None = None) -> IkeSession | None:
        """A correct client's IKE_SA_INIT and IKE_AUTH (PSK, CP, a child SA); None when it fails."""
        t = tester or self.tester
        s = self.new_session(t)
        if not self._init(s, t, timeout):
            return None
        t.send(s.auth_request(psk=t.peer.psk, idi=t.peer.identity))
        resp = self._decrypt(s, self.recv_answer({s.spi_i}, timeout or self.cfg.health_timeout, 1))
        if resp is None:
            return None
        s.handle_auth_response(resp.raw, psk=t.peer.psk)
        return s if s.children and s.peer_auth_ok else None

    def ping(self, s: IkeSession, tester=None, tries: int = 2) -> bool:
        t = tester or self.tester
        if not s.children:
            return False
        for _ in range(tries):
            if t.ping(s, timeout=min(1.0, self.cfg.health_timeout)):
                return True
        return False

    def delete_ike(self, s: IkeSession | None, wait: float = 0.0) -> None:
        if s is None or s.keys is None:
            return
        data = s.delete_request(ike=True, message_id=s.next_mid)
        self.tester.send(data)
        if wait:
            self.recv_answer({s.spi_i}, wait, s.next_mid)

    def ensure_work(self) -> bool:
        if self.work is None:
            self.work = self.establish(timeout=self.cfg.health_timeout)
            self.work_replaced += 1
        return self.work is not None

    def _replace_work(self, new: IkeSession | None) -> None:
        old, self.work = self.work, new
        if old is not None and old is not new:
            self.delete_ike(old)
        self.work_replaced += 1

    def _resync_work(self) -> None:
        """After a mutation without a clean answer: find the Message ID the IUT expects (E, then E+1),
        or give the work SA up."""
        s = self.work
        if s is None:
            return
        e = s.next_mid
        for mid in (e, e + 1):
            self.tester.send(s.informational_request([], message_id=mid))
            if self.recv_answer({s.spi_i}, self.cfg.probe_timeout, mid) is not None:
                s.next_mid = mid + 1
                return
        self._replace_work(None)

    # ------------------------------------------------------------------ one mutation
    def run_one(self, index: int) -> dict | None:
        """Send mutation `index` in its state; returns its record (None: the preamble failed)."""
        state = state_of(index)
        if state == "IKE_SA_INIT":
            return self._one_init(index)
        if state == "IKE_AUTH":
            return self._one_auth(index)
        return self._one_established(index, state)

    def _record(self, index: int, state: str, mut: Mutation, data: bytes, answer: ParsedMessage | None) -> dict:
        st = self.by_state[state] if not self.narrowing else {k: 0 for k in self.by_state[state]}
        st["sent"] += 1
        self.sent += 0 if self.narrowing else 1
        self.by_layer[mut.layer] = self.by_layer.get(mut.layer, 0) + (0 if self.narrowing else 1)
        if answer is None:
            st["silent"] += 1
        else:
            st["answered"] += 1
            if any(t is not None and t < 16384 for t in answer.notify_types()):
                st["error_notify"] += 1
        rec = {"index": index, "state": state, "layer": mut.layer, "mutation": mut.desc, "hex": data.hex(),
               "answer": None if answer is None else answer.summary()}
        self.last = rec
        if self.cfg.only is not None:
            self.replayed.append(rec)
        self.suspects.append({k: rec[k] for k in ("index", "state", "mutation")})
        return rec

    def _one_init(self, index: int) -> dict:
        s = self.new_session()
        valid = valid_request("IKE_SA_INIT", s)
        mut, data = mutation_for("IKE_SA_INIT", s, valid, self.cfg.seed, index)
        self.tester.send(data, port=c.IKE_PORT)
        answer = self.recv_answer({s.spi_i, data[:8]}, self.cfg.answer_timeout)
        rec = self._record(index, "IKE_SA_INIT", mut, data, answer)
        if answer is not None and answer.get(c.SA) is not None and answer.get(c.KE) is not None:
            self.by_state["IKE_SA_INIT"]["accepted"] += 1
            self._close_half_open(s, data, answer)
        return rec

    def _close_half_open(self, s: IkeSession, sent: bytes, answer: ParsedMessage) -> None:
        """A mutated IKE_SA_INIT was accepted: close the half-open SA with an IKE_AUTH whose AUTH is
        wrong (the IUT answers AUTHENTICATION_FAILED and forgets it)."""
        mine = parse_message(sent)
        s.spi_i = sent[:8]
        if mine.ok and mine.get(c.NONCE) is not None:
            s.ni = mine.get(c.NONCE).fields.get("data", s.ni)
        if not s.handle_sa_init_response(answer.raw).ok or s.keys is None:
            return
        s.init_request = sent
        self.tester.send(s.auth_request(idi=self.tester.peer.identity, auth_data=bytes(32)))
        self.recv_answer({s.spi_i}, self.cfg.probe_timeout, 1)

    def _one_auth(self, index: int) -> dict | None:
        s = self.new_session()
        if not self._init(s, timeout=self.cfg.health_timeout):
            return None
        valid = valid_request("IKE_AUTH", s, self.tester.peer.psk, self.tester.peer.identity)
        mut, data = mutation_for("IKE_AUTH", s, valid, self.cfg.seed, index)
        self.tester.send(data)
        answer = self._decrypt(s, self.recv_answer({s.spi_i, data[:8]}, max(self.cfg.answer_timeout, 0.15)))
        rec = self._record(index, "IKE_AUTH", mut, data, answer)
        if answer is not None and answer.ok and answer.get(c.SA) is not None and answer.get(c.AUTH) is not None:
            self.by_state["IKE_AUTH"]["accepted"] += 1
            s.handle_auth_response(answer.raw, psk=self.tester.peer.psk)
            s.next_mid = 2
            if s.children and s.peer_auth_ok:
                self._replace_work(s)  # the IUT may replace the user's older IKE SA (unique ids)
            else:
                self.delete_ike(s)
        elif answer is None:  # the half-open SA stays: fail its authentication
            self.tester.send(s.auth_request(idi=self.tester.peer.identity, auth_data=bytes(32), message_id=1))
            self.recv_answer({s.spi_i}, self.cfg.probe_timeout, 1)
        return rec

    def _one_established(self, index: int, state: str) -> dict | None:
        if not self.ensure_work():
            return None
        s = self.work
        e = s.next_mid
        valid = valid_request(state, s)
        mut, data = mutation_for(state, s, valid, self.cfg.seed, index)
        self.tester.send(data)
        raw = self.recv_answer({s.spi_i, data[:8]}, self.cfg.answer_timeout)
        answer = self._decrypt(s, raw)
        rec = self._record(index, state, mut, data, answer)
        consumed = answer is not None and answer.message_id == e and answer.spi_i == s.spi_i
        clean = consumed and answer.ok and not any(t is not None and t < 16384 for t in answer.notify_types())
        if consumed and not clean:  # an error answer: the IUT may have closed the IKE SA (RFC 7296 2.21.3)
            s.next_mid = e + 1
            self.tester.send(s.informational_request([], message_id=e + 1))
            if self.recv_answer({s.spi_i}, self.cfg.probe_timeout, e + 1) is not None:
                s.next_mid = e + 2
            elif self.work is s:
                self._replace_work(None)
        elif clean:
            s.next_mid = e + 1
            self.by_state[state]["accepted"] += 1
            if state == "CREATE_CHILD_SA" and answer.get(c.SA) is not None:
                s.handle_create_child_response(answer.raw)
            elif state == "DELETE" and s.children:
                s.children.pop()
            if any(p.type == c.DELETE and p.fields.get("protocol") == c.PROTO_IKE for p in answer.inner or []):
                self.work = None
        elif self.work is s:
            self._resync_work()
        return rec

    # ------------------------------------------------------------------ health and findings
    def start(self) -> bool:
        """Baseline: the IUT's processes, the victim SA (its ping must work) and a work SA."""
        self._snapshot_procs()
        self.victim = self.establish(self.victim_tester)
        if self.victim is None or not self.ping(self.victim, self.victim_tester):
            return False
        self.work = self.establish()
        return self.work is not None

    def health(self) -> list[Finding]:
        self.health_checks += 1
        found: list[Finding] = []
        dead = self.crashed()
        if dead:
            found.append(self._finding("crash", "the IUT's process exited: " + ", ".join(dead)))
        else:
            fresh = None
            for _ in range(2):
                fresh = self.establish()
                if fresh is not None and self.ping(fresh):
                    break
                self.delete_ike(fresh)
                fresh = None
            if fresh is None:
                dead = self.crashed()
                alive = self._answers_on(self.victim, self.victim_tester)
                found.append(self._finding("crash" if dead else "hang",
                                           "the IUT's process exited: " + ", ".join(dead) if dead else
                                           f"a correct client got no IKE SA with a working child SA within "
                                           f"{self.cfg.health_timeout} s (two tries); the IUT "
                                           f"{'still answers' if alive else 'does not answer'} a liveness check "
                                           f"on the victim IKE SA"))
            if self.victim is None or not self.ping(self.victim, self.victim_tester):
                found.append(self._finding("lost-tunnel", "the victim IKE SA established at the start no longer "
                                                          "carries a ping through its child SA"))
            if not found:
                self._replace_work(fresh)
            else:
                self.delete_ike(fresh)
        if not found:
            self.suspects = []
        return found

    def _answers_on(self, s: IkeSession | None, tester) -> bool:
        """An empty INFORMATIONAL on an established SA is answered (triage of a failed health check:
        a refusal of new IKE SAs, e.g. a per-peer half-open limit, or a wedged IUT)."""
        if s is None or s.keys is None:
            return False
        mid = s.next_mid
        tester.send(s.informational_request([], message_id=mid))
        s.next_mid = mid + 1
        return self.recv_answer({s.spi_i}, self.cfg.health_timeout, mid) is not None

    def _finding(self, kind: str, detail: str) -> Finding:
        last = self.last or {}
        f = Finding(kind, last.get("index"), last.get("state"), last.get("mutation"), last.get("hex"), detail,
                    list(self.suspects))
        idx = f.index if f.index is not None else 0
        f.replay = f"{self.replay_cmd} --impl vpn-gateway={self.iut.impl} --seed {self.cfg.seed} --only {idx}"
        return f

    def recover(self, crashed: bool) -> bool:
        """Back to a clean IUT (reset; a restart after a crash or a failed reset) and a new victim."""
        from testbed.profiles import restart_role
        self.victim = self.work = None
        try:
            if crashed:
                raise RuntimeError("crashed")
            self.iut.reset()
        except Exception:  # noqa: BLE001 - a dead or wedged IUT: restart it
            self.iut.roles[self.iut.role] = restart_role(self.iut.world, self.iut.scenario, self.iut.roles,
                                                         self.iut.role)
        self.suspects = []
        return self.start()

    def _narrow(self, f: Finding) -> None:
        """Replay the suspects one at a time on a clean IUT, each followed by a health check: the first
        that brings the finding back is the one to replay."""
        if f.kind == "crash" or not self.cfg.narrow or len(f.suspects) <= 1:
            if f.kind == "crash" or len(f.suspects) == 1:
                f.reproduced_by = f.index  # a crash is caught right after the mutation that caused it
            return
        self.narrowing = True
        try:
            for sus in f.suspects:
                self.run_one(sus["index"])
                again = self.health()
                if any(g.kind == f.kind for g in again):
                    f.reproduced_by = sus["index"]
                    f.replay = f.replay.rsplit("--only", 1)[0] + f"--only {sus['index']}"
                    self.recover(any(g.kind == "crash" for g in again))
                    return
        finally:
            self.narrowing = False
            self.suspects = []

    def _handle(self, found: list[Finding]) -> None:
        for f in found:
            self.findings.append(f)
            self.say(f"  FINDING {f.kind} after mutation {f.index} ({f.state}: {f.mutation}); replay: {f.replay}")
        if not self.recover(any(f.kind == "crash" for f in found)):
            self.say("  the IUT did not come back after the recovery")
            return
        for f in found:
            if f.kind != "crash":
                self._narrow(f)
                break

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        t0 = time.monotonic()
        if not self.start():
            return self.result(t0, error="preamble failed: the victim or work IKE SA could not be established "
                                         "(or the victim's ping failed) before any mutation")
        indexes = self.cfg.only if self.cfg.only is not None else range(self.cfg.count)
        since = 0
        for index in indexes:
            if time.monotonic() - t0 > self.cfg.seconds:
                break
            self.run_one(index)
            since += 1
            dead = self.crashed()
            if dead:
                self._handle([self._finding("crash", "the IUT's process exited: " + ", ".join(dead))])
                since = 0
                continue
            if since >= self.cfg.check_every:
                since = 0
                found = self.health()
                if found:
                    self._handle(found)
                self.say(self.progress(t0))
        if since or not self.health_checks:
            found = self.health()
            if found:
                self._handle(found)
            self.say(self.progress(t0))
        return self.result(t0)

    def counts(self) -> dict:
        return {k: sum(1 for f in self.findings if f.kind == k) for k in ("crash", "hang", "lost-tunnel")}

    def progress(self, t0: float) -> str:
        n = self.counts()
        return (f"[{self.iut.impl}] {self.sent} mutations in {time.monotonic() - t0:.1f} s; health checks "
                f"{self.health_checks}; crashes {n['crash']}, hangs {n['hang']}, lost tunnels {n['lost-tunnel']}")

    def result(self, t0: float, error: str | None = None) -> dict:
        n = self.counts()
        return {"implementation": self.iut.impl, "seed": self.cfg.seed, "requested": self.cfg.count,
                "only": self.cfg.only, "mutations_sent": self.sent, "duration_s": round(time.monotonic() - t0, 2),
                "by_state": self.by_state, "by_layer": self.by_layer, "health_checks": self.health_checks,
                "work_sa_replaced": self.work_replaced, "crashes": n["crash"], "hangs": n["hang"],
                "lost_tunnels": n["lost-tunnel"], "findings": [dataclasses.asdict(f) for f in self.findings],
                "error": error, **({"replayed": self.replayed} if self.cfg.only is not None else {})}


# ---------------------------------------------------------------------------------------- the CLI

def _peer(world, scenario):
    from testbed.conformance.ike_env import Peer
    plan, gw = world.plan, scenario.roles["gw"]
    user, cfg = next(iter(gw.config["users"].items()))
    return Peer(node_pid=world.pid("r"), local=str(plan.attachments["fn1"].address),
                gateway=str(plan.address("g", "dmz")), identity=user, psk=cfg["psk"].encode(),
                inside_host=str(plan.address("h")))


def fuzz_impl(run, impl: str, cfg: FuzzConfig, log_dir: Path, say: Callable[[str], None]) -> dict:
    """Build the conformance-sgw world with `impl` as the gateway, fuzz it, tear it down."""
    from testbed.conformance.ics import statement_of
    from testbed.conformance.ike_env import IkeTester
    from testbed.conformance.iut import Iut
    from testbed.profiles import get, start_roles
    from testbed.scenario import load_named
    from testbed.world import World

    scenario = load_named("conformance-sgw").with_impls({"gw": impl})
    world = World.for_scenario(run, log_dir / impl / "logs", scenario)
    roles: dict = {}
    tester = None
    try:
        roles = start_roles(world, scenario.roles.values())
        iut = Iut("SGW-R", impl, world, scenario, roles, "gw", statement_of(get(impl)), log_dir / impl / "logs")
        tester = IkeTester.open(_peer(world, scenario))
        return IkeFuzzer(iut, tester, cfg, say).run()
    finally:
        if tester is not None:
            tester.close()
            try:
                tester.write_transcript(log_dir / impl)
            except Exception:  # noqa: BLE001 - evidence only
                pass
        for r in reversed(list(roles.values())):
            try:
                r.stop()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        world.stop()


def summary_lines(res: dict) -> list[str]:
    lines = [f"{res['implementation']}: seed {res['seed']}, {res['mutations_sent']} mutations in {res['duration_s']} s, "
             f"{res['health_checks']} health checks: {res['crashes']} crashes, {res['hangs']} hangs, "
             f"{res['lost_tunnels']} lost tunnels" + (f" -- ERROR {res['error']}" if res.get("error") else "")]
    for st, n in res["by_state"].items():
        lines.append(f"    {st:16} sent {n['sent']:5}  answered {n['answered']:5}  silent {n['silent']:5}  "
                     f"error notify {n['error_notify']:5}  accepted {n['accepted']:5}")
    for r in res.get("replayed", []):
        lines.append(f"    mutation {r['index']} ({r['state']}: {r['mutation']}) -> {r['answer'] or 'no answer'}")
        lines.append(f"      sent {r['hex']}")
    for f in res["findings"]:
        lines.append(f"    {f['kind'].upper()}: {f['detail']}")
        lines.append(f"      after mutation {f['index']} ({f['state']}: {f['mutation']})"
                     + (f", reproduced alone by mutation {f['reproduced_by']}" if f.get("reproduced_by") is not None else ""))
        lines.append(f"      replay: {f['replay']}")
    return lines


def run_cli(args) -> int:
    """`testbed fuzz ike`: every installed vpn-gateway profile (or the one --impl names), a world each;
    progress and a summary per implementation; reports/<run-id>/fuzz.json."""
    import random

    from mininet.log import setLogLevel

    from testbed.isolation import enter_private_netns
    from testbed.naming import new_run_id
    from testbed.profiles import able
    from testbed.runs import Run

    impls = dict(spec.split("=", 1) for spec in args.impl)
    chosen = impls.get("vpn-gateway") or impls.get("gw") or impls.get("*")
    profiles = [chosen] if chosen else able("vpn-gateway")
    if not profiles:
        print("error: no installed profile fills vpn-gateway", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    only = None
    if args.only:
        only = sorted({int(x) for x in str(args.only).split(",") if x.strip()})
    cfg = FuzzConfig(seed=seed, count=args.count, seconds=args.seconds, check_every=args.check_every, only=only,
                     narrow=not args.no_narrow)
    setLogLevel("critical")
    enter_private_netns()
    run_id = new_run_id("fuzz")
    out = Path(args.report_dir).resolve() / run_id
    out.mkdir(parents=True, exist_ok=True)
    run = Run.register(run_id)
    results: dict = {}

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        print(f"testbed fuzz ike: seed {seed}, at most {cfg.count if only is None else len(only)} mutations and "
              f"{cfg.seconds:g} s per implementation, health check every {cfg.check_every}; {', '.join(profiles)}",
              flush=True)
        for impl in profiles:
            say(f"[{impl}] starting the gateway")
            try:
                results[impl] = fuzz_impl(run, impl, cfg, out, say)
            except Exception as exc:  # noqa: BLE001 - the next implementation still runs
                results[impl] = {"implementation": impl, "seed": seed, "error": f"{type(exc).__name__}: {exc}",
                                 "mutations_sent": 0, "crashes": 0, "hangs": 0, "lost_tunnels": 0, "findings": [],
                                 "by_state": {}, "health_checks": 0, "duration_s": 0}
            (out / "fuzz.json").write_text(json.dumps({"run_id": run_id, "seed": seed, "implementations": results},
                                                      indent=1))
    finally:
        run.close()
    print("\nsummary")
    for res in results.values():
        for line in summary_lines(res):
            print(line)
    print(f"written to {out / 'fuzz.json'}")
    bad = any(r.get("error") or r["crashes"] or r["hangs"] or r["lost_tunnels"] for r in results.values())
    return 1 if bad else 0


__all__ = ["ESTABLISHED_STATES", "FuzzConfig", "Finding", "IkeFuzzer", "STATES", "fuzz_impl", "mutation_for",
           "run_cli", "state_of", "summary_lines", "valid_request"]

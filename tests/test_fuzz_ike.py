"""The mutation engine of `testbed fuzz ike` (testbed/conformance/fuzz_mutators.py, fuzz.py), in memory:
mutations are deterministic per seed and index, every one yields bytes, and this project's own IKEv2
core (nodes.ipsec.ike.IkeCore) fed every mutated message of every state counts and drops, never raises."""
from __future__ import annotations

import traceback

import pytest
from ike_fakelink import Pool

from nodes.core import Addr
from nodes.ipsec.ike import IkeConfig, IkeCore, SendIke, UserPolicy
from testbed.conformance.fuzz import STATES, mutation_for, state_of, valid_request
from testbed.conformance.fuzz_mutators import encode, model_of, mutate, mutation_rng
from testbed.conformance.ike import constants as c
from testbed.conformance.ike.session import Algorithms, ChildAlgorithms, IkeSession
from testbed.conformance.ike.transport import FakeTransport

CLIENT, GATEWAY = "198.51.100.10", "203.0.113.1"
PSK = b"alice-secret"
USER = "alice@example"
N = 250  # mutations per state and suite against the core


def gateway() -> IkeCore:
    users = {USER: UserPolicy(psk=PSK, subnets=["10.1.0.0/16"])}
    return IkeCore(IkeConfig("gw.example", ["aes128gcm16-aes256-sha256-prfsha256-ecp256-modp2048-curve25519"],
                             ["aes128gcm16", "aes256-sha256"], users=users, allocator=Pool(*(f"10.9.{i // 250}.{i % 250 + 1}" for i in range(5000))),
                             dns=["10.1.0.53"]))


class Bridge:
    """The tester's FakeTransport wired to an IkeCore (as tests/test_ike_tester_interop.py), with a clock."""

    def __init__(self, core: IkeCore):
        self.core = core
        self.t = FakeTransport(CLIENT, on_send=self._deliver)
        self.now = 0.0

    def _deliver(self, raw: bytes, dst: str, dport: int, sport: int, kind: str) -> None:
        self.core.receive_datagram(raw, Addr(CLIENT, sport, dst, dport), self.now)
        for act in self.core.drain_actions():
            if isinstance(act, SendIke):
                self.t.inject(act.data, GATEWAY, act.sport, act.dport)

    def send(self, data: bytes) -> bytes | None:
        self.now += 0.001
        self.t.send(data, GATEWAY, 500, 500)
        r = self.t.recv_ike(0)
        last = r
        while r is not None:  # keep the last answer, drop the rest
            last, r = r, self.t.recv_ike(0)
        return None if last is None else last.data


SUITES = {"gcm-ecp256": (Algorithms(), ChildAlgorithms()),
          "cbc-modp2048": (Algorithms(c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128, c.PRF_HMAC_SHA2_256, c.MODP2048),
                           ChildAlgorithms(c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128))}


def session(suite: str) -> IkeSession:
    algs, child = SUITES[suite]
    return IkeSession(True, Algorithms(**vars(algs)), child, local=(CLIENT, 500), peer=(GATEWAY, 500))


def init(b: Bridge, s: IkeSession) -> None:
    from testbed.conformance.ike.parse import parse_message
    answer = b.send(s.sa_init_request())
    cookie = parse_message(answer).notify(c.N_COOKIE)
    if cookie is not None:  # many half-open SAs: the core asks for a cookie (RFC 7296 2.6)
        answer = b.send(s.sa_init_request(cookie=cookie.fields["data"]))
    r = s.handle_sa_init_response(answer)
    assert r.ok and s.keys is not None, r.reason


def established(b: Bridge, suite: str) -> IkeSession:
    s = session(suite)
    init(b, s)
    reply = s.handle_auth_response(b.send(s.auth_request(psk=PSK, idi=USER)), psk=PSK)
    assert reply.ok and s.children and s.peer_auth_ok, reply.summary()
    s.next_mid = 2
    return s


# ----------------------------------------------------------------------------- determinism, bytes

def _models():
    b = Bridge(gateway())
    s0 = session("gcm-ecp256")
    init_valid = valid_request("IKE_SA_INIT", s0)
    s1 = session("gcm-ecp256")
    init(b, s1)
    auth_valid = valid_request("IKE_AUTH", s1, PSK, USER)
    s2 = established(b, "gcm-ecp256")
    out = {"IKE_SA_INIT": (init_valid, None), "IKE_AUTH": (auth_valid, s1.cipher_out)}
    for st in STATES[2:]:
        out[st] = (valid_request(st, s2), s2.cipher_out)
    return out


def test_model_round_trip_is_the_valid_message():
    for state, (valid, cipher) in _models().items():
        model = model_of(valid, cipher)
        again = model_of(encode(model, cipher)[0], cipher)
        assert again == model, state
        if cipher is None:
            assert model.encode() == valid


def test_mutations_are_deterministic_per_seed_and_index_and_yield_bytes():
    models = _models()
    layers, descs = set(), set()
    for index in range(1500):
        state = state_of(index)
        valid, cipher = models[state]
        model = model_of(valid, cipher)
        a = mutate(model, mutation_rng(42, index), len(valid))
        b = mutate(model, mutation_rng(42, index), len(valid))
        da, db = a.encode(cipher), b.encode(cipher)
        assert isinstance(da, bytes) and da, (index, a.desc)
        assert da == db and a.desc == b.desc, (index, a.desc)
        assert da != valid or a.layer == "header", (index, a.desc)  # a header value may be drawn unchanged
        layers.add((state, a.layer))
        descs.add(a.desc.split(":")[0])
    # another seed draws other mutations
    state_valid = models["INFORMATIONAL"]
    other = [mutate(model_of(*state_valid), mutation_rng(43, i)).desc for i in range(50)]
    same = [mutate(model_of(*state_valid), mutation_rng(42, i)).desc for i in range(50)]
    assert other != same
    # every layer was used in every state (sk only where encrypted)
    for state in STATES:
        want = {"header", "chain", "body", "field"} | ({"sk"} if state != "IKE_SA_INIT" else set())
        assert {lay for st, lay in layers if st == state} == want, state


def test_mutation_rng_is_independent_of_the_other_indexes():
    assert mutation_rng(7, 5).random() == mutation_rng(7, 5).random()
    assert mutation_rng(7, 5).random() != mutation_rng(7, 6).random()
    assert mutation_rng(7, 5).random() != mutation_rng(8, 5).random()


# ----------------------------------------------------------------------------- the core never raises

def _feed(b: Bridge, data: bytes, failures: list, index: int, state: str, desc: str) -> bytes | None:
    try:
        return b.send(data)
    except Exception as exc:  # noqa: BLE001 - the finding: the core must count and drop
        failures.append(f"mutation {index} ({state}: {desc}) raised {type(exc).__name__}: {exc}\n"
                        f"message {data.hex()}\n" + "".join(traceback.format_exc(limit=-3)))
        return None


@pytest.mark.parametrize("suite", list(SUITES))
def test_core_counts_and_drops_every_mutation(suite):
    seed = 7296
    failures: list[str] = []
    b = Bridge(gateway())
    work = established(b, suite)
    for index in range(N * len(STATES)):
        state = state_of(index)
        if state == "IKE_SA_INIT":
            s = session(suite)
            mut, data = mutation_for(state, s, valid_request(state, s), seed, index)
            _feed(b, data, failures, index, state, mut.desc)
            continue
        if state == "IKE_AUTH":
            s = session(suite)
            init(b, s)
            mut, data = mutation_for(state, s, valid_request(state, s, PSK, USER), seed, index)
            _feed(b, data, failures, index, state, mut.desc)
            continue
        mut, data = mutation_for(state, work, valid_request(state, work), seed, index)
        answer = _feed(b, data, failures, index, state, mut.desc)
        e = work.next_mid
        # keep the work SA usable: the Message ID the core expects, or a new work SA
        if answer is not None and work.parse(answer).message_id == e:
            work.next_mid = e + 1
        else:
            for mid in (e, e + 1):
                probe = b.send(work.informational_request([], message_id=mid))
                if probe is not None and work.parse(probe).message_id == mid:
                    work.next_mid = mid + 1
                    break
            else:
                work = established(b, suite)
        if state == "DELETE" and work.children and answer is not None:
            work.children.pop()
        if len(failures) >= 5:
            break
    assert not failures, f"{len(failures)} mutations made IkeCore raise:\n" + "\n".join(failures)
    # the core is still a working responder
    s = established(b, suite)
    info = s.parse(b.send(s.informational_request([])))
    assert info.ok and info.response


def test_sealed_mutations_break_integrity_and_inner_ones_do_not():
    """A ciphertext mutation no longer opens with the keys; an inner-chain mutation opens and
    shows the mutated chain."""
    from testbed.conformance.ike.parse import parse_message
    models = _models()
    valid, cipher = models["INFORMATIONAL"]
    seen_sealed = seen_inner = 0
    for i in range(400):
        mut = mutate(model_of(valid, cipher), mutation_rng(1, i))
        data = mut.encode(cipher)
        p = parse_message(data, cipher)
        if mut.layer == "sk" and "integrity failure" in mut.desc:
            seen_sealed += 1
            assert p.inner is None or not p.ok, mut.desc
        if mut.layer in ("chain", "body") and mut.desc.startswith("inner") and p.ok:
            seen_inner += 1
            assert p.inner is not None, mut.desc
    assert seen_sealed and seen_inner

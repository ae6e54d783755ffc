"""Dispatchers: hand-checked decisions, and every policy against a brute-force reference model."""

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.chains import Chain
from solvers.dispatch import JFFC, JIQ, JSQ, SED, DISPATCHERS, RandomDispatch, make_dispatcher


def test_jffc_takes_the_fastest_free_chain_whatever_the_input_order():
    # chain 1 is fastest (T=1, 2 slots), then chain 2 (T=2), then chain 0 (T=3)
    d = JFFC([3.0, 1.0, 2.0], [1, 2, 1])
    assert [d.arrive(j) for j in range(4)] == [1, 1, 2, 0]
    assert d.busy_counts() == (1, 2, 1)
    assert d.arrive(4) is None and d.queue_length == 1
    # a completion with an empty queue frees the slot and it is the next choice
    assert d.complete(1) == 4                  # head of the queue takes chain 1's slot
    assert d.queue_length == 0 and d.busy_counts() == (1, 2, 1)
    assert d.complete(2) is None
    assert d.busy_counts() == (1, 2, 0)
    assert d.complete(1) is None               # now chain 1 has a free slot, faster than chain 2
    assert d.arrive(5) == 1
    assert d.arrive(6) == 2


def test_jffc_central_queue_is_fifo_across_chains():
    d = JFFC([1.0, 2.0], [1, 1])
    assert d.arrive(0) == 0 and d.arrive(1) == 1
    for j in (10, 11, 12):
        assert d.arrive(j) is None
    assert d.queued_jobs() == (10, 11, 12)
    # completions on different chains hand out jobs strictly in arrival order
    assert [d.complete(1), d.complete(0), d.complete(0)] == [10, 11, 12]
    assert d.complete(1) is None and d.complete(0) is None
    assert d.in_system == 0


def test_zero_capacity_chains_are_never_used():
    d = JFFC([0.5, 1.0], [0, 1])
    assert d.arrive(0) == 1
    assert d.arrive(1) is None
    for name in DISPATCHERS:
        d = make_dispatcher(name, [Chain(("a",), (1,), 0.5, 0), Chain(("b",), (1,), 1.0, 2)],
                            rng=np.random.default_rng(0))
        assert [d.arrive(j) for j in range(2)] == [1, 1], name


def test_complete_on_an_idle_chain_is_an_error():
    for name in DISPATCHERS:
        d = make_dispatcher(name, [Chain(("a",), (1,), 1.0, 1)], rng=np.random.default_rng(0))
        with pytest.raises(ValueError, match="no job in service"):
            d.complete(0)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown dispatcher"):
        make_dispatcher("fastest", [Chain(("a",), (1,), 1.0, 1)])
    with pytest.raises(ValueError, match="total capacity is 0"):
        JFFC([1.0], [0])
    with pytest.raises(ValueError, match="service time"):
        JSQ([0.0], [1])
    with pytest.raises(ValueError, match="capacity"):
        SED([1.0], [-1])
    with pytest.raises(ValueError, match="differ in length"):
        JFFC([1.0, 2.0], [1])


def test_sed_queues_behind_a_fast_full_chain_rather_than_start_on_a_slow_idle_one():
    d = SED([1.0, 10.0], [2, 1])
    assert d.arrive(0) == 0 and d.arrive(1) == 0
    # chain 0 full: expected 1 + (0+1)*1/2 = 1.5 < 10 on the idle chain 1
    assert d.arrive(2) is None and d.queue_lengths() == (1, 0)
    assert d.arrive(3) is None                       # 1 + 2/2 = 2.0
    assert d.queue_lengths() == (2, 0)
    # JFFC would have started both on chain 1 / the central queue
    j = JFFC([1.0, 10.0], [2, 1])
    assert [j.arrive(i) for i in range(4)] == [0, 0, 1, None]


def test_jsq_balances_jobs_per_slot_and_ignores_speed():
    d = JSQ([1.0, 5.0], [1, 2])
    # n/c: (0, 0) -> tie, fastest; then (1, 0) -> chain 1; (1, .5) -> chain 1; (1, 1) -> tie -> chain 0 queue
    assert [d.arrive(j) for j in range(3)] == [0, 1, 1]
    assert d.arrive(3) is None and d.queue_lengths() == (1, 0)
    assert d.arrive(4) is None and d.queue_lengths() == (1, 1)     # (2, 1) vs (1, 1.5)
    assert d.complete(1) == 4                                       # chain 1's own queue
    assert d.complete(0) == 3


def test_jiq_prefers_idle_chains_and_otherwise_picks_by_capacity():
    rng = np.random.default_rng(3)
    d = JIQ([1.0, 2.0, 3.0], [1, 1, 1], rng=rng)
    first = [d.arrive(j) for j in range(3)]
    assert sorted(first) == [0, 1, 2]                # an idle chain always exists for the first three
    # all full: destinations proportional to capacity; here uniform over 3 chains
    d2 = JIQ([1.0, 2.0], [1, 3], rng=np.random.default_rng(4))
    d2.arrive(0); d2.arrive(1); d2.arrive(2); d2.arrive(3)
    assert d2.busy_counts() == (1, 3)
    for j in range(4, 4004):
        assert d2.arrive(j) is None
    share = d2.queue_lengths()[1] / 4000
    assert abs(share - 0.75) < 0.03


def test_random_split_is_proportional_to_service_rate():
    # c*mu: 2*1 = 2, 1*(1/2) = 0.5, 4*(1/4) = 1  -> shares 4/7, 1/7, 2/7
    d = RandomDispatch([1.0, 2.0, 4.0], [2, 1, 4], rng=np.random.default_rng(11))
    for j in range(70_000):
        d.arrive(j)
    sent = np.array(d.busy_counts()) + np.array(d.queue_lengths())
    assert sent.sum() == 70_000
    assert np.allclose(sent / 70_000, [4 / 7, 1 / 7, 2 / 7], atol=0.01)


def test_randomised_policies_are_reproducible_with_a_seed():
    chains = [Chain((f"s{k}",), (1,), 1.0 + k, 2) for k in range(5)]
    for name in ("jiq", "random"):
        runs = []
        for _ in range(2):
            d = make_dispatcher(name, chains, rng=np.random.default_rng(42))
            runs.append([d.arrive(j) for j in range(30)])
        assert runs[0] == runs[1]


# ---------------------------------------------------------------------------
# Every policy against a brute-force O(K) reference, on random event sequences
# ---------------------------------------------------------------------------

class Reference:
    """Straightforward model of the documented policies (no heaps, no cleverness)."""

    def __init__(self, name, times, caps):
        self.name, self.t, self.c = name, times, caps
        self.z = [0] * len(times)
        self.central = deque()
        self.queues = [deque() for _ in times]

    def rank(self, k):
        return (self.t[k], k)

    def allowed(self):
        """The set of chains the policy may choose for the next arrival (None: central queue)."""
        K = range(len(self.t))
        live = [k for k in K if self.c[k] > 0]
        free = [k for k in live if self.z[k] < self.c[k]]
        n = [self.z[k] + len(self.queues[k]) for k in K]
        if self.name == "jffc":
            return {min(free, key=self.rank)} if free else None
        if self.name == "jsq":
            best = min(live, key=lambda k: (n[k] / self.c[k], self.rank(k)))
            return {best}
        if self.name == "sed":
            def key(k):
                c, t = self.c[k], self.t[k]
                return t if n[k] < c else t * (1 + (n[k] - c + 1) / c)
            return {min(live, key=lambda k: (key(k), self.rank(k)))}
        if self.name == "jiq":
            return set(free) if free else set(live)
        return set(live)                                     # random

    def apply_arrival(self, job, k):
        if k is None:
            self.central.append(job)
        elif self.z[k] < self.c[k]:
            self.z[k] += 1
        else:
            self.queues[k].append(job)

    def complete(self, k):
        q = self.central if self.name == "jffc" else self.queues[k]
        if q:
            return q.popleft()
        self.z[k] -= 1
        return None


chain_sets = st.lists(st.tuples(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), st.integers(0, 3)),
                      min_size=1, max_size=6).filter(lambda cs: sum(c for _, c in cs) > 0)
operations = st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), max_size=120)


@pytest.mark.parametrize("name", sorted(DISPATCHERS))
@settings(max_examples=150, deadline=None, derandomize=True)
@given(cs=chain_sets, ops=operations)
def test_policy_matches_reference(name, cs, ops):
    times = [t for t, _ in cs]
    caps = [c for _, c in cs]
    d = make_dispatcher(name, [Chain((f"s{k}",), (1,), t, c) for k, (t, c) in enumerate(cs)],
                        rng=np.random.default_rng(0))
    ref = Reference(name, times, caps)
    job = 0
    for is_arrival, pick in ops:
        busy = [k for k in range(len(cs)) if ref.z[k] > 0]
        if is_arrival or not busy:
            allowed = ref.allowed()
            before = d.busy_counts()
            got = d.arrive(job)
            if allowed is None:
                assert got is None
                ref.apply_arrival(job, None)
            elif got is not None:
                assert got in allowed and before[got] < caps[got]
                ref.apply_arrival(job, got)
            else:
                # queued on some allowed chain: find which queue grew
                grew = [k for k in range(len(cs)) if d.queue_lengths()[k] > len(ref.queues[k])]
                assert len(grew) == 1 and grew[0] in allowed and before[grew[0]] == caps[grew[0]]
                ref.apply_arrival(job, grew[0])
            job += 1
        else:
            k = busy[pick % len(busy)]
            assert d.complete(k) == ref.complete(k)
        # invariants: state mirrors the reference; a queue only exists on full chains
        assert list(d.busy_counts()) == ref.z
        assert all(0 <= z <= c for z, c in zip(ref.z, caps))
        if name == "jffc":
            assert d.queued_jobs() == tuple(ref.central)
            assert not ref.central or ref.z == caps
        else:
            assert [d.queued_jobs(k) for k in range(len(cs))] == [tuple(q) for q in ref.queues]
            assert all(not q or ref.z[k] == caps[k] for k, q in enumerate(ref.queues))
        assert d.queue_length == len(ref.central) + sum(len(q) for q in ref.queues)


def test_jffc_event_cost_does_not_grow_with_the_number_of_chains():
    """O(log K): 200k events on 10k chains take about as long as on 10 chains."""
    import time

    def run(k):
        d = JFFC(list(np.linspace(1.0, 2.0, k)), [1] * k)
        for j in range(k // 2):             # fill the fastest half; the heap still holds k/2 free chains
            d.arrive(j)
        started = time.perf_counter()
        for j in range(100_000):
            d.complete(d.arrive(j))         # pop and push the heap's top every time
        return time.perf_counter() - started

    small, large = min(run(10) for _ in range(3)), min(run(10_000) for _ in range(3))
    assert large < 3 * small + 0.05

"""The liveness rules as pure functions (serving/dispatch/liveness.py), times in ms."""

from __future__ import annotations

import pytest

from serving.dispatch import liveness as lv
from serving.dispatch.protocol import MASKING_STATES, SERVER_STATES

SM, MX, TMO = 1000, 60000, 6000


def fail(rec, lease, now, err="connection reset"):
    return lv.on_failure(rec, lease, err, now, SM, MX)


def test_the_states_and_the_masking_ones_agree_with_the_protocol():
    assert SERVER_STATES == ("up", "suspect", "down", "draining", "joining")
    assert MASKING_STATES == lv.MASKING == frozenset(SERVER_STATES) - {"up"}


def test_probation_doubles_per_episode_up_to_the_cap():
    assert [lv.probation_ms(e, SM, MX) for e in range(1, 9)] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    assert lv.probation_ms(0, SM, MX) == 1000 and lv.probation_ms(500, SM, MX) == MX
    assert lv.probation_ms(3, 300, 700) == 700


def test_one_flaky_request_costs_one_probation():
    rec, cause = fail(lv.new_record(), "L1", 10_000)
    assert (rec["state"], rec["since"], rec["till"], rec["ep"], rec["fails"]) == ("suspect", 10_000, 11_000, 1, 1)
    assert cause == "failure report: connection reset" and rec["err"] == "connection reset"
    assert lv.deadline(rec) == 11_000
    assert lv.on_tick(rec, 10_999) == (rec, None)
    up, cause = lv.on_tick(rec, 11_000)
    assert (up["state"], up["since"], up["till"], cause) == ("up", 11_000, 0, "suspect period over")
    assert up["ep"] == 1 and lv.deadline(up) is None          # the streak goes on until a success
    assert lv.on_success(up)["ep"] == 0
    assert lv.on_success(lv.on_success(up)) is None           # nothing left to reset


def test_the_same_lease_twice_is_one_report_and_another_lease_makes_it_down():
    rec, _ = fail(lv.new_record(), "L1", 0)
    again, cause = fail(rec, "L1", 100)
    assert again["state"] == "suspect" and cause is None and again["fails"] == 2
    down, cause = fail(again, "L2", 200, err="timeout")
    assert (down["state"], down["since"], down["till"], cause) == ("down", 200, 1200, "failure report: timeout")
    # a ban: heartbeats do not lift it, its end does
    hb, cause = lv.on_heartbeat(down, "up", 500, TMO)
    assert hb["state"] == "down" and cause is None and hb["heard"] == 500
    back, cause = lv.on_tick(hb, 1200)
    assert back["state"] == "up" and cause == "failure ban over"
    # reports on a down or drained server are recorded only
    still, cause = fail(down, "L3", 300)
    assert still["state"] == "down" and cause is None and still["fails"] == 4


def test_episodes_double_the_probation_until_a_success_ends_the_streak():
    rec = lv.new_record()
    now = 0
    for want in (1000, 2000, 4000):
        rec, _ = fail(rec, f"L{now}", now)
        assert rec["till"] - now == want
        now = rec["till"]
        rec, _ = lv.on_tick(rec, now)
        assert rec["state"] == "up"
    rec = lv.on_success(rec)
    rec, _ = fail(rec, "Lx", now)
    assert rec["till"] - now == 1000


def test_heartbeats_do_not_clear_a_suspect_before_its_probation_ends():
    rec, _ = fail(lv.new_record(), "L1", 0)
    hb, cause = lv.on_heartbeat(rec, "up", 500, TMO)
    assert hb["state"] == "suspect" and cause is None
    assert lv.deadline(hb) == 1000
    up, cause = lv.on_tick(hb, 1000)
    assert up["state"] == "up" and cause == "suspect period over"
    assert lv.deadline(up) == 500 + TMO                         # heard: the silence rule watches it now


def test_silence_after_heartbeats_is_down_until_a_heartbeat():
    rec, cause = lv.on_heartbeat(lv.new_record(), "up", 0, TMO)
    assert rec["state"] == "up" and cause is None and lv.deadline(rec) == TMO
    assert lv.on_tick(rec, TMO - 1)[1] is None
    down, cause = lv.on_tick(rec, TMO)
    assert (down["state"], down["since"], cause) == ("down", TMO, "heartbeat timeout")
    assert lv.deadline(down) is None and lv.on_tick(down, 10 * TMO)[1] is None
    up, cause = lv.on_heartbeat(down, "up", 7000, TMO)
    assert (up["state"], up["since"], cause) == ("up", 7000, "heartbeat")
    # a server that never sent a heartbeat is never timed out
    assert lv.deadline(lv.new_record()) is None


def test_a_probation_that_ends_in_silence_ends_down():
    rec, _ = lv.on_heartbeat(lv.new_record(), "up", 0, 500)
    rec, _ = fail(rec, "L1", 100)
    assert lv.deadline(rec) == 500                             # the silence comes before the probation's end
    down, cause = lv.on_tick(rec, 500)
    assert down["state"] == "down" and cause == "heartbeat timeout"
    # a ban that ends in silence stays down (no new event), now waiting for a heartbeat
    rec, _ = lv.on_heartbeat(lv.new_record(), "up", 0, 10_000)
    rec, _ = fail(rec, "L1", 100)
    rec, _ = fail(rec, "L2", 200)
    out, cause = lv.on_tick(rec, 20_000)
    assert out["state"] == "down" and cause is None and out["src"] == lv.BY_TIMEOUT and lv.deadline(out) is None


def test_draining_is_left_only_by_the_owner_or_a_heartbeat():
    rec, cause = lv.on_heartbeat(lv.new_record(), "draining", 0, TMO)
    assert rec["state"] == "draining" and cause == "heartbeat: draining"
    assert lv.deadline(rec) is None and lv.on_tick(rec, 10 * TMO)[1] is None     # no timeout while draining
    up, cause = lv.on_heartbeat(rec, "up", 100, TMO)
    assert up["state"] == "up" and cause == "heartbeat"
    owner, cause = lv.on_set(lv.new_record(), "draining", 0, "", SM, MX, TMO)
    assert owner["state"] == "draining" and cause == "set by owner"
    still, cause = lv.on_heartbeat(owner, "up", 100, TMO)
    assert still["state"] == "draining" and cause is None          # the owner's drain stands
    up, cause = lv.on_set(still, "up", 200, "maintenance over", SM, MX, TMO)
    assert up["state"] == "up" and cause == "maintenance over"


def test_heartbeat_up_brings_down_and_joining_back():
    for state in ("down", "joining"):
        rec, cause = lv.on_set(lv.new_record(), state, 0, "", SM, MX, TMO)
        assert cause == "set by owner"
        up, cause = lv.on_heartbeat(rec, "up", 10, TMO)
        assert up["state"] == "up" and cause == "heartbeat"
    up, cause = lv.on_heartbeat(lv.new_record(), "up", 10, TMO)
    assert up["state"] == "up" and cause is None                  # no transition, no event


def test_owner_sets_any_state_and_up_ends_the_streak():
    rec, _ = fail(lv.new_record(), "L1", 0)
    same, cause = lv.on_set(rec, "suspect", 10, "", SM, MX, TMO)
    assert same["state"] == "suspect" and cause is None and same["ep"] == 2 and same["till"] == 10 + 2000
    up, cause = lv.on_set(same, "up", 20, "", SM, MX, TMO)
    assert up["state"] == "up" and up["ep"] == 0 and up["till"] == 0 and cause == "set by owner"
    again, cause = lv.on_set(up, "up", 30, "", SM, MX, TMO)
    assert cause is None and again["since"] == 20


@pytest.mark.parametrize("bad", [{"suspect_s": 0}, {"suspect_s": -1}, {"heartbeat_timeout_s": "6"},
                                 {"suspect_s": 5, "suspect_max_s": 2}, {"suspect_max_s": True}])
def test_config_is_checked(bad):
    with pytest.raises(ValueError, match="liveness"):
        lv.LivenessConfig(**bad)


def test_config_from_the_environment():
    cfg = lv.LivenessConfig.from_env({"CHAINPLAN_DISPATCH_SUSPECT_S": "0.5",
                                      "CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S": "3"})
    assert cfg == lv.LivenessConfig(0.5, 60.0, 3.0) and cfg.args() == [500, 60000, 3000]
    with pytest.raises(ValueError, match="CHAINPLAN_DISPATCH_SUSPECT_MAX_S"):
        lv.LivenessConfig.from_env({"CHAINPLAN_DISPATCH_SUSPECT_MAX_S": "soon"})


def test_the_owners_word_gives_a_silent_server_a_fresh_heartbeat_period():
    rec, _ = lv.on_heartbeat(lv.new_record(), "up", 0, TMO)
    down, _ = lv.on_tick(rec, TMO)
    up, cause = lv.on_set(down, "up", 10_000, "", SM, MX, TMO)
    assert up["state"] == "up" and lv.deadline(up) == 10_000 + TMO
    assert lv.on_tick(up, 10_001)[1] is None and lv.on_tick(up, 10_000 + TMO)[1] == "heartbeat timeout"
    never, _ = lv.on_set(lv.new_record(), "up", 5, "", SM, MX, TMO)
    assert lv.deadline(never) is None             # never heard: heartbeats do not judge it

import { describe, expect, it } from 'vitest';
import { chainRows, drainingText, driftText, syncText, type DispatcherPanelData, type DispatchState } from '../src/lib/dispatch';

const state: DispatchState = {
  plan: 7, policy: 'jffc', queue_length: 2, arrival_rate: 1.5,
  chains: [{ chain: 0, capacity: 4, in_progress: 4 }, { chain: 1, capacity: 2, in_progress: 1 }],
  observations: {
    chains: [
      { chain: 0, predicted_service_time_s: 2, measured_service_time_s: 2.5, completed: 40, waiting: 0 },
      { chain: 1, predicted_service_time_s: 3, measured_service_time_s: 3.3, completed: 3, waiting: 0 },
    ],
    grants: 50, releases: 45, expiries: 0, timeouts: 1, mean_wait_s: 0.2,
    in_flight_by_plan: [{ plan: 7, in_flight: 5 }, { plan: 6, in_flight: 2 }],
  },
};

const panel = (over: Partial<DispatcherPanelData>): DispatcherPanelData => ({
  cluster: 1, adopted_plan: 7, policy: 'jffc', state, error: null, tokens: 0, endpoints: {}, history: [], ...over,
});

describe('dispatcher chains', () => {
  it('joins occupancy with measured vs predicted service time', () => {
    const rows = chainRows(state, 10);
    expect(rows.map((r) => [r.chain, r.occupancy])).toEqual([[0, 1], [1, 0.5]]);
    expect(rows[0].drift).toBeCloseTo(0.25);
    expect(rows[1].drift).toBeNull();          // 3 completed: too few to say
    expect(chainRows(state, 1)[1].drift).toBeCloseTo(0.1);
  });

  it('handles a state without observations and a chain of capacity 0', () => {
    const rows = chainRows({ ...state, observations: undefined, chains: [{ chain: 0, capacity: 0, in_progress: 0 }] });
    expect(rows).toEqual([{ chain: 0, capacity: 0, inProgress: 0, occupancy: 0, predicted: null, measured: null,
      completed: 0, drift: null }]);
  });
});

describe('dispatcher texts', () => {
  it('formats drift with a sign', () => {
    expect(driftText(0.25)).toBe('+25%');
    expect(driftText(-0.08)).toBe('−8%');
    expect(driftText(0.001)).toBe('±0%');
    expect(driftText(null)).toBe('—');
  });

  it('says whether the dispatcher serves the adopted plan', () => {
    expect(syncText(panel({}))).toBe('Dispatching plan #7 with jffc.');
    expect(syncText(panel({ adopted_plan: 8 }))).toMatch(/still serves plan #7; plan #8 follows/);
    expect(syncText(panel({ adopted_plan: null }))).toMatch(/No plan is adopted/);
    expect(syncText(panel({ state: null, error: 'the store is down' }))).toBe('the store is down');
  });

  it('lists requests still finishing on older plans', () => {
    expect(drainingText(state)).toBe('2 requests finishing on plan #6');
    expect(drainingText({ ...state, observations: { ...state.observations!, in_flight_by_plan: [] } })).toBe('');
  });
});

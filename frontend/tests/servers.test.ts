import { describe, expect, it } from 'vitest';
import {
  addFromPreset, bulkEdit, calibrationSummary, checkScenarioShape, duplicateServer, emptyServer, fromScenarioServer, GPU_PRESETS,
  serversFromCsv, serversToCsv, toScenarioServer, uniqueId, validateServers,
} from '../src/lib/servers';
import type { Server } from '../src/types';

const s = (id: string, over: Partial<Server> = {}): Server => ({ ...emptyServer(id), memory_gb: 40, comm_time_s: 1, block_time_s: 0.1, ...over });

describe('validateServers', () => {
  it('accepts complete rows', () => {
    expect(validateServers([s('a'), s('b')])).toEqual({});
  });
  it('keys messages by the API field path', () => {
    const e = validateServers([s('a'), s('a'), s('', { memory_gb: 0 }), s('d', { comm_time_s: -1, block_time_s: 0 })]);
    expect(e['servers[1].server_id']).toBe('duplicate id (also row 1)');
    expect(e['servers[2].server_id']).toBe('is required');
    expect(e['servers[2].memory_gb']).toBe('must be > 0');
    expect(e['servers[3].comm_time_s']).toBe('must be >= 0');
    expect(e['servers[3].block_time_s']).toBe('must be > 0');
    expect(e['servers[0].server_id']).toBeUndefined();
  });
  it('needs either times or hardware figures', () => {
    const e = validateServers([s('a', { comm_time_s: null, block_time_s: null })]);
    expect(e['servers[0].comm_time_s']).toMatch(/required/);
    expect(validateServers([s('a', { comm_time_s: null, block_time_s: null, tflops: 300, mem_bandwidth_gb_s: 2000, rtt_ms: 10 })])).toEqual({});
  });
  it('requires memory', () => {
    expect(validateServers([s('a', { memory_gb: null })])['servers[0].memory_gb']).toBe('is required');
  });
});

describe('ids, duplicate and bulk edit', () => {
  it('finds unused ids', () => {
    expect(uniqueId('gpu', new Set(['x']))).toBe('gpu');
    expect(uniqueId('gpu', new Set(['gpu']))).toBe('gpu-2');
    expect(uniqueId('gpu-1', new Set(['gpu-1', 'gpu-2']))).toBe('gpu-3');
  });
  it('duplicates a row right after itself with a new id and no calibration', () => {
    const rows = [s('a-1', { latest_calibration: { measured_at: 'x' } }), s('b')];
    const out = duplicateServer(rows, 0);
    expect(out.map((r) => r.server_id)).toEqual(['a-1', 'a-2', 'b']);
    expect(out[1].memory_gb).toBe(40);
    expect(out[1].latest_calibration).toBeNull();
    expect(rows).toHaveLength(2);
  });
  it('sets, scales and clears the selected rows only', () => {
    const rows = [s('a'), s('b'), s('c')];
    const sel = new Set([0, 2]);
    expect(bulkEdit(rows, sel, 'memory_gb', 'set', 80).map((r) => r.memory_gb)).toEqual([80, 40, 80]);
    expect(bulkEdit(rows, sel, 'block_time_s', 'scale', 1.5).map((r) => r.block_time_s)).toEqual([0.15, 0.1, 0.15]);
    expect(bulkEdit(rows, sel, 'rtt_ms', 'clear', null).map((r) => r.rtt_ms)).toEqual([null, null, null]);
    expect(bulkEdit(rows, new Set([1]), 'comm_time_s', 'clear', null)[1].comm_time_s).toBeNull();
  });
  it('adds N servers from a GPU preset with fresh ids', () => {
    const a100 = GPU_PRESETS.find((p) => p.key === 'a100-80')!;
    const out = addFromPreset([s('fra-1')], a100, 3, 'fra', 12);
    expect(out.map((r) => r.server_id)).toEqual(['fra-1', 'fra-2', 'fra-3', 'fra-4']);
    expect(out[3]).toMatchObject({ memory_gb: 80, tflops: 312, mem_bandwidth_gb_s: 2039, rtt_ms: 12, comm_time_s: null });
    expect(validateServers(out)).toEqual({});
  });
});

describe('CSV and scenario conversion', () => {
  it('round-trips servers through CSV', () => {
    const rows = [s('a', { rtt_ms: 12.5 }), s('b,with comma', { memory_gb: 20.5, tflops: 100 })];
    const back = serversFromCsv(serversToCsv(rows));
    expect(back.errors).toEqual([]);
    expect(back.servers).toEqual(rows.map((r) => ({ ...r, latest_calibration: null })));
  });
  it('accepts an id column and reports bad numbers with line numbers', () => {
    const r = serversFromCsv('id,memory_gb,comm_time_s,block_time_s,extra\nx,40,1,0.1,zzz\ny,abc,1,0.1,\n');
    expect(r.servers.map((v) => v.server_id)).toEqual(['x', 'y']);
    expect(r.errors).toEqual(['line 3, memory_gb: "abc" is not a number']);
  });
  it('requires the id and memory columns', () => {
    expect(serversFromCsv('memory_gb\n1').errors[0]).toMatch(/server_id/);
    expect(serversFromCsv('id\nx').errors[0]).toMatch(/memory_gb/);
  });
  it('converts scenario servers (id) to cluster servers (server_id) and back', () => {
    const sc = { id: 'fra-a100-1', memory_gb: 40, comm_time_s: 0.95, block_time_s: 0.109 };
    const server = fromScenarioServer(sc);
    expect(server.server_id).toBe('fra-a100-1');
    expect(server.tflops).toBeNull();
    expect(toScenarioServer(server)).toEqual(sc);
  });
  it('checks the outline of a scenario document', () => {
    expect(checkScenarioShape([])).toEqual(['a scenario must be a JSON object']);
    expect(checkScenarioShape({ model: {}, servers: [], workload: {} })).toEqual(['servers: must be a non-empty list']);
    expect(checkScenarioShape({ model: {}, servers: [{}], workload: {} })).toEqual([]);
  });
});

describe('calibrationSummary', () => {
  const now = Date.parse('2024-05-10T12:00:00Z');
  it('shows the age and the measured figures of the API shape', () => {
    const c = calibrationSummary({ id: 3, created_at: '2024-05-10T09:00:00Z', model_name: 'bloom-176b', figures: { comm_time_s: 0.95, block_time_s: 0.109 } }, now)!;
    expect(c).toEqual({ age: '3 h ago', stale: false, figures: 'block_time_s = 0.109, comm_time_s = 0.95, model bloom-176b' });
  });
  it('flags calibrations older than a week', () => {
    expect(calibrationSummary({ created_at: '2024-05-01T12:00:00Z', figures: {} }, now)!.stale).toBe(true);
  });
  it('is null without a calibration', () => {
    expect(calibrationSummary(null, now)).toBeNull();
  });
});

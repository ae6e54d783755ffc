import { describe, expect, it } from 'vitest';
import { baseUrl, curlExample, keyLabel, readinessText, sortKeys, type GatewayKey, type GatewayPanelData } from '../src/lib/gateway';

const panel = (over: Partial<GatewayPanelData>): GatewayPanelData => ({
  cluster: 1, adopted_plan: 7, base_path: '/v1', models: ['tiny'], error: null, keys: 1, ...over,
});
const key = (id: number, active: boolean): GatewayKey => ({
  id, hint: `sk-key${id}`, created_at: '2026-12-01T00:00:00Z', created_by: 'alice',
  revoked_at: active ? null : '2026-12-02T00:00:00Z', active,
});

describe('gateway panel helpers', () => {
  it('joins the origin and the base path into the OpenAI base URL', () => {
    expect(baseUrl('http://127.0.0.1:8000', '/v1')).toBe('http://127.0.0.1:8000/v1');
    expect(baseUrl('https://plan.example/', 'v1/')).toBe('https://plan.example/v1');
  });

  it('says why clients cannot call yet, and nothing once they can', () => {
    expect(readinessText(panel({}))).toBe('');
    expect(readinessText(panel({ adopted_plan: null }))).toMatch(/no_adopted_plan/);
    expect(readinessText(panel({ models: [], error: 'no gateway configuration: set CHAINPLAN_GATEWAY_CONFIG' })))
      .toMatch(/CHAINPLAN_GATEWAY_CONFIG/);
    expect(readinessText(panel({ models: [], error: null }))).toMatch(/no model/);
  });

  it('writes a curl call with the key, the model and the chat endpoint', () => {
    const cmd = curlExample('http://h:8000/v1', 'tiny', 'sk-abc');
    expect(cmd).toContain('curl http://h:8000/v1/chat/completions');
    expect(cmd).toContain('Authorization: Bearer sk-abc');
    expect(JSON.parse(cmd.slice(cmd.indexOf("'") + 1, cmd.lastIndexOf("'"))).model).toBe('tiny');
    expect(curlExample('http://h/v1', 'tiny')).toContain('Bearer $CHAINPLAN_KEY');
  });

  it('shows a key by its first characters and lists active keys first', () => {
    expect(keyLabel({ hint: 'sk-AbCdE' })).toBe('sk-AbCdE…');
    expect(sortKeys([key(3, false), key(2, true), key(1, true)]).map((k) => k.id)).toEqual([2, 1, 3]);
  });
});

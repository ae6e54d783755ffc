import { describe, expect, it } from 'vitest';
import { ApiError, fieldMap, messageOf, toApiError } from '../src/lib/errors';

describe('toApiError', () => {
  it('reads the contract error body', () => {
    const e = toApiError(400, { detail: 'invalid scenario', errors: [{ field: 'servers[3].memory_gb', message: 'must be > 0' }, { field: 'name', message: 'is required' }] });
    expect(e.status).toBe(400);
    expect(e.detail).toBe('invalid scenario');
    expect(e.forField('servers[3].memory_gb')).toEqual(['must be > 0']);
    expect(e.forField('other')).toEqual([]);
  });
  it('flattens DRF nested errors into paths', () => {
    const e = toApiError(400, { servers: [{}, { memory_gb: ['must be > 0'] }], name: ['This field is required.'], non_field_errors: ['bad'] });
    expect(e.fields).toEqual([
      { field: 'servers[1].memory_gb', message: 'must be > 0' },
      { field: 'name', message: 'This field is required.' },
      { field: '', message: 'bad' },
    ]);
  });
  it('falls back to a status text, never to an HTML page', () => {
    expect(toApiError(404, '<html>Not found</html>').detail).toBe('Not found.');
    expect(toApiError(502, null).detail).toBe('Request failed (HTTP 502).');
    expect(toApiError(409, { detail: 'job is finished' }).detail).toBe('job is finished');
  });
});

describe('fieldMap', () => {
  it('strips a prefix and collects other fields under ""', () => {
    const e = new ApiError(400, 'x', [
      { field: 'scenario.servers[0].id', message: 'duplicate' },
      { field: 'scenario', message: 'bad' },
      { field: 'workload.arrival_rate', message: 'must be > 0' },
    ]);
    expect(fieldMap(e, 'scenario')).toEqual({ 'servers[0].id': ['duplicate'], '': ['bad'], 'workload.arrival_rate': ['must be > 0'] });
    expect(fieldMap(null)).toEqual({});
  });
  it('messageOf reads any error', () => {
    expect(messageOf(new ApiError(400, 'nope'))).toBe('nope');
    expect(messageOf(new Error('boom'))).toBe('boom');
    expect(messageOf('s')).toBe('s');
  });
});

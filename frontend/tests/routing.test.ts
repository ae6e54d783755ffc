import { describe, expect, it } from 'vitest';
import { matchRoute, safeNext } from '../src/router';
import { buildQuery, intParam, pageCount, parseQuery } from '../src/lib/query';
import { readCookie } from '../src/api';

describe('matchRoute', () => {
  it.each([
    ['/', 'home', {}],
    ['/clusters', 'clusters', {}],
    ['/clusters/', 'clusters', {}],
    ['/clusters/new', 'cluster-new', {}],
    ['/clusters/3', 'cluster', { id: '3' }],
    ['/models/7', 'model', { id: '7' }],
    ['/jobs', 'jobs', {}],
    ['/jobs/new', 'plan-new', {}],
    ['/jobs/12', 'job', { id: '12' }],
    ['/jobs/12/compare', 'compare', { id: '12' }],
    ['/plans/40', 'plan', { id: '40' }],
    ['/plans/40/diff/12', 'plan-diff', { id: '40', old: '12' }],
    ['/clusters/3/apply', 'cluster-apply', { id: '3' }],
    ['/login', 'login', {}],
    ['/plans/abc', 'not-found', {}],
    ['/nope', 'not-found', {}],
  ])('%s -> %s', (path, name, params) => {
    expect(matchRoute(path)).toEqual({ name, params });
  });
  it('only follows same-app paths after sign-in', () => {
    expect(safeNext('/jobs/3?x=1')).toBe('/jobs/3?x=1');
    expect(safeNext('//evil.example/')).toBe('/');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('/login')).toBe('/');
    expect(safeNext(undefined)).toBe('/');
  });
});

describe('query strings', () => {
  it('builds and parses', () => {
    const q = buildQuery({ status: 'running', page: 2, cluster: null, algorithm: '', x: 'a b&c' });
    expect(q).toBe('?status=running&page=2&x=a%20b%26c');
    expect(parseQuery(q)).toEqual({ status: 'running', page: '2', x: 'a b&c' });
    expect(buildQuery({})).toBe('');
    expect(parseQuery('')).toEqual({});
  });
  it('reads integer params with bounds', () => {
    expect(intParam('3', 1)).toBe(3);
    expect(intParam('-3', 1)).toBe(1);
    expect(intParam('0', 1)).toBe(1);
    expect(intParam('x', 1)).toBe(1);
    expect(intParam('500', 1, 1, 100)).toBe(100);
    expect(pageCount(0, 20)).toBe(1);
    expect(pageCount(41, 20)).toBe(3);
  });
  it('reads the csrftoken cookie', () => {
    expect(readCookie('a=1; csrftoken=abc%3D; b=2', 'csrftoken')).toBe('abc=');
    expect(readCookie('xcsrftoken=1', 'csrftoken')).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { fmtAge, fmtGB, fmtNum, fmtSeconds, niceTicks } from '../src/lib/format';
import { chainColor, contrastRatio, PALETTE } from '../src/lib/colors';

describe('format', () => {
  it('formats seconds in a readable unit', () => {
    expect(fmtSeconds(0.004)).toBe('4 ms');
    expect(fmtSeconds(9.1234)).toBe('9.12 s');
    expect(fmtSeconds(300)).toBe('5 min');
    expect(fmtSeconds(null)).toBe('—');
    expect(fmtSeconds(Infinity)).toBe('—');
  });
  it('formats numbers and sizes', () => {
    expect(fmtNum(1234567)).toBe('1.23e+6');
    expect(fmtNum(20000)).toBe('20,000');
    expect(fmtNum(0.123456)).toBe('0.123');
    expect(fmtGB(1.32)).toBe('1.32 GB');
  });
  it('formats ages', () => {
    const now = Date.parse('2024-01-02T00:00:00Z');
    expect(fmtAge('2024-01-01T23:59:58Z', now)).toBe('just now');
    expect(fmtAge('2024-01-01T23:59:30Z', now)).toBe('30 s ago');
    expect(fmtAge('2024-01-01T23:00:00Z', now)).toBe('1 h ago');
    expect(fmtAge('2023-12-30T00:00:00Z', now)).toBe('3 days ago');
    expect(fmtAge(null, now)).toBe('—');
  });
  it('makes nice ticks', () => {
    expect(niceTicks(70, 8)).toEqual([0, 10, 20, 30, 40, 50, 60, 70]);
    expect(niceTicks(5, 5)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(niceTicks(1, 4)).toEqual([0, 0.5, 1]);
    expect(niceTicks(0)).toEqual([0]);
  });
});

describe('chain colours', () => {
  it('are distinct for many chains', () => {
    const colors = Array.from({ length: 40 }, (_, i) => chainColor(i));
    expect(new Set(colors).size).toBe(40);
  });
  it('palette colours are readable against white (>= 3:1 for graphics)', () => {
    for (const c of PALETTE) expect(contrastRatio(c, '#ffffff')).toBeGreaterThanOrEqual(3);
  });
});

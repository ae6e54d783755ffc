import { describe, expect, it } from 'vitest';
import { parseCsv, toCsv } from '../src/lib/csv';

describe('parseCsv', () => {
  it('splits plain rows and skips blank lines', () => {
    expect(parseCsv('a,b\n1,2\n\n3,4\n')).toEqual([['a', 'b'], ['1', '2'], ['3', '4']]);
  });
  it('handles CRLF, quotes, doubled quotes, commas and newlines in quotes', () => {
    expect(parseCsv('x,y\r\n"a,b","say ""hi"""\r\n"multi\nline",z')).toEqual([['x', 'y'], ['a,b', 'say "hi"'], ['multi\nline', 'z']]);
  });
  it('keeps empty cells and strips a BOM', () => {
    expect(parseCsv('\ufeffa,,c\n,,')).toEqual([['a', '', 'c'], ['', '', '']]);
  });
  it('rejects an unterminated quote', () => {
    expect(() => parseCsv('a,"b\n')).toThrow(/unterminated/);
  });
  it('round-trips through toCsv', () => {
    const rows = [['id', 'note'], ['s-1', 'has, comma'], ['s-2', 'has "quote"'], ['s-3', ' padded ']];
    expect(parseCsv(toCsv(rows[0], rows.slice(1)))).toEqual(rows);
  });
});

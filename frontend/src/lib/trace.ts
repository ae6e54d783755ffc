// Request traces from CSV (the Azure LLM inference trace format): columns
// TIMESTAMP, ContextTokens, GeneratedTokens -> [[arrival_s, input_tokens,
// output_tokens], ...] with arrivals relative to the first request.

import { parseCsv } from './csv';

export type TraceRow = [number, number, number];

export interface TraceParse {
  rows: TraceRow[];
  errors: string[];
  count: number;
  span_s: number;
  mean_rate: number | null;
  mean_input_tokens: number | null;
  mean_output_tokens: number | null;
}

export const MAX_TRACE_ERRORS = 10;

/**
 * Seconds since the epoch for "YYYY-MM-DD HH:MM:SS(.fraction)" (UTC assumed,
 * any number of fraction digits) or a plain number of seconds.
 */
export function parseTimestamp(value: string): number | null {
  const v = value.trim();
  if (/^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) return Number(v);
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(v);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || day > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return null;
  let ms = Date.UTC(Number(y), month - 1, day, Number(h), Number(mi), Number(s));
  if (tz && tz !== 'Z') {
    const sign = tz[0] === '-' ? -1 : 1;
    const digits = tz.slice(1).replace(':', '');
    ms -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60000;
  }
  return ms / 1000 + (frac ? Number('0' + frac) : 0);
}

const COLS = {
  time: ['timestamp', 'arrival_s', 'time', 'arrival'],
  input: ['contexttokens', 'input_tokens', 'context_tokens', 'prompt_tokens'],
  output: ['generatedtokens', 'output_tokens', 'generated_tokens', 'completion_tokens'],
};

function findColumn(header: string[], names: string[]): number {
  const lower = header.map((h) => h.trim().toLowerCase());
  for (const n of names) {
    const i = lower.indexOf(n);
    if (i >= 0) return i;
  }
  return -1;
}

/** Parses a trace CSV; at most `limit` requests are kept (the first ones). */
export function parseTraceCsv(text: string, limit = 1_000_000): TraceParse {
  const errors: string[] = [];
  const empty = (msg: string): TraceParse => ({
    rows: [], errors: [msg], count: 0, span_s: 0, mean_rate: null, mean_input_tokens: null, mean_output_tokens: null,
  });
  let table: string[][];
  try {
    table = parseCsv(text);
  } catch (e) {
    return empty(`not a CSV file: ${(e as Error).message}`);
  }
  if (table.length < 2) return empty('the file needs a header row and at least one request');
  const header = table[0];
  const ti = findColumn(header, COLS.time);
  const ii = findColumn(header, COLS.input);
  const oi = findColumn(header, COLS.output);
  const missing = [ti < 0 && 'TIMESTAMP', ii < 0 && 'ContextTokens', oi < 0 && 'GeneratedTokens'].filter(Boolean);
  if (missing.length) return empty(`missing column${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);

  const raw: TraceRow[] = [];
  let badRows = 0;
  for (let r = 1; r < table.length && raw.length < limit; r++) {
    const cells = table[r];
    const t = parseTimestamp(cells[ti] ?? '');
    const inTok = Number((cells[ii] ?? '').trim());
    const outTok = Number((cells[oi] ?? '').trim());
    let problem = '';
    if (t === null) problem = `bad timestamp ${JSON.stringify(cells[ti] ?? '')}`;
    else if (!Number.isInteger(inTok) || inTok < 0 || (cells[ii] ?? '').trim() === '') problem = 'ContextTokens must be a whole number >= 0';
    else if (!Number.isInteger(outTok) || outTok < 1) problem = 'GeneratedTokens must be a whole number >= 1';
    if (problem) {
      badRows++;
      if (errors.length < MAX_TRACE_ERRORS) errors.push(`line ${r + 1}: ${problem}`);
      continue;
    }
    raw.push([t as number, inTok, outTok]);
  }
  if (badRows > MAX_TRACE_ERRORS) errors.push(`… and ${badRows - MAX_TRACE_ERRORS} more bad lines`);
  if (!raw.length) return { ...empty('no valid requests'), errors: errors.length ? errors : ['no valid requests'] };

  raw.sort((a, b) => a[0] - b[0]);
  const t0 = raw[0][0];
  const rows = raw.map(([t, i, o]) => [Math.round((t - t0) * 1e6) / 1e6, i, o] as TraceRow);
  const span = rows[rows.length - 1][0];
  let sumIn = 0;
  let sumOut = 0;
  for (const [, i, o] of rows) {
    sumIn += i;
    sumOut += o;
  }
  return {
    rows,
    errors,
    count: rows.length,
    span_s: span,
    mean_rate: rows.length > 1 && span > 0 ? (rows.length - 1) / span : null,
    mean_input_tokens: sumIn / rows.length,
    mean_output_tokens: sumOut / rows.length,
  };
}

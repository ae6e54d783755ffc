// Error bodies of the API are {"detail": "...", "errors": [{"field", "message"}]}.
// This module turns them (and anything else a server may answer) into one
// summary line plus messages keyed by field path, so forms can show each
// message next to the field it concerns.

export interface FieldMessage {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;
  readonly fields: FieldMessage[];

  constructor(status: number, detail: string, fields: FieldMessage[] = []) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.fields = fields;
  }

  /** Messages for one field path, e.g. "servers[3].memory_gb". */
  forField(path: string): string[] {
    return this.fields.filter((f) => f.field === path).map((f) => f.message);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function joinPath(prefix: string, key: string | number): string {
  if (typeof key === 'number') return `${prefix}[${key}]`;
  return prefix ? `${prefix}.${key}` : key;
}

/** Flattens DRF-style nested error objects ({"servers": [{}, {"memory_gb": ["..."]}]}) into field messages. */
function flattenDrf(value: unknown, prefix: string, out: FieldMessage[]): void {
  if (typeof value === 'string') {
    out.push({ field: prefix, message: value });
  } else if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) {
      for (const v of value) out.push({ field: prefix, message: v as string });
    } else {
      value.forEach((v, i) => flattenDrf(v, joinPath(prefix, i), out));
    }
  } else if (isRecord(value)) {
    for (const [k, v] of Object.entries(value)) {
      flattenDrf(v, k === 'non_field_errors' ? prefix : joinPath(prefix, k), out);
    }
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'The request was not accepted.',
  401: 'Please sign in.',
  403: 'You are not allowed to do that (are you signed in?).',
  404: 'Not found.',
  409: 'That is not possible in the current state.',
  413: 'The upload is too large.',
  429: 'Too many requests; try again shortly.',
};

/** Builds an ApiError from a status and a parsed (or unparsable) JSON body. */
export function toApiError(status: number, body: unknown): ApiError {
  const fields: FieldMessage[] = [];
  let detail = '';
  if (isRecord(body)) {
    if (typeof body.detail === 'string') detail = body.detail;
    if (Array.isArray(body.errors)) {
      for (const e of body.errors) {
        if (isRecord(e) && typeof e.message === 'string') {
          fields.push({ field: typeof e.field === 'string' ? e.field : '', message: e.message });
        }
      }
    } else {
      const rest = Object.fromEntries(Object.entries(body).filter(([k]) => k !== 'detail'));
      flattenDrf(rest, '', fields);
    }
  } else if (typeof body === 'string' && body.trim() && body.length < 300 && !body.includes('<')) {
    detail = body.trim();
  }
  if (!detail) {
    detail = fields.length === 1 && !fields[0].field ? fields[0].message : STATUS_TEXT[status] ?? `Request failed (HTTP ${status}).`;
  }
  return new ApiError(status, detail, fields);
}

/**
 * Moves the messages for fields under `prefix` into a map keyed by the
 * field path relative to that prefix, e.g. prefix "scenario" maps
 * "scenario.servers[0].id" to "servers[0].id". Messages for other fields are
 * returned under the key "".
 */
export function fieldMap(err: ApiError | null | undefined, prefix = ''): Record<string, string[]> {
  const map: Record<string, string[]> = {};
  if (!err) return map;
  for (const f of err.fields) {
    let key = f.field;
    if (prefix) {
      if (key === prefix) key = '';
      else if (key.startsWith(prefix + '.')) key = key.slice(prefix.length + 1);
      else if (key.startsWith(prefix + '[')) key = key.slice(prefix.length);
    }
    (map[key] ??= []).push(f.message);
  }
  return map;
}

/** Scenario server paths use `servers[i].id`; the cluster API names that field `server_id`. */
export function serverFieldKey(index: number, field: string): string {
  return `servers[${index}].${field}`;
}

export function messageOf(err: unknown): string {
  if (err instanceof ApiError) return err.detail;
  if (err instanceof Error) return err.message;
  return String(err);
}

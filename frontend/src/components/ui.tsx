import type { ComponentChildren, JSX } from 'preact';
import { useId } from 'preact/hooks';
import { linkClick, navigate } from '../router';
import { ApiError, messageOf, type FieldMessage } from '../lib/errors';
import { buildQuery, pageCount, type QueryValue } from '../lib/query';
import type { JobStatus } from '../types';

export function Link(props: JSX.AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  return <a {...props} onClick={linkClick} />;
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  return (
    <div class="alert alert-error" role="alert">
      {title && <strong>{title}: </strong>}
      {messageOf(error)}
    </div>
  );
}

/** A refused form's summary: the API's message, and those field messages that have no field of the
 * form to stand next to (the rest are shown beside their fields). */
export function ApiErrorSummary({ error, unplaced = [] }: { error: ApiError | null | undefined; unplaced?: FieldMessage[] }) {
  if (!error) return null;
  return (
    <div class="alert alert-error" role="alert">
      {error.detail}
      {unplaced.length > 0 && <ul>{unplaced.map((f) => <li key={f.field + f.message}>{f.field && <code>{f.field}</code>} {f.message}</li>)}</ul>}
    </div>
  );
}

export function Notice({ children, kind = 'info' }: { children: ComponentChildren; kind?: 'info' | 'ok' | 'warn' }) {
  return (
    <div class={`alert alert-${kind}`} role="status">
      {children}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      {label}
    </p>
  );
}

export function FieldMessages({ id, messages }: { id: string; messages?: string[] | string }) {
  const all = messages === undefined ? [] : Array.isArray(messages) ? messages : [messages];
  const list = [...new Set(all.filter(Boolean))];
  if (!list.length) return null;
  const shown = list.slice(0, 3);
  return (
    <span class="field-error" id={id}>
      {shown.join('; ')}
      {list.length > shown.length && ` (and ${list.length - shown.length} more)`}
    </span>
  );
}

interface FieldProps {
  label: string;
  hint?: string;
  error?: string[] | string;
  children: (ids: { id: string; describedBy: string | undefined; invalid: boolean }) => ComponentChildren;
  class?: string;
}

/** A labelled form field with its hint and validation messages next to it. */
export function Field({ label, hint, error, children, class: cls }: FieldProps) {
  const id = useId();
  const hasError = error !== undefined && (Array.isArray(error) ? error.length > 0 : error !== '');
  const describedBy = [hint ? `${id}-hint` : '', hasError ? `${id}-err` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class={`field ${hasError ? 'has-error' : ''} ${cls ?? ''}`}>
      <label for={id}>{label}</label>
      {children({ id, describedBy, invalid: hasError })}
      {hint && (
        <span class="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      <FieldMessages id={`${id}-err`} messages={error} />
    </div>
  );
}

/** A Field holding one text input; `onValue` gets its text as typed (numbers: parseNumberInput). */
export function TextField({ value, onValue, inputMode, placeholder, ...field }: Omit<FieldProps, 'children'> & {
  value: string;
  onValue: (value: string) => void;
  inputMode?: 'numeric' | 'decimal';
  placeholder?: string;
}) {
  return (
    <Field {...field}>
      {({ id, describedBy, invalid }) => (
        <input id={id} inputMode={inputMode} value={value} placeholder={placeholder} aria-describedby={describedBy}
          aria-invalid={invalid || undefined} onInput={(e) => onValue(e.currentTarget.value)} />
      )}
    </Field>
  );
}

/** Puts a failed request's error where a form shows it: an API refusal (its field messages go beside the
 * fields) to `onRefusal`, anything else (network, a bug) to `onOther`. */
export function splitError(err: unknown, onRefusal: (err: ApiError) => void, onOther: (err: unknown) => void): void {
  if (err instanceof ApiError) onRefusal(err);
  else onOther(err);
}

/** Deletes once the user confirms `question`, then shows the list at `listPath`; a failure goes to `onError`. */
export async function confirmDelete(question: string, del: () => Promise<unknown>, listPath: string,
  onError: (err: unknown) => void): Promise<void> {
  if (!window.confirm(question)) return;
  try {
    await del();
    navigate(listPath);
  } catch (err) {
    onError(err);
  }
}

/** Parses a number input's text: '' -> null, junk -> NaN. */
export function parseNumberInput(text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  return Number(t);
}

export function StatusBadge({ status }: { status: JobStatus | string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

export function Pagination({ page, count, pageSize, base, query }: { page: number; count: number; pageSize: number; base: string; query: Record<string, QueryValue> }) {
  const pages = pageCount(count, pageSize);
  if (pages <= 1) return null;
  const href = (p: number) => base + buildQuery({ ...query, page: p === 1 ? null : p });
  return (
    <nav class="pagination" aria-label="Pages">
      {page > 1 ? <Link href={href(page - 1)} rel="prev">← Previous</Link> : <span aria-hidden="true" class="muted">← Previous</span>}
      <span aria-current="page">
        Page {page} of {pages} ({count} in all)
      </span>
      {page < pages ? <Link href={href(page + 1)} rel="next">Next →</Link> : <span aria-hidden="true" class="muted">Next →</span>}
    </nav>
  );
}

/** A card with a heading and a compact table of `rows`, or the muted line `empty` when there are none. */
export function TableCard({ title, heading: Heading = 'h2', empty, testid, head, rows }: {
  title: string;
  heading?: 'h2' | 'h3';
  empty: string;
  testid: string;
  head: ComponentChildren;
  rows: ComponentChildren[];
}) {
  return (
    <div class="card">
      <Heading>{title}</Heading>
      {rows.length === 0 ? <p class="muted">{empty}</p> : (
        <div class="table-wrap">
          <table class="table compact" data-testid={testid}>
            <thead>{head}</thead>
            <tbody>{rows}</tbody>
          </table>
        </div>
      )}
    </div>
  );
}

export function Stat({ label, value, hint }: { label: string; value: ComponentChildren; hint?: string }) {
  return (
    <div class="stat" title={hint}>
      <dt>{label}</dt>
      <dd>{value}</dd>
    </div>
  );
}

export function PageHeader({ title, children, sub }: { title: ComponentChildren; children?: ComponentChildren; sub?: ComponentChildren }) {
  return (
    <div class="page-header">
      <div>
        <h1 tabIndex={-1} id="page-title">{title}</h1>
        {sub && <p class="sub">{sub}</p>}
      </div>
      {children && <div class="actions">{children}</div>}
    </div>
  );
}

/** Previous / next buttons for a list paged in the browser (page is 0-based). */
export function Pager({ page, pages, total, size, onPage, label }: { page: number; pages: number; total: number; size: number; onPage: (p: number) => void; label: string }) {
  if (pages <= 1) return null;
  const first = page * size + 1;
  const last = Math.min(total, (page + 1) * size);
  return (
    <nav class="pagination" aria-label={label}>
      <button type="button" class="secondary button-small" disabled={page === 0} onClick={() => onPage(page - 1)}>← Previous</button>
      <span>{first}–{last} of {total}</span>
      <button type="button" class="secondary button-small" disabled={page >= pages - 1} onClick={() => onPage(page + 1)}>Next →</button>
    </nav>
  );
}

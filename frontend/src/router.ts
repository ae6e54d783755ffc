// Route table of the single-page app. Paths are shareable URLs; matching is
// pure so that it can be unit-tested; navigation uses the History API.

export type RouteName =
  | 'home' | 'login' | 'clusters' | 'cluster-new' | 'cluster'
  | 'models' | 'model-new' | 'model' | 'plan-new' | 'jobs' | 'job' | 'compare' | 'plan'
  | 'plan-diff' | 'cluster-apply' | 'not-found';

export interface Route {
  name: RouteName;
  params: Record<string, string>;
}

const TABLE: Array<[RouteName, RegExp, string[]]> = [
  ['home', /^\/$/, []],
  ['login', /^\/login$/, []],
  ['clusters', /^\/clusters$/, []],
  ['cluster-new', /^\/clusters\/new$/, []],
  ['cluster', /^\/clusters\/(\d+)$/, ['id']],
  ['cluster-apply', /^\/clusters\/(\d+)\/apply$/, ['id']],
  ['models', /^\/models$/, []],
  ['model-new', /^\/models\/new$/, []],
  ['model', /^\/models\/(\d+)$/, ['id']],
  ['plan-new', /^\/jobs\/new$/, []],
  ['jobs', /^\/jobs$/, []],
  ['job', /^\/jobs\/(\d+)$/, ['id']],
  ['compare', /^\/jobs\/(\d+)\/compare$/, ['id']],
  ['plan', /^\/plans\/(\d+)$/, ['id']],
  ['plan-diff', /^\/plans\/(\d+)\/diff(?:\/(\d+))?$/, ['id', 'old']],
];

export function matchRoute(pathname: string): Route {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  for (const [name, re, keys] of TABLE) {
    const m = re.exec(path);
    if (m) {
      const params: Record<string, string> = {};
      keys.forEach((k, i) => (params[k] = m[i + 1]));
      return { name, params };
    }
  }
  return { name: 'not-found', params: {} };
}

/** Only same-app paths are followed after sign-in (no open redirect). */
export function safeNext(next: string | undefined | null): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/api/') || next.startsWith('/login')) return '/';
  return next;
}

type Listener = () => void;
const listeners = new Set<Listener>();

export function subscribe(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify(): void {
  for (const fn of listeners) fn();
}

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', notify);
}

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const current = location.pathname + location.search + location.hash;
  if (to === current) return;
  if (opts.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  notify();
  if (!opts.replace && !to.includes('#')) window.scrollTo(0, 0);
}

/** Click handler for in-app links: plain left clicks navigate without a reload. */
export function linkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.currentTarget as HTMLElement).closest('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('/api/')) return;
  e.preventDefault();
  navigate(href);
}

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { matchRoute, subscribe, type Route } from './router';
import { parseQuery } from './lib/query';
import { fetchHealth } from './api';
import { healthView, type HealthView } from './lib/health';

export interface Location {
  route: Route;
  pathname: string;
  query: Record<string, string>;
}

function current(): Location {
  return { route: matchRoute(location.pathname), pathname: location.pathname, query: parseQuery(location.search) };
}

/** The current route; re-renders on navigate() and on browser back/forward. */
export function useLocation(): Location {
  const [loc, setLoc] = useState<Location>(current);
  useEffect(() => subscribe(() => setLoc(current())), []);
  return loc;
}

export interface Async<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
  setData: (d: T) => void;
}

/** Runs `fn` when `deps` change; results of stale runs are dropped. */
export function useAsync<T>(fn: () => Promise<T>, deps: unknown[]): Async<T> {
  const [state, setState] = useState<{ data?: T; error: unknown; loading: boolean }>({ error: null, loading: true });
  const [tick, setTick] = useState(0);
  const run = useRef(0);
  useEffect(() => {
    const id = ++run.current;
    setState((s) => ({ data: s.data, error: null, loading: true }));
    fn().then(
      (data) => id === run.current && setState({ data, error: null, loading: false }),
      (error) => id === run.current && setState({ data: undefined, error, loading: false }),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const setData = useCallback((data: T) => setState({ data, error: null, loading: false }), []);
  return { data: state.data, error: state.error, loading: state.loading, reload, setData };
}

/** Sets the document title (and announces page changes to screen readers via the title). */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · chainplan` : 'chainplan';
  }, [title]);
}

/** A value that follows `value` after `ms` without changes. */
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

/** Copy text to the clipboard; `copied` is true for two seconds after a success. */
export function useCopy(): { copied: boolean; copy: (text: string) => Promise<void> } {
  const [copied, setCopied] = useState(false);
  const copy = useCallback(async (text: string) => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 2000);
    } catch {
      setCopied(false);
    }
  }, []);
  return { copied, copy };
}

// One health poll for the whole app, shared by the banner and the job page.
const HEALTH_POLL_MS = 5000;
let healthState: HealthView & { checked: boolean } = { canRunJobs: true, problems: [], checked: false };
const healthListeners = new Set<() => void>();
let healthPolling = false;

async function pollHealth(): Promise<void> {
  healthPolling = true;
  const { status, body } = await fetchHealth();
  healthState = { ...healthView(body, status), checked: true };
  healthListeners.forEach((fn) => fn());
  if (healthListeners.size) setTimeout(pollHealth, HEALTH_POLL_MS);
  else healthPolling = false;
}

/** Whether jobs can run now (GET /api/v1/health/, polled every 5 s while anything listens). */
export function useHealth(): HealthView & { checked: boolean } {
  const [state, setState] = useState(healthState);
  useEffect(() => {
    const fn = () => setState(healthState);
    healthListeners.add(fn);
    if (!healthPolling) pollHealth();
    return () => {
      healthListeners.delete(fn);
    };
  }, []);
  return state;
}

import type { ComponentType, FunctionComponent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ErrorBox, Loading } from './components/ui';

/** A component whose code is loaded on first use (a separate bundle chunk). */
export function lazy<P extends object>(load: () => Promise<ComponentType<P>>): FunctionComponent<P> {
  let loaded: ComponentType<P> | null = null;
  let pending: Promise<ComponentType<P>> | null = null;
  return function Lazy(props: P) {
    const [state, setState] = useState<{ comp: ComponentType<P> | null; error: unknown }>({ comp: loaded, error: null });
    useEffect(() => {
      if (state.comp) return;
      let alive = true;
      pending ??= load().then((c) => (loaded = c));
      pending.then(
        (comp) => alive && setState({ comp, error: null }),
        (error) => {
          pending = null;
          if (alive) setState({ comp: null, error });
        },
      );
      return () => {
        alive = false;
      };
    }, [state.comp]);
    if (state.error) return <ErrorBox error={state.error} title="This page could not be loaded (reload to try again)" />;
    const Comp = state.comp;
    return Comp ? <Comp {...props} /> : <Loading />;
  };
}

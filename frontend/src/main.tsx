import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import './styles.css';
import { api, setUnauthenticatedHandler } from './api';
import { useHealth, useLocation } from './hooks';
import { navigate, safeNext } from './router';
import { buildQuery } from './lib/query';
import { Link, Loading } from './components/ui';
import { LoginPage } from './pages/Login';
import { HomePage } from './pages/Home';
import { ClustersPage } from './pages/Clusters';
import { ClusterEditor } from './pages/ClusterEditor';
import { ModelsPage, ModelEditor } from './pages/Models';
import { NewPlanPage } from './pages/NewPlan';
import { JobsPage } from './pages/Jobs';
import { JobPage } from './pages/Job';
import { ApplyPage, PlanDiffPage } from './pages/Replanning';
import { lazy } from './lazy';

// the pages with charts load Chart.js; they come as separate chunks when first opened
const PlanPage = lazy(() => import('./pages/Plan').then((m) => m.PlanPage));
const ComparePage = lazy(() => import('./pages/Compare').then((m) => m.ComparePage));

/** Shown on every page while jobs cannot run (no live worker, broker or database down). */
function HealthBanner() {
  const h = useHealth();
  if (!h.checked || h.canRunJobs) return null;
  const noWorker = h.problems.some((p) => p.startsWith('workers'));
  return (
    <div class="health-banner" role="alert" data-testid="health-banner">
      <div class="container">
        <strong>{noWorker ? 'No worker is alive: new jobs stay queued and running ones make no progress.' : 'Jobs cannot run right now.'}</strong>{' '}
        <span>{h.problems.join('; ')}.</span>
      </div>
    </div>
  );
}

function App() {
  const loc = useLocation();
  const [user, setUser] = useState<string | null | undefined>(undefined);
  const [signingOut, setSigningOut] = useState(false);
  const [menuOpen, setMenuOpen] = useState(false);
  const first = useRef(true);

  useEffect(() => {
    let alive = true;
    // /auth/me/ answers {"username": null} when signed out, so asking never logs an error
    api.csrf()
      .catch(() => undefined)
      .then(() => api.me().then((u) => u.username, () => null))
      .then((u) => {
        if (alive) setUser(u);
      });
    setUnauthenticatedHandler(() => setUser(null));
    return () => {
      alive = false;
      setUnauthenticatedHandler(null);
    };
  }, []);

  // signed out: show the sign-in page with the wanted page as ?next=
  useEffect(() => {
    if (user === null && loc.route.name !== 'login') {
      navigate('/login' + buildQuery({ next: location.pathname + location.search }), { replace: true });
    }
  }, [user, loc.route.name]);

  // move focus to the new page's heading after in-app navigation (screen readers announce it)
  useEffect(() => {
    setMenuOpen(false);
    if (first.current) {
      first.current = false;
      return;
    }
    const t = setTimeout(() => {
      // never take focus from a field the user is typing in (the redirect to /login happens while the
      // sign-in form is already there, and a fast user, or a test, may have started typing)
      const active = document.activeElement as HTMLElement | null;
      if (active && active.isConnected && active.matches('input, textarea, select')) return;
      document.getElementById('page-title')?.focus({ preventScroll: true });
    }, 0);
    return () => clearTimeout(t);
  }, [loc.pathname]);

  if (user === undefined) {
    return (
      <main id="main" class="container">
        <Loading label="Starting chainplan…" />
      </main>
    );
  }

  if (user === null || loc.route.name === 'login') {
    return (
      <LoginPage
        signedInAs={user}
        onSignedIn={(name) => {
          setUser(name);
          navigate(safeNext(loc.query.next), { replace: true });
        }}
      />
    );
  }

  // unmount the page first (its polling stops), then end the session once its requests have settled
  const signOut = async () => {
    setSigningOut(true);
    try {
      await api.logout();
    } finally {
      setSigningOut(false);
      setUser(null);
    }
  };
  if (signingOut) {
    return (
      <main id="main" class="container">
        <Loading label="Signing out…" />
      </main>
    );
  }

  const { route } = loc;
  const id = Number(route.params.id);
  let page;
  switch (route.name) {
    case 'home': page = <HomePage />; break;
    case 'clusters': page = <ClustersPage query={loc.query} />; break;
    case 'cluster-new': page = <ClusterEditor id={null} />; break;
    case 'cluster': page = <ClusterEditor id={id} key={id} />; break;
    case 'models': page = <ModelsPage />; break;
    case 'model-new': page = <ModelEditor id={null} preset={loc.query.preset} />; break;
    case 'model': page = <ModelEditor id={id} key={id} />; break;
    case 'plan-new': page = <NewPlanPage query={loc.query} />; break;
    case 'jobs': page = <JobsPage query={loc.query} />; break;
    case 'job': page = <JobPage id={id} key={id} />; break;
    case 'compare': page = <ComparePage id={id} query={loc.query} key={id} />; break;
    case 'plan': page = <PlanPage id={id} key={id} />; break;
    case 'plan-diff': {
      const old = route.params.old ? Number(route.params.old) : null;
      page = <PlanDiffPage id={id} old={old} key={`${id}-${old}`} />;
      break;
    }
    case 'cluster-apply': page = <ApplyPage id={id} key={id} />; break;
    default:
      page = (
        <section>
          <h1 id="page-title" tabIndex={-1}>Page not found</h1>
          <p>There is no page at {loc.pathname}. <Link href="/">Go to the start page</Link>.</p>
        </section>
      );
  }

  const section = route.name.startsWith('cluster') ? 'clusters'
    : route.name.startsWith('model') ? 'models'
    : route.name === 'plan-new' ? 'plan-new'
    : ['jobs', 'job', 'compare', 'plan', 'plan-diff'].includes(route.name) ? 'jobs' : route.name;
  const nav: Array<[string, string, string]> = [
    ['plan-new', '/jobs/new', 'New plan'],
    ['jobs', '/jobs', 'Jobs'],
    ['clusters', '/clusters', 'Clusters'],
    ['models', '/models', 'Models'],
  ];

  return (
    <>
      <a class="skip-link" href="#main">Skip to content</a>
      <header class="topbar">
        <div class="container topbar-inner">
          <Link href="/" class="brand" aria-label="chainplan home">
            <span class="brand-mark" aria-hidden="true" />chainplan
          </Link>
          <button type="button" class="menu-button" aria-expanded={menuOpen} aria-controls="main-menu"
            onClick={() => setMenuOpen(!menuOpen)}>
            <span class="menu-icon" aria-hidden="true" />{menuOpen ? 'Close' : 'Menu'}
          </button>
          <div id="main-menu" class={`menu ${menuOpen ? 'open' : ''}`}>
          <nav aria-label="Main">
            <ul>
              {nav.map(([key, href, label]) => (
                <li key={key}>
                  <Link href={href} aria-current={section === key ? 'page' : undefined}>{label}</Link>
                </li>
              ))}
            </ul>
          </nav>
          <div class="user">
            <span class="muted">Signed in as <strong>{user}</strong></span>
            <button type="button" class="button-small secondary" onClick={signOut}>Sign out</button>
          </div>
          </div>
        </div>
      </header>
      <HealthBanner />
      <main id="main" class="container" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);

import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import './styles.css';
import { api, setUnauthenticatedHandler } from './api';
import { useLocation } from './hooks';
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

function App() {
  const loc = useLocation();
  const [user, setUser] = useState<string | null | undefined>(undefined);
  const [signingOut, setSigningOut] = useState(false);
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
    if (first.current) {
      first.current = false;
      return;
    }
    const t = setTimeout(() => document.getElementById('page-title')?.focus({ preventScroll: true }), 0);
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
      </header>
      <main id="main" class="container" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);

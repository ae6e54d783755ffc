import { useState } from 'preact/hooks';
import { api } from '../api';
import { useTitle } from '../hooks';
import { ApiError } from '../lib/errors';
import { ErrorBox, Field } from '../components/ui';

export function LoginPage({ onSignedIn, signedInAs }: { onSignedIn: (username: string) => void; signedInAs: string | null }) {
  useTitle('Sign in');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (!username.trim() || !password) {
      setError(new ApiError(400, 'Enter your user name and password.'));
      return;
    }
    setBusy(true);
    try {
      await api.csrf().catch(() => undefined);
      const res = await api.login(username.trim(), password);
      onSignedIn(res.username ?? username.trim());
    } catch (err) {
      setError(err instanceof ApiError && (err.status === 400 || err.status === 401 || err.status === 403)
        ? new ApiError(err.status, err.detail && !/CSRF/i.test(err.detail) ? err.detail : 'Wrong user name or password.')
        : err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <form class="card login-card" onSubmit={submit} aria-labelledby="page-title" noValidate>
        <div class="brand login-brand"><span class="brand-mark" aria-hidden="true" />chainplan</div>
        <h1 id="page-title" tabIndex={-1}>Sign in</h1>
        <p class="muted">Plan how to serve a large model over your GPU servers.</p>
        {signedInAs && <p>You are signed in as <strong>{signedInAs}</strong>.</p>}
        <ErrorBox error={error} />
        <Field label="User name">
          {({ id }) => <input id={id} name="username" autoComplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />}
        </Field>
        <Field label="Password">
          {({ id }) => <input id={id} name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />}
        </Field>
        <button type="submit" class="primary wide" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>
  );
}

// Pure helpers of the gateway panel (unit-tested in tests/gateway.test.ts; docs/gateway.md).

export interface GatewayPanelData {
  cluster: number; adopted_plan: number | null; base_path: string; models: string[];
  error: string | null; keys: number;
}
export interface GatewayKey {
  id: number; hint: string; created_at: string; created_by: string | null; revoked_at: string | null; active: boolean;
}
export interface GatewayKeyCreated { id: number; key: string; hint: string }

/** The OpenAI base URL clients use: the gateway answers on this service's own origin. */
export function baseUrl(origin: string, basePath: string): string {
  return origin.replace(/\/+$/, '') + '/' + basePath.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** What a client needs besides the key, or why it cannot call yet (empty when ready). */
export function readinessText(d: GatewayPanelData): string {
  if (d.models.length === 0) return d.error ?? 'The gateway serves no model for this cluster.';
  if (d.adopted_plan === null) return 'No plan is adopted: requests answer 503 "no_adopted_plan" until one is.';
  return '';
}

/** A ready-to-paste curl call (the key as given, or a placeholder). */
export function curlExample(url: string, model: string, key = '$CHAINPLAN_KEY'): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 32 });
  return `curl ${url}/chat/completions -H "Authorization: Bearer ${key}" ` +
    `-H "Content-Type: application/json" -d '${body}'`;
}

/** "sk-AbCdE…" as the list shows a key (its first characters only). */
export function keyLabel(k: Pick<GatewayKey, 'hint'>): string {
  return `${k.hint}…`;
}

/** Active keys first (newest first within each group, as the API lists them). */
export function sortKeys(keys: GatewayKey[]): GatewayKey[] {
  return [...keys.filter((k) => k.active), ...keys.filter((k) => !k.active)];
}

// The console's only door to the server: the public REST API (API.md) with the signed-in
// token. The token lives in this tab's sessionStorage only (never localStorage, never a URL),
// so closing the tab or signing out forgets it.

const TOKEN_KEY = 'fleetgate.token';

/** An API answer other than 2xx, with its problem+json body (RFC 9457) when there is one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    /** `[{field, message, index}]` of a validation or conflict answer. */
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  signIn(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  signOut() { sessionStorage.removeItem(TOKEN_KEY); },
};

let onUnauthorized = () => {};
/** What to do when any call answers 401 (the token was revoked or is wrong). */
export function whenUnauthorized(handler) { onUnauthorized = handler; }

async function problemOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body === 'object') return body;
  } catch { /* not JSON: described below */ }
  return { title: res.statusText, detail: `the server answered HTTP ${res.status}` };
}

/**
 * Calls the API. `body` is sent as JSON, `xml` as application/xml; `accept` other than JSON
 * returns the text. Throws ApiError for any non-2xx answer or a network failure (status 0).
 */
export async function api(method, path, { body, xml, accept = 'application/json', token = session.token } = {}) {
  const headers = { Accept: accept, Authorization: `Bearer ${token}` };
  let payload;
  if (xml !== undefined) { headers['Content-Type'] = 'application/xml'; payload = xml; }
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  let res;
  try {
    res = await fetch(path, {
      method, headers, body: payload,
      cache: 'no-store', credentials: 'omit', redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, { title: 'Network error', detail: `cannot reach the server (${e.message})` });
  }
  if (!res.ok) {
    const error = new ApiError(res.status, await problemOf(res));
    if (res.status === 401 && token === session.token) {
      session.signOut();
      onUnauthorized(error);
    }
    throw error;
  }
  if (res.status === 204) return null;
  return accept === 'application/json' ? res.json() : res.text();
}

/** `/api/v1/accounts/{account}` followed by `rest`, with the name escaped. */
export function accountPath(account, rest = '') {
  return `/api/v1/accounts/${encodeURIComponent(account)}${rest}`;
}

/** A query string of the non-empty values of `params` (with its `?`), or ''. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Overview: requests by status, the last hour's enrollments and rejections, and the latest
// rejections with their reasons, for the picked account; refreshes itself every few seconds.

import { api, accountPath, query } from '../api.js';
import { errorMessage, h, header, lacksAccount, replace, table, when } from '../dom.js';
import { STATUSES } from './provisioning.js';
const REFRESH_MS = 5000;
// Counting reads at most this many requests per status (the API's largest page): beyond it
// the count shows "1000+" rather than walking a huge list every few seconds.
const COUNT_LIMIT = 1000;
const HOUR_MS = 3600 * 1000;

async function snapshot(account) {
  const pages = await Promise.all(STATUSES.map((status) =>
    api('GET', accountPath(account, `/provision-requests${query({ status, limit: COUNT_LIMIT })}`))));
  const all = pages.flatMap((p) => p.items);
  const since = Date.now() - HOUR_MS;
  const recent = (ts) => ts && Date.parse(ts) >= since;
  return {
    counts: STATUSES.map((s, i) => [s, `${pages[i].items.length}${pages[i].next ? '+' : ''}`]),
    enrolled: all.filter((r) => r.status === 'COMPLETED' && recent(r.modifiedOn)).length,
    rejectedRecently: all.filter((r) => r.lastRejection && recent(r.lastRejection.at)).length,
    rejections: all.filter((r) => r.lastRejection)
      .sort((a, b) => Date.parse(b.lastRejection.at) - Date.parse(a.lastRejection.at)).slice(0, 10),
  };
}

/** Counts as tiles: `[[label, n]]`. */
export function tiles(pairs) {
  return h('ul', { class: 'tiles' }, pairs.map(([label, n]) =>
    h('li', {}, h('span', { class: 'tile-count' }, String(n)), h('span', { class: 'tile-label' }, label))));
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Overview')) return null;
  const body = h('div');
  const stamp = h('p', { class: 'hint' });
  replace(ctx.root, header('Overview'), stamp, body);
  const refresh = async () => {
    try {
      const s = await snapshot(ctx.account);
      replace(body,
        h('h2', {}, 'Requests by status'), tiles(s.counts),
        h('h2', {}, 'Last hour'), tiles([['Enrollments', s.enrolled], ['Rejections', s.rejectedRecently]]),
        h('h2', {}, 'Latest rejections'),
        table('Latest rejections', [
          { label: 'When', cell: (r) => when(r.lastRejection.at) },
          { label: 'Client ID', cell: (r) => h('a', { href: `#/provisioning/${encodeURIComponent(r.id)}` }, r.clientId) },
          { label: 'Reason', cell: (r) => r.lastRejection.reason },
        ], s.rejections, 'No rejections.'));
      stamp.textContent = `Account ${ctx.account}, updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
    } catch (err) {
      if (err.status === 401) return;
      replace(body, errorMessage(err));
    }
  };
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

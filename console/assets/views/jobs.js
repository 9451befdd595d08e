// Batch Jobs (API.md "Jobs"): the account's jobs with their trigger, targets and counts per
// status; Create job (name, targets picked from the registry, ordered steps of three kinds,
// the schedule, attempts and step timeout; errors by their fields, XML errors with line and
// column by their step); Delete with confirmation. The device picker is shared with the job
// details' Add targets.

import { api, accountPath, ApiError } from '../api.js';
import {
  button, confirmDelete, dialog, errorMessage, field, form, h, header, lacksAccount, notice, replace, table, uid,
  value, when, xmlEditor,
} from '../dom.js';

export const JOB_STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED'];
const TRIGGERS = [['DEVICE_CONNECT', 'Device Connect'], ['INTERVAL', 'Interval'], ['CRON', 'Cron'], ['NOW', 'Now']];
const METHODS = ['GET', 'PUT', 'POST', 'DEL', 'EXEC'];
// The API's most targets per job and largest registry page: the picker reads at most this many.
const MAX_TARGETS = 10000;
const PAGE = 1000;

/** The schedule as people read it: "Device Connect", "Interval every PT1H from ...", "Cron 0 3 * * *". */
export function describeSchedule(s) {
  const name = (TRIGGERS.find(([t]) => t === s.trigger) || [s.trigger, s.trigger])[1];
  if (s.trigger === 'INTERVAL') return `${name} every ${s.every}${s.startsOn ? ` from ${when(s.startsOn)}` : ''}`;
  if (s.trigger === 'CRON') return `${name} ${s.cron} (UTC)`;
  return name;
}

/** The account's jobs route, or the route of job `id`. */
export function jobPath(ctx, id = '') {
  return accountPath(ctx.account, `/jobs${id ? `/${encodeURIComponent(id)}` : ''}`);
}

/** Asks and deletes a job. Resolves true when deleted. */
export function deleteJob(ctx, job) {
  return confirmDelete('Delete job', `Delete the job "${job.name}" and its executions? Steps already sent finish on their devices.`,
    null, () => api('DELETE', jobPath(ctx, job.id)));
}

/** The registry's client IDs of the account (at most MAX_TARGETS), page by page. */
async function deviceIds(ctx) {
  const ids = [];
  let after = null;
  do {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (after) q.set('after', after);
    const page = await api('GET', accountPath(ctx.account, `/devices?${q}`));
    ids.push(...page.items.map((d) => d.clientId));
    after = page.next;
  } while (after && ids.length < MAX_TARGETS);
  return ids;
}

/**
 * Targets picked from the registry (minus `exclude`): a filter, Select all / Select none (of
 * the devices the filter shows) and one checkbox per device. Its errors show under `name`.
 */
export async function devicePicker(ctx, name, exclude = []) {
  const skip = new Set(exclude);
  const ids = (await deviceIds(ctx)).filter((id) => !skip.has(id));
  const count = h('p', { class: 'hint', role: 'status' });
  const boxes = ids.map((id) => h('input', { type: 'checkbox', value: id, id: uid('target') }));
  const rows = boxes.map((b) => h('div', { class: 'check' }, b, h('label', { for: b.id }, b.value)));
  const selected = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const counted = () => { count.textContent = `${selected().length} of ${ids.length} devices selected.`; };
  const filter = h('input', { type: 'search', autocomplete: 'off', spellcheck: 'false', id: uid('filter') });
  const visible = () => boxes.filter((_, i) => !rows[i].hidden);
  filter.addEventListener('input', () => {
    const text = filter.value.trim().toLowerCase();
    rows.forEach((r, i) => { r.hidden = text !== '' && !boxes[i].value.toLowerCase().includes(text); });
  });
  // Enter in the filter filters; it must not submit the job form around it.
  filter.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') ev.preventDefault(); });
  const setAll = (on) => { for (const b of visible()) b.checked = on; counted(); };
  for (const b of boxes) b.addEventListener('change', counted);
  counted();
  const error = h('p', { class: 'field-error', id: uid('targets-error'), hidden: true });
  filter.setAttribute('aria-describedby', error.id);
  const element = h('fieldset', { class: 'field picker', 'data-field': name },
    h('legend', {}, 'Targets'), error,
    ids.length ? [
      h('div', { class: 'filters' },
        h('div', { class: 'field' }, h('label', { for: filter.id }, 'Filter devices'), filter),
        h('div', { class: 'actions' }, button('Select all', () => setAll(true)), button('Select none', () => setAll(false)))),
      h('div', { class: 'picker-list' }, rows), count,
    ] : h('p', { class: 'empty' }, exclude.length
      ? 'Every registry device of the account is a target already.'
      : 'The account has no registry devices: add them in Devices first.'));
  return { element, selected };
}

// ---- Steps: each kind's fields (`key`: the API field) and how they become the step's JSON.

const text = (props = {}) => h('input', { autocomplete: 'off', spellcheck: 'false', ...props });
const words = (v) => (v || '').split(/\s+/).filter(Boolean);

const KINDS = {
  configuration: {
    label: 'Configuration',
    fields: () => {
      const xml = xmlEditor('configuration', '');
      const box = field('Configuration XML', xml.area, 'Kura configuration XML, applied with CONF-V1 PUT configurations.');
      xml.area.after(xml.where);
      return [box];
    },
    body: (get) => ({ configuration: get('configuration') ?? '' }),
  },
  command: {
    label: 'Command',
    fields: () => [
      field('Command', text({ name: 'command' })),
      field('Arguments', text({ name: 'arguments' }), 'Separated by spaces.'),
    ],
    body: (get) => ({ command: get('command'), arguments: words(get('arguments')) }),
  },
  request: {
    label: 'Request',
    fields: () => [
      field('App', text({ name: 'app', placeholder: 'DEPLOY-V2' })),
      field('Method', h('select', { name: 'method' }, METHODS.map((m) => h('option', { value: m }, m)))),
      field('Resources', text({ name: 'resources', placeholder: 'download' }), 'Topic levels separated by spaces.'),
      field('Metrics', h('textarea', { name: 'metrics', rows: '3', spellcheck: 'false', class: 'mono' }), 'A JSON object of metric names to values (optional).'),
      field('Body', h('textarea', { name: 'body', rows: '3', spellcheck: 'false', class: 'mono' }), 'Optional.'),
    ],
    body: (get, nameOf) => {
      const raw = get('metrics');
      let metrics;
      if (raw !== undefined) {
        try { metrics = JSON.parse(raw); } catch { metrics = null; }
        if (!metrics || typeof metrics !== 'object' || Array.isArray(metrics)) {
          throw new ApiError(422, {
            title: 'Validation failed', detail: 'Fix the fields shown.',
            errors: [{ field: nameOf('metrics'), message: 'must be a JSON object, like {"dp.uri": "https://..."}' }],
          });
        }
      }
      return { app: get('app'), method: get('method'), resources: words(get('resources')), metrics, body: get('body') };
    },
  },
};

/** The ordered step list: Add (per kind), Move up/down, Remove; names follow the order. */
function stepsEditor() {
  const list = h('ol', { class: 'steps' });
  const steps = () => [...list.children];
  const error = h('p', { class: 'field-error', id: uid('steps-error'), hidden: true });
  // The API names a step's errors `steps[N].field`: every name and heading is renumbered after
  // each change, so an error lands by the step as it is shown now.
  const renumber = () => steps().forEach((li, i) => {
    const kind = KINDS[li.dataset.kind];
    li.querySelector('legend').textContent = `Step ${i + 1}: ${kind.label}`;
    li.querySelector('fieldset').dataset.field = `steps[${i}]`;
    for (const input of li.querySelectorAll('[data-key]')) {
      input.name = `steps[${i}].${input.dataset.key}`;
      input.closest('.field').dataset.field = input.name;
    }
    const [up, down] = li.querySelectorAll('.step-actions button');
    up.disabled = i === 0;
    down.disabled = i === steps().length - 1;
  });
  const move = (li, by, focusOn) => {
    if (by < 0 && li.previousElementSibling) li.previousElementSibling.before(li);
    if (by > 0 && li.nextElementSibling) li.nextElementSibling.after(li);
    renumber();
    const target = li.querySelector(focusOn);
    (target.disabled ? li.querySelector('.step-actions button:not(:disabled)') : target).focus();
  };
  const add = (kind) => {
    const fields = KINDS[kind].fields();
    for (const f of fields) {
      const input = f.querySelector('input, select, textarea');
      input.dataset.key = input.name;
    }
    const li = h('li', { 'data-kind': kind });
    li.append(h('fieldset', { class: 'field step' }, h('legend'),
      h('p', { class: 'field-error', hidden: true }), fields,
      h('div', { class: 'step-actions row-actions' },
        button('Move up', () => move(li, -1, '.step-actions button:first-child')),
        button('Move down', () => move(li, 1, '.step-actions button:nth-child(2)')),
        button('Remove', () => {
          const next = li.nextElementSibling || li.previousElementSibling;
          li.remove();
          renumber();
          (next ? next.querySelector('input, select, textarea') : list.parentElement.querySelector('.add-step button')).focus();
        }, { class: 'danger' }))));
    list.append(li);
    renumber();
    li.querySelector('input, select, textarea').focus();
  };
  const element = h('div', { class: 'field', 'data-field': 'steps' },
    h('h3', {}, 'Steps'), error, list,
    h('div', { class: 'actions add-step' }, Object.entries(KINDS).map(([kind, k]) =>
      button(`Add ${k.label.toLowerCase()} step`, () => add(kind)))));
  const body = (f) => steps().map((li, i) => {
    const name = (key) => `steps[${i}].${key}`;
    return { type: li.dataset.kind, ...KINDS[li.dataset.kind].body((key) => value(f, name(key)), name) };
  });
  return { element, body };
}

/** The schedule: the four triggers as radio buttons and the fields of the one picked. */
function scheduleEditor() {
  const group = uid('trigger');
  const radios = TRIGGERS.map(([t, label], i) => {
    const r = h('input', { type: 'radio', name: 'schedule.trigger', value: t, id: `${group}-${t}`, checked: i === 0 });
    return h('div', { class: 'check' }, r, h('label', { for: r.id }, label));
  });
  const every = field('Every', text({ name: 'schedule.every', placeholder: 'PT1H' }),
    'An ISO 8601 duration: weeks, days, hours, minutes, seconds (P1D, PT1H30M).');
  const startsOn = field('Starts On', h('input', { name: 'schedule.startsOn', type: 'datetime-local' }),
    'Your local time; empty: one period after creation.');
  const cron = field('Cron Expression', text({ name: 'schedule.cron', placeholder: '0 3 * * *' }),
    '5 fields in UTC: minute hour day-of-month month day-of-week.');
  const error = h('p', { class: 'field-error', id: uid('trigger-error'), hidden: true });
  const element = h('fieldset', { class: 'field schedule', 'data-field': 'schedule.trigger' },
    h('legend', {}, 'Schedule'), error, h('div', { class: 'triggers' }, radios),
    every, startsOn, cron);
  const picked = () => element.querySelector('input[type=radio]:checked').value;
  const show = () => {
    every.hidden = startsOn.hidden = picked() !== 'INTERVAL';
    cron.hidden = picked() !== 'CRON';
  };
  element.addEventListener('change', show);
  show();
  const body = (f) => {
    const trigger = picked();
    if (trigger === 'INTERVAL') {
      const start = value(f, 'schedule.startsOn');
      return {
        trigger, every: value(f, 'schedule.every'),
        startsOn: start === undefined ? undefined : new Date(start).toISOString(),
      };
    }
    if (trigger === 'CRON') return { trigger, cron: value(f, 'schedule.cron') };
    return { trigger };
  };
  return { element, body };
}

/** A whole number as a number; anything else as typed (the API names what is wrong). */
function integer(v) {
  if (v === undefined) return undefined;
  return Number.isInteger(Number(v)) ? Number(v) : v;
}

/** The Create job form; `done(job)` after a 201. */
async function jobForm(ctx, done) {
  const picker = await devicePicker(ctx, 'targets');
  const steps = stepsEditor();
  const schedule = scheduleEditor();
  const f = form([
    field('Name', text({ name: 'name', required: true })),
    picker.element,
    steps.element,
    schedule.element,
    field('Max Attempts', h('input', { name: 'maxAttempts', type: 'number', min: '1', max: '100', value: '3' }),
      'Attempts per target and run: a failed target is retried when its device is next ready.'),
    field('Step Timeout', h('input', { name: 'stepTimeout', type: 'number', min: '1', max: '3600' }),
      'Seconds each step waits for its reply; empty: the server default.'),
  ], 'Create job', async (formEl) => {
    const job = await api('POST', jobPath(ctx), {
      body: {
        name: value(formEl, 'name'),
        targets: picker.selected(),
        steps: steps.body(formEl),
        schedule: schedule.body(formEl),
        maxAttempts: integer(value(formEl, 'maxAttempts')),
        stepTimeout: integer(value(formEl, 'stepTimeout')),
      },
    });
    done(job);
  });
  return f;
}

/** Opens Create job; resolves the created job, or undefined. */
async function createJob(ctx) {
  let created;
  let closeDialog;
  let f;
  try {
    f = await jobForm(ctx, (job) => { created = job; closeDialog(); });
  } catch (err) {
    if (err.status !== 401) await notice('Create job', errorMessage(err));
    return undefined;
  }
  await dialog('Create job', (close) => { closeDialog = close; return f; });
  return created;
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Batch Jobs')) return null;
  const body = h('div');
  const stamp = h('p', { class: 'hint', role: 'status' });
  const load = async () => {
    const { items } = await api('GET', jobPath(ctx));
    replace(body, table('Batch jobs', [
      { label: 'Name', cell: (j) => h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name) },
      { label: 'Trigger', cell: (j) => describeSchedule(j.schedule) },
      { label: 'Targets', cell: (j) => String(j.targets.length) },
      ...JOB_STATUSES.map((s) => ({ label: s, cell: (j) => String(j.targetCounts[s]) })),
      { label: 'Next firing', cell: (j) => when(j.nextFireOn) || '—' },
      { label: 'Actions', cell: (j) => h('span', { class: 'row-actions' },
        button('Delete', async () => { if (await deleteJob(ctx, j)) await load(); }, { class: 'danger' })) },
    ], items, 'No jobs yet: Create job runs steps on the account\'s devices.'));
    stamp.textContent = `Account ${ctx.account}, as of ${new Date().toLocaleTimeString()}.`;
  };
  replace(ctx.root,
    header('Batch Jobs',
      button('Create job', async () => { if (await createJob(ctx)) await load(); }),
      button('Refresh', load)),
    stamp, body);
  await load();
  return null;
}

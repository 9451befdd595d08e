// Job details (#/jobs/ID): the schedule, steps and counts per status, the targets (Add
// targets from the registry, Remove), and every execution (one per attempt per target) with
// its status, attempt, start and end, filtered by client ID and status; Show Log opens its log
// lines. Refresh reloads; Delete asks first.

import { api, query } from '../api.js';
import {
  button, confirm, dialog, errorMessage, facts, field, form, h, header, lacksAccount, notice, replace,
  select, table, value, when,
} from '../dom.js';
import { deleteJob, describeSchedule, devicePicker, JOB_STATUSES, jobPath } from './jobs.js';
import { tiles } from './overview.js';

const badge = (status) => h('span', { class: `badge ${status.toLowerCase()}` }, status);

/** A step as one line: its kind and what it sends (never a configuration's content). */
function describeStep(s) {
  if (s.type === 'configuration') return 'Configuration (CONF-V1 PUT configurations)';
  if (s.type === 'command') return `Command: ${[s.command, ...(s.arguments || [])].join(' ')}`;
  if (s.type === 'request') return `Request: ${[s.app, s.method, ...(s.resources || [])].join(' ')}`;
  return s.type;
}

function details(job) {
  return facts([
    ['Schedule', describeSchedule(job.schedule)],
    ['Steps', h('ol', { class: 'step-list' }, job.steps.map((s) => h('li', {}, describeStep(s))))],
    ['Max attempts', String(job.maxAttempts)],
    ['Step timeout', `${job.stepTimeout} s`],
    ['Created', when(job.createdOn)],
    ['Runs', String(job.run)],
    ['Last firing', when(job.firedOn)],
    ['Next firing', when(job.nextFireOn)],
  ]);
}

function showLog(e) {
  return notice(`Log of ${e.clientId}, attempt ${e.attempt}`, table('Execution log', [
    { label: 'At', cell: (l) => when(l.at) },
    { label: 'Level', cell: (l) => l.level },
    { label: 'Message', cell: (l) => l.message },
  ], e.log, 'The log is empty.'));
}

function executions(job, items) {
  const steps = job.steps.length;
  return table('Executions', [
    { label: 'Client ID', cell: (e) => e.clientId },
    { label: 'Status', cell: (e) => badge(e.status) },
    { label: 'Run', cell: (e) => String(e.run) },
    { label: 'Attempt', cell: (e) => String(e.attempt) },
    { label: 'Step', cell: (e) => (e.step === null || e.step === undefined ? '' : `${e.step + 1} of ${steps}`) },
    { label: 'Started', cell: (e) => when(e.startedOn) },
    { label: 'Ended', cell: (e) => when(e.endedOn) },
    { label: 'Log', cell: (e) => button('Show Log', () => showLog(e)) },
  ], items, 'No executions match.');
}

/** Picks registry devices that are not targets yet and adds them. Resolves true when added. */
async function addTargets(ctx, job) {
  let picker;
  try { picker = await devicePicker(ctx, 'add', job.targets); } catch (err) {
    if (err.status !== 401) await notice('Add targets', errorMessage(err));
    return false;
  }
  return dialog(`Add targets to ${job.name}`, (close) => form([picker.element], 'Add targets', async () => {
    await api('POST', `${jobPath(ctx, job.id)}/targets`, { body: { add: picker.selected(), remove: [] } });
    close(true);
  }));
}

async function removeTarget(ctx, job, clientId) {
  if (!await confirm('Remove target', `Remove ${clientId} from "${job.name}"? Its executions are removed too.`, 'Remove')) return false;
  try {
    await api('POST', `${jobPath(ctx, job.id)}/targets`, { body: { add: [], remove: [clientId] } });
    return true;
  } catch (err) {
    if (err.status !== 401) await notice('Remove target: failed', errorMessage(err));
    return false;
  }
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Job')) return null;
  const path = jobPath(ctx, ctx.param);
  const body = h('div');
  const stamp = h('p', { class: 'hint', role: 'status' });
  const filters = h('form', { class: 'filters', role: 'search' },
    field('Client ID', h('input', { name: 'clientId', autocomplete: 'off', spellcheck: 'false' })),
    field('Status', select('status', [['', 'Any'], ...JOB_STATUSES.map((s) => [s, s])])),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  const runs = h('div');
  let job = await api('GET', path);
  const loadExecutions = async () => {
    try {
      const { items } = await api('GET', `${path}/executions${query({ clientId: value(filters, 'clientId'), status: value(filters, 'status') })}`);
      replace(runs, executions(job, items));
    } catch (err) {
      if (err.status !== 401) replace(runs, errorMessage(err));
    }
  };
  const show = async () => {
    // The latest execution of each target in the current run says where the target stands.
    const { items } = await api('GET', `${path}/executions`);
    const latest = new Map(items.filter((e) => e.run === job.run).map((e) => [e.clientId, e]));
    replace(body,
      details(job),
      h('h2', {}, 'Targets by status'),
      tiles(JOB_STATUSES.map((s) => [s, job.targetCounts[s]])),
      h('h2', {}, 'Targets'),
      table('Targets', [
        { label: 'Client ID', cell: (t) => t },
        { label: 'Status', cell: (t) => (latest.has(t) ? badge(latest.get(t).status) : 'Waiting for the first firing') },
        { label: 'Attempts', cell: (t) => (latest.has(t) ? String(latest.get(t).attempt) : '0') },
        { label: 'Actions', cell: (t) => button('Remove', async () => { if (await removeTarget(ctx, job, t)) await refresh(); },
          { class: 'danger' }) },
      ], job.targets, 'The job has no targets: Add targets picks them from the registry.'));
    stamp.textContent = `As of ${new Date().toLocaleTimeString()}.`;
    await loadExecutions();
  };
  const refresh = async () => {
    try {
      job = await api('GET', path);
      await show();
    } catch (err) {
      if (err.status !== 401) replace(body, errorMessage(err));
    }
  };
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); loadExecutions(); });
  replace(ctx.root,
    h('p', {}, h('a', { href: '#/jobs' }, '← Batch Jobs')),
    header(`Job ${job.name}`,
      button('Refresh', refresh),
      button('Add targets', async () => { if (await addTargets(ctx, job)) await refresh(); }),
      button('Delete', async () => { if (await deleteJob(ctx, job)) ctx.go('#/jobs'); }, { class: 'danger' })),
    stamp, body,
    h('h2', {}, 'Executions'),
    h('p', { class: 'hint' }, 'One per attempt per target; Show Log opens what each step sent and what the device answered.'),
    filters, runs);
  await show();
  return null;
}

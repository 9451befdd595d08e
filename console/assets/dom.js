// Small DOM helpers shared by every view: elements, tables, messages, dialogs, forms that
// show an API problem by its fields, and one-time secrets with a Copy button. Everything is
// built with DOM calls and textContent, never innerHTML, so nothing the API returns can run.

/** `h('button', {type: 'button', onclick: f}, 'Save')`: props are attributes, `on*` handlers, `class`, `text`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh element id with `prefix`. */
export function uid(prefix) { ids += 1; return `${prefix}-${ids}`; }

/** Local date and time of an RFC 3339 timestamp ('' for none). */
export function when(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toLocaleString();
}

/** `<p role=alert|status class="message KIND">`: kind is 'error', 'warning' or 'ok'. */
export function message(kind, text) {
  return h('p', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** An error as a message: the problem's detail and its field errors, never a blank page. */
export function errorMessage(err, prefix = '') {
  const base = err && err.problem ? (err.problem.detail || err.problem.title) : String(err && err.message || err);
  return message('error', prefix ? `${prefix}: ${base}` : base);
}

/**
 * A table: `columns` is `[{label, cell: row => Node|string}]`. An empty list shows `empty`.
 */
export function table(caption, columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('table', {},
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', {}, c.cell(r)))))));
}

/** A definition list of `[term, value]` pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([t, v]) => [h('dt', {}, t), h('dd', {}, v === '' || v === null || v === undefined ? '—' : v)]));
}

/** A button. */
export function button(text, onclick, props = {}) {
  return h('button', { type: 'button', onclick, ...props }, text);
}

/**
 * A modal dialog (native <dialog>: focus moves in, Escape closes). `build(close)` returns its
 * content. Resolves with what `close(value)` was given (undefined on Escape).
 */
export function dialog(title, build) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const d = h('dialog', { 'aria-labelledby': titleId });
    let result;
    const close = (value) => { result = value; d.close(); };
    d.addEventListener('close', () => { d.remove(); resolve(result); });
    replace(d, h('h2', { id: titleId }, title), build(close),
      h('button', { type: 'button', class: 'dialog-close', 'aria-label': 'Close dialog', onclick: () => close() }, '×'));
    document.body.append(d);
    d.showModal();
  });
}

/** Asks to confirm; resolves true only on the confirm button. `extra` goes above the buttons. */
export function confirm(title, text, confirmLabel, extra = null) {
  return dialog(title, (close) => h('div', {},
    h('p', {}, text), extra,
    h('div', { class: 'actions' },
      button(confirmLabel, () => close(true), { class: 'danger' }),
      button('Cancel', () => close(false), { autofocus: true }))));
}

/**
 * Copies the value of `input` and says so in `status`. The Clipboard API needs a secure
 * context (HTTPS or loopback); elsewhere the selected text is copied the old way.
 */
async function copy(input, status) {
  try {
    await navigator.clipboard.writeText(input.value);
    status.textContent = 'Copied.';
    return;
  } catch { /* not a secure context, or not allowed: try the selection */ }
  input.select();
  status.textContent = document.execCommand('copy')
    ? 'Copied.' : 'Copy is not allowed here: the text is selected, copy it with the keyboard.';
}

/** A secret shown once: its value, a Copy button, and a warning that it is not shown again. */
export function secretOnce(label, value) {
  const id = uid('secret');
  const status = h('span', { role: 'status', class: 'copy-status' });
  const input = h('input', { id, type: 'text', readonly: true, value, class: 'mono', spellcheck: 'false' });
  return h('div', { class: 'secret' },
    h('label', { for: id }, label), input,
    button('Copy', () => copy(input, status)),
    status,
    h('p', { class: 'hint' }, 'Shown only now: Fleetgate keeps only a hash of it.'));
}

/**
 * A labelled form field. `input` carries `name` (the API field it fills); its errors appear
 * below it (see showProblem). Checkboxes get their label after the box.
 */
export function field(label, input, hint = '') {
  input.id = input.id || uid('field');
  const error = h('p', { class: 'field-error', id: `${input.id}-error`, hidden: true });
  input.setAttribute('aria-describedby', error.id);
  const lab = h('label', { for: input.id }, label);
  const check = input.type === 'checkbox';
  return h('div', { class: check ? 'field check' : 'field', 'data-field': input.name || '' },
    check ? [input, lab] : [lab, input], hint ? h('p', { class: 'hint' }, hint) : null, error);
}

/**
 * An XML editor (a textarea named `name`) and a hint with the caret's line and column, to find
 * what an XML error names; place `where` after the area.
 */
export function xmlEditor(name, text) {
  const area = h('textarea', { name, rows: '10', spellcheck: 'false', class: 'mono', wrap: 'off' });
  area.value = text || '';
  const where = h('span', { class: 'hint caret', 'aria-hidden': 'true' });
  const update = () => {
    const before = area.value.slice(0, area.selectionStart).split('\n');
    where.textContent = `Line ${before.length}, column ${before[before.length - 1].length + 1}`;
  };
  for (const ev of ['keyup', 'click', 'input', 'focus']) area.addEventListener(ev, update);
  return { area, where };
}

/** A select of `[value, text]` options. */
export function select(name, options, value = '') {
  return h('select', { name }, options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
}

/** Removes the errors shown by showProblem. */
export function clearProblem(form) {
  for (const e of form.querySelectorAll('.field-error')) { e.hidden = true; e.textContent = ''; }
  for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  form.querySelector(':scope > .form-message')?.replaceChildren();
}

/**
 * Shows an API error on `form`: each `errors[].field` by the input of that name, the rest
 * (and the summary) at the top of the form. Focuses the first invalid input.
 */
export function showProblem(form, err) {
  clearProblem(form);
  const top = form.querySelector(':scope > .form-message');
  const unplaced = [];
  let first = null;
  for (const e of err.errors || []) {
    const box = e.field && form.querySelector(`.field[data-field="${CSS.escape(e.field)}"]`);
    if (!box) { unplaced.push(e.field ? `${e.field}: ${e.message}` : e.message); continue; }
    const slot = box.querySelector('.field-error');
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent}; ${e.message}` : e.message;
    const input = box.querySelector('input, select, textarea');
    input.setAttribute('aria-invalid', 'true');
    first = first || input;
  }
  top.replaceChildren(errorMessage(err), ...unplaced.map((m) => message('error', m)));
  (first || form.querySelector('input, select, textarea, button'))?.focus();
}

/** A form with a message area on top; `submit(form)` runs on submit and may throw ApiError. */
export function form(fields, submitLabel, submit, extra = []) {
  const f = h('form', { novalidate: true },
    h('div', { class: 'form-message' }), fields,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, submitLabel), extra));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    clearProblem(f);
    try {
      await submit(f);
    } catch (err) {
      if (err && err.problem) showProblem(f, err); else f.querySelector('.form-message').replaceChildren(errorMessage(err));
    } finally {
      btn.disabled = false;
    }
  });
  return f;
}

/** The named input's value: booleans for checkboxes, undefined for an empty text. */
export function value(f, name) {
  const el = f.elements.namedItem(name);
  if (!el) return undefined;
  if (el.type === 'checkbox') return el.checked;
  const v = el.value.trim();
  return v === '' ? undefined : v;
}

/** A heading and a row of actions for the top of a view. */
export function header(title, ...actions) {
  return h('div', { class: 'view-header' }, h('h1', { tabindex: '-1' }, title), h('div', { class: 'actions' }, actions));
}

/** Renders a "no account yet" note for views that need one; true when it did. */
export function lacksAccount(ctx, title) {
  if (ctx.account) return false;
  replace(ctx.root, header(title), message('warning', ctx.admin
    ? 'There is no account yet: create one in Accounts.' : 'This token sees no account.'));
  return true;
}

/**
 * A paged list: `fetchPage(after)` resolves `{items, next}`; `show(items)` makes the table.
 * Previous/Next pages keep the cursors seen, so a huge list is never loaded at once.
 */
export function paged(fetchPage, show) {
  const box = h('div', { class: 'paged' });
  const cursors = [null];
  let current = 0;
  const load = async (index) => {
    let page;
    try {
      page = await fetchPage(cursors[index]);
    } catch (err) {
      replace(box, errorMessage(err));
      return;
    }
    current = index;
    cursors.length = index + 1;
    if (page.next) cursors.push(page.next);
    replace(box, show(page.items), h('div', { class: 'actions pager' },
      index > 0 ? button('Previous page', () => load(index - 1)) : null,
      h('span', { class: 'hint' }, `Page ${index + 1}`),
      page.next ? button('Next page', () => load(index + 1)) : null));
  };
  return { element: box, load: () => load(0), reload: () => load(current) };
}

/** A dialog showing `content` with a Close button. */
export function notice(title, content) {
  return dialog(title, (close) => h('div', {}, content,
    h('div', { class: 'actions' }, button('Close', () => close(), { autofocus: true }))));
}

/**
 * Asks to confirm a deletion (with a Force box when `forceLabel` is given), then runs
 * `remove(force)`; an API error is shown in a dialog. Resolves true when deleted.
 */
export async function confirmDelete(title, text, forceLabel, remove) {
  const force = forceLabel ? h('input', { type: 'checkbox', id: uid('force') }) : null;
  const extra = force ? h('div', { class: 'field check' }, force, h('label', { for: force.id }, forceLabel)) : null;
  if (!await confirm(title, text, 'Delete', extra)) return false;
  try {
    await remove(Boolean(force && force.checked));
    return true;
  } catch (err) {
    if (err.status !== 401) await notice(`${title}: failed`, errorMessage(err));
    return false;
  }
}

// A manual adjustment form, shared by the affiliate page ("Adjust
// commission": a signed amount) and the buyer page ("Adjust points": a
// signed whole number of points): the value and a reason, sent under an id
// the console makes, after a confirmation.
import { api } from './api.js';
import { confirmAction, fill, h, message } from './dom.js';

/** A fresh adjustment id: `console-` and a random UUID (the API's ids are 1-64 of A-Z a-z 0-9 _ . : -). */
export function newAdjustmentId() {
  if (crypto.randomUUID) return `console-${crypto.randomUUID()}`;
  // (randomUUID needs a secure context; getRandomValues does not.)
  const b = crypto.getRandomValues(new Uint8Array(16));
  return `console-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/**
 * The form: a signed value (the API's field `field`, input `#adjust-<field>`)
 * and a reason, POSTed to `path` as {adjustment_id, <field>, reason}.
 * The id is kept until the adjustment is recorded, so sending the same form
 * again (a double click, a retry after an answer that never came) records it
 * once; a new id after it is recorded. 422: each refusal at its field.
 * `done()` refreshes the page's figures after a recording.
 *
 * opts: {field, path, label, placeholder, reasonPlaceholder, hint,
 *   check(text) → a message to show at the field without sending (or null),
 *   value(text) → what is sent for the field,
 *   confirm(text, reason) → [question, button label] for a well-formed value (null: sent as it is),
 *   recorded(r) → what the result says was recorded ("a credit of …"),
 *   where: what shows the recorded entries ("The ledger below"),
 *   notFound: the message for a 404, done}
 */
export function adjustForm(opts) {
  const { field, done } = opts;
  let adjustmentId = newAdjustmentId();
  let busy = false;
  const refresh = () => done().catch((err) => fill(out, message('error', `Recorded, but the page could not refresh: ${err.message}`)));
  const value = h('input', { id: `adjust-${field}`, name: field, autocomplete: 'off', spellcheck: 'false', required: true,
    inputmode: opts.inputmode, placeholder: opts.placeholder, 'aria-describedby': `adjust-${field}-error adjust-${field}-hint` });
  const reason = h('input', { id: 'adjust-reason', name: 'reason', autocomplete: 'off', maxlength: 500, required: true,
    placeholder: opts.reasonPlaceholder, 'aria-describedby': 'adjust-reason-error' });
  const errorAt = { [field]: h('span', { class: 'field-error', id: `adjust-${field}-error`, hidden: true }),
    reason: h('span', { class: 'field-error', id: 'adjust-reason-error', hidden: true }) };
  const controls = { [field]: value, reason };
  const out = h('div', { id: 'adjust-message', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'adjust-submit' }, 'Record adjustment…');
  const form = h('form', { class: 'card', id: 'adjust-form', novalidate: true },
    h('div', { class: 'row' },
      h('label', { class: 'amount' }, opts.label, value, errorAt[field]),
      h('label', { class: 'wide' }, 'Reason', reason, errorAt.reason)),
    h('p', { class: 'muted', id: `adjust-${field}-hint` }, opts.hint),
    h('div', { class: 'actions' }, submit), out);

  const clearErrors = () => {
    for (const [k, el] of Object.entries(errorAt)) {
      el.hidden = true;
      fill(el);
      controls[k].removeAttribute('aria-invalid');
    }
    fill(out);
  };
  /** Each refusal at its field (the rest in the message); focus on the first. */
  const showErrors = (errors) => {
    const rest = [];
    for (const x of errors) {
      if (!errorAt[x.field]) { rest.push(x); continue; }
      fill(errorAt[x.field], x.message);
      errorAt[x.field].hidden = false;
      controls[x.field].setAttribute('aria-invalid', 'true');
    }
    if (rest.length) fill(out, message('error', `Not recorded: ${rest.map((x) => `${x.field || 'body'}: ${x.message}`).join('; ')}`, 'adjust-error'));
    (errors.map((x) => controls[x.field]).find(Boolean) || value).focus();
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (busy) return;
    busy = true;
    submit.disabled = true;
    clearErrors();
    const text = value.value.trim();
    const body = { adjustment_id: adjustmentId, [field]: opts.value ? opts.value(text) : text, reason: reason.value.trim() };
    try {
      const local = opts.check ? opts.check(text) : null;
      if (local) {
        showErrors([{ field, message: local }]);
        return;
      }
      // A well-formed value and a reason are confirmed first; anything else
      // goes straight to the server, which refuses it at its field and writes nothing.
      const ask = body.reason ? opts.confirm(text, body.reason) : null;
      if (ask && !(await confirmAction(...ask))) return;
      const r = await api('POST', opts.path, { body });
      // Recorded (201), or recorded already by an earlier send of this form (200).
      adjustmentId = newAdjustmentId();
      value.value = '';
      reason.value = '';
      fill(out, message('ok', `Recorded: ${opts.recorded(r)}, by ${r.actor} (adjustment ${r.adjustment_id}).`, 'adjust-result'));
      refresh();
    } catch (err) {
      const errors = err.status === 422 && Array.isArray(err.problem?.errors) ? err.problem.errors : null;
      if (errors) {
        // Refused, nothing written: the same id is still free for the corrected form.
        showErrors(errors);
      } else if (err.status === 409) {
        // The id holds another adjustment already (an earlier send whose
        // answer never came, then edited): it is recorded now. A new id,
        // so sending again records this one as well.
        adjustmentId = newAdjustmentId();
        fill(out, message('error', `${err.message}. ${opts.where} shows what was recorded under it; send again to record this adjustment as a new one.`, 'adjust-error'));
        refresh();
      } else if (err.status === 404 && opts.notFound) {
        // Nothing written; the id stays free.
        fill(out, message('error', opts.notFound, 'adjust-error'));
      } else {
        // No answer, or a server error: the outcome is unknown, so the id is
        // kept and sending again cannot record it twice.
        fill(out, message('error', `${err.message}. Not known to be recorded: send again to retry (it is recorded once).`, 'adjust-error'));
      }
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });
  return form;
}

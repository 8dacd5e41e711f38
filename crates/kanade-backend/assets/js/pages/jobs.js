import { api, h, table, link, can, problems, toast, badge, fill } from '../core.js';

export async function list(main) {
  const r = await api('GET', '/api/jobs');
  main.append(h('h1', {}, 'Jobs'),
    can('operator') ? h('p', {}, h('a', { href: '#/jobs/new', id: 'new-job' }, 'New job')) : null,
    table([
      { label: 'Job', cell: (j) => link(`#/jobs/${encodeURIComponent(j.id)}`, j.id) },
      { label: 'Version', cell: (j) => j.version },
      { label: 'Shell', cell: (j) => j.shell },
      { label: 'Description', cell: (j) => j.description || '' },
    ], r.items, { empty: 'The catalog is empty. Create a job, or deploy one with kanade deploy.', caption: 'Jobs' }));
}

const TEMPLATE = `id: hello
version: "1"
description: Say hello
execute:
  shell: sh
  script: echo hello from $(hostname)
  timeout: 60s
`;

/** YAML editor: validate shows every problem next to the text; save stores into the catalog. */
function yamlEditor(initial, { onSaved, readOnly }) {
  const text = h('textarea', { id: 'job-yaml', spellcheck: 'false', 'aria-describedby': 'job-yaml-status', readonly: readOnly || undefined }, initial);
  const status = h('div', { id: 'job-yaml-status', 'aria-live': 'polite' });
  const check = async () => {
    fill(status);
    try { const r = await api('POST', '/api/jobs/validate', undefined, { yaml: text.value }); status.append(h('p', { class: 's-succeeded' }, `Valid: ${r.id} version ${r.version}`)); return true; }
    catch (e) { status.append(problems(e)); return false; }
  };
  const save = async () => {
    fill(status);
    try { const r = await api('POST', '/api/jobs', undefined, { yaml: text.value }); toast(`Saved ${r.id} version ${r.version}`); onSaved(r); }
    catch (e) { status.append(problems(e)); }
  };
  return h('div', { class: 'split' },
    h('div', {}, h('label', { for: 'job-yaml' }, 'Manifest (YAML)', text)),
    h('div', {}, h('h2', {}, 'Validation'), status,
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', id: 'validate', onclick: check }, 'Validate'),
        readOnly ? null : h('button', { type: 'button', id: 'save-job', class: 'primary', onclick: save }, 'Save'))));
}

export async function editor(main) {
  main.append(h('h1', {}, 'New job'), yamlEditor(TEMPLATE, { onSaved: (r) => { location.hash = `#/jobs/${encodeURIComponent(r.id)}`; } }));
}

export async function detail(main, id) {
  const j = await api('GET', `/api/jobs/${encodeURIComponent(id)}`);
  const operator = can('operator');
  main.append(
    h('h1', {}, `Job ${id} `, j.revoked ? badge('revoked') : null),
    operator ? execForm(id, j.plan) : null,
    h('h2', {}, 'Manifest'),
    yamlEditor(j.yaml, { readOnly: !operator, onSaved: () => {} }),
    operator ? h('div', { class: 'toolbar' },
      h('button', { type: 'button', onclick: async () => {
        await api('POST', `/api/jobs/${encodeURIComponent(id)}/${j.revoked ? 'unrevoke' : 'revoke'}`);
        toast(j.revoked ? `${id} active again` : `${id} revoked: agents skip it`);
        location.reload();
      } }, j.revoked ? 'Unrevoke' : 'Revoke'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete job ${id} from the catalog?`)) return;
        try { await api('DELETE', `/api/jobs/${encodeURIComponent(id)}`); location.hash = '#/jobs'; }
        catch (e) { toast(e.message, true); }
      } }, 'Delete')) : null);
}

/** Target picker (all / groups / PCs), jitter and optional waves → POST /api/exec/{job}. */
function execForm(id, storedPlan) {
  const hasPlan = Boolean(storedPlan);
  // Nothing chosen at first (or the job's own target, when its file had one): running on every
  // agent is never one click away.
  const mode = h('select', { id: 'exec-target-mode' },
    hasPlan ? h('option', { value: 'stored' }, 'as the job file says') : h('option', { value: '' }, 'choose…'),
    h('option', { value: 'groups' }, 'groups'), h('option', { value: 'pcs' }, 'PCs'), h('option', { value: 'all' }, 'all agents'));
  const names = h('input', { id: 'exec-target-names', placeholder: 'comma-separated' });
  const jitter = h('input', { id: 'exec-jitter', placeholder: 'e.g. 30s', size: 8 });
  const waves = h('textarea', { id: 'exec-waves', rows: 3, style: 'min-height:4rem', placeholder: 'one wave per line: <group> <delay>, e.g.\ncanary 0s\nall-pcs 30m' });
  const ratio = h('input', { id: 'exec-ratio', placeholder: 'e.g. 0.1', size: 6 });
  const errors = h('div');
  const submit = async (e) => {
    e.preventDefault();
    fill(errors);
    const plan = {};
    const lines = waves.value.split('\n').map((l) => l.trim()).filter(Boolean);
    if (lines.length) {
      plan.rollout = { strategy: 'wave', waves: lines.map((l) => { const [group, delay] = l.split(/\s+/); return { group, delay: delay || '0s' }; }) };
      if (ratio.value.trim()) plan.rollout.max_failure_ratio = Number(ratio.value);
    } else if (mode.value !== 'stored') {
      const list = names.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (!mode.value || (mode.value !== 'all' && !list.length)) {
        errors.append(h('p', { class: 'errors', role: 'alert' }, 'Choose a target: groups or PCs (with their names), all agents, or waves.'));
        return;
      }
      if (mode.value === 'all' && !confirm(`Run ${id} on every agent in the fleet?`)) return;
      plan.target = mode.value === 'all' ? { all: true } : { [mode.value]: list };
    }
    if (jitter.value.trim()) plan.jitter = jitter.value.trim();
    if (mode.value === 'stored' && !lines.length && plan.jitter) {
      errors.append(h('p', { class: 'errors', role: 'alert' }, 'Jitter goes with a target you choose here; the job file\'s own plan sets its own.'));
      return;
    }
    // The job file's own plan may target everyone too: the same question first.
    if (mode.value === 'stored' && !lines.length && storedPlan.target && storedPlan.target.all
        && !confirm(`The job file runs ${id} on every agent in the fleet. Run it?`)) return;
    try {
      const stored = mode.value === 'stored' && !lines.length;
      const r = await api('POST', `/api/exec/${encodeURIComponent(id)}`, stored ? undefined : plan);
      location.hash = `#/executions/${r.exec_id}`;
    } catch (err) { errors.append(problems(err)); }
  };
  return h('section', { class: 'panel', 'aria-labelledby': 'exec-h' }, h('h2', { id: 'exec-h' }, 'Run this job'),
    h('form', { class: 'inline', onsubmit: submit },
      h('label', { for: 'exec-target-mode' }, 'Target', mode), h('label', { for: 'exec-target-names' }, 'Groups or PCs', names),
      h('label', { for: 'exec-jitter' }, 'Jitter', jitter), h('label', { for: 'exec-waves' }, 'Waves (instead of a target)', waves),
      h('label', { for: 'exec-ratio' }, 'Abort above failure ratio', ratio),
      h('button', { type: 'submit', class: 'primary', id: 'exec-submit' }, 'Execute')), errors);
}

// Dynamic groups: PCs matching a rule over agent fields and facts, kept up to date by the
// backend (every minute, and at once when a rule changes).

import { api, h, table, link, time, can, toast, fill, problems } from '../core.js';

const HELP = 'Fields: pc, hostname, os.family, os.name, os.version, arch, agent.version, groups, facts.<table>.<column>. '
  + 'Operators: = != < <= > >= ~ (contains). Combine with and, or, not and parentheses.';

export async function list(main) {
  const out = h('div');
  main.append(h('h1', {}, 'Dynamic groups'), out, can('operator') ? createForm() : null);
  async function load() {
    const r = await api('GET', '/api/groups');
    fill(out, table([
      { label: 'Group', cell: (g) => link(`#/groups/${encodeURIComponent(g.name)}`, g.name) },
      { label: 'Members', num: true, cell: (g) => g.members },
      { label: 'Rule', cell: (g) => h('code', {}, g.rule) },
      { label: 'Evaluated', cell: (g) => time(g.evaluated_ms) },
    ], r.items, { empty: 'No dynamic groups yet.', caption: 'Dynamic groups' }));
  }
  await load();
}

function createForm() {
  const name = h('input', { id: 'group-name', required: true, placeholder: 'low-disk' });
  const rule = h('input', { id: 'group-rule', required: true, placeholder: 'os.family = windows and facts.volumes.free_pct < 10' });
  const error = h('div', { id: 'group-errors' });
  return h('section', { class: 'panel', 'aria-labelledby': 'new-group-h' }, h('h2', { id: 'new-group-h' }, 'New dynamic group'),
    h('p', { class: 'muted' }, HELP),
    h('form', { onsubmit: async (e) => {
      e.preventDefault();
      fill(error);
      try {
        const r = await api('POST', '/api/groups', { name: name.value.trim(), rule: rule.value });
        toast(`Group ${r.group.name} created: ${r.members.length} members`);
        location.hash = `#/groups/${encodeURIComponent(r.group.name)}`;
      } catch (err) { error.append(problems(err)); }
    } }, h('label', { for: 'group-name' }, 'Name', name), h('label', { for: 'group-rule' }, 'Rule', rule), error,
    h('button', { type: 'submit', class: 'primary', id: 'create-group' }, 'Create')));
}

export async function detail(main, name) {
  const body = h('div');
  main.append(h('h1', {}, 'Dynamic group ', h('span', { class: 'id' }, name)), body);
  const draw = (r) => {
    const rule = h('input', { id: 'group-rule', value: r.group.rule, disabled: !can('operator') });
    const error = h('div', { id: 'group-errors' });
    fill(body,
      h('p', {}, `${r.members.length} members; evaluated `, time(r.group.evaluated_ms), `; created by ${r.group.created_by}.`),
      can('operator') ? h('form', { onsubmit: async (e) => {
        e.preventDefault();
        fill(error);
        try { draw(await api('PUT', `/api/groups/${encodeURIComponent(name)}`, { rule: rule.value })); toast('Rule saved; members updated'); }
        catch (err) { error.append(problems(err)); }
      } }, h('label', { for: 'group-rule' }, 'Rule', rule), h('p', { class: 'muted' }, HELP), error,
      h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'primary', id: 'save-rule' }, 'Save rule'),
        h('button', { type: 'button', class: 'danger', id: 'delete-group', onclick: async () => {
          if (!confirm(`Delete dynamic group ${name}? Its ${r.members.length} members leave it.`)) return;
          try { await api('DELETE', `/api/groups/${encodeURIComponent(name)}`); location.hash = '#/groups'; } catch (err) { toast(err.message, true); }
        } }, 'Delete'))) : h('p', {}, 'Rule: ', h('code', {}, r.group.rule)),
      h('h2', {}, 'Members'),
      table([
        { label: 'PC', cell: (m) => link(`#/agents/${encodeURIComponent(m.pc_id)}`, m.pc_id) },
        { label: 'Member since', cell: (m) => time(m.since_ms) },
      ], r.members, { empty: 'No PC matches the rule now.', caption: 'Members' }));
  };
  draw(await api('GET', `/api/groups/${encodeURIComponent(name)}`));
}

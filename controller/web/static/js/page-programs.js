// Programs: the built-ins and the user's own; plot and steps; start; upload or edit a file.

import { errorText, profilesOf } from './actions.js';
import { command } from './api.js';
import { closeDialog, openDialog } from './dialog.js';
import { announce, clock, fill, h, nextId } from './dom.js';
import { t } from './i18n.js';
import { durationOf, timelinePlot } from './plot.js';
import { app } from './state.js';
import { techniqueName } from './words.js';

export function render(main, args) {
  if (args[0] === 'new') return editor(main, null);
  if (args[0] === 'edit' && args[1]) return editor(main, args[1]);
  if (args[0]) return detail(main, args[0]);
  return list(main);
}

function list(main) {
  const box = h('div', { class: 'cards', id: 'programs' }, h('p', { class: 'muted' }, t('loading')));
  fill(main,
    h('div', { class: 'spread' }, h('h1', {}, t('nav.programs')),
      h('a', { class: 'btn', href: '#/programs/new', id: 'new-program' }, t('programs.new'))),
    box);
  command('programs').then((answer) => {
    if (answer.status !== 'ok') return fill(box, h('p', { class: 'error', role: 'alert' }, errorText(answer)));
    const rows = answer.data || [];
    const group = (builtin) => rows.filter((p) => Boolean(p.builtin) === builtin).map((p) => h('article', { class: 'card', dataset: { program: p.id } },
      h('h3', {}, h('a', { href: `#/programs/${encodeURIComponent(p.id)}` }, p.title || p.id)),
      h('p', { class: 'muted' }, `${p.id} · ${t(`audience.${p.audience}`)}`),
      h('span', { class: 'tag' }, t(builtin ? 'programs.builtin' : 'programs.yours'))));
    const mine = group(false);
    fill(box,
      group(true),
      mine.length ? mine : h('p', { class: 'muted card' }, t('programs.noneOfYours')));
    return undefined;
  });
  return null;
}

async function load(id) {
  const cached = app.programs.get(id);
  if (cached) return { status: 'ok', data: cached };
  const answer = await command('program', { name: id });
  if (answer.status === 'ok') app.programs.set(id, answer.data);
  return answer;
}

function detail(main, id) {
  fill(main, h('p', { class: 'muted' }, t('loading')));
  load(id).then((answer) => {
    if (answer.status !== 'ok') {
      fill(main, h('p', { class: 'error', role: 'alert' }, errorText(answer)), h('a', { class: 'btn link', href: '#/programs' }, t('programs.back')));
      return;
    }
    const p = answer.data;
    const steps = p.steps || [];
    const plot = timelinePlot(p);
    fill(main,
      h('p', {}, h('a', { class: 'btn link', href: '#/programs' }, `← ${t('programs.back')}`)),
      h('h1', {}, p.title || id),
      h('p', { class: 'muted' }, [id, t(`audience.${p.audience}`), clock(durationOf(p)), p.frequency].filter(Boolean).join(' · ')),
      p.description ? h('p', {}, p.description) : null,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn primary', id: 'start', onclick: () => startDialog(p) }, t('programs.start')),
        h('a', { class: 'btn', href: `#/programs/edit/${encodeURIComponent(id)}` }, t(p.builtin === false ? 'programs.edit' : 'programs.copy'))),
      h('section', { class: 'card', 'aria-labelledby': 'plot-title' }, h('h2', { id: 'plot-title' }, t('programs.plot')), plot.element),
      h('section', { 'aria-labelledby': 'steps-title' },
        h('h2', { id: 'steps-title' }, t('programs.steps')),
        h('div', { class: 'scroll' }, h('table', { class: 'stack', id: 'steps' },
          h('thead', {}, h('tr', {}, ['#', t('programs.when'), t('programs.technique'), t('programs.amount'), t('programs.method')].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, steps.map((step, i) => h('tr', {},
            h('td', { class: 'num' }, String(i + 1)),
            h('td', {}, step.start != null ? `${clock(step.start)}–${clock(step.end)}` : ''),
            h('td', {}, h('strong', {}, step.label || techniqueName(step.technique)), h('br'), `${techniqueName(step.technique)}${step.zone ? ` · ${t(`zone.${step.zone}`)}` : ''}`),
            h('td', {}, step.amount || step.count || (step.repetitions ? `× ${step.repetitions}` : '') || (step.duration_s ? `${step.duration_s} s` : ''),
              step.method_count ? h('div', { class: 'muted' }, t('programs.methodCount', { n: step.method_count })) : null),
            h('td', { class: 'cite' }, step.cite ? `“${step.cite}”` : ''))))))),
      p.cites ? h('details', { class: 'card' }, h('summary', {}, t('programs.source')), h('p', {}, p.cites)) : null);
  });
  return null;
}

/** Start: devices, profile, intensity and the "am I well today" confirmation. */
async function startDialog(p) {
  const [devices, profiles, course] = await Promise.all([command('devices'), command('profiles'), command('course')]);
  const connected = (devices.data || []).filter((d) => d.link === 'up');
  const profileList = profilesOf(profiles);
  const message = h('p', { class: 'error', role: 'alert', id: 'start-error' });
  const boxes = connected.map((d) => h('input', { type: 'checkbox', checked: true, value: d.name }));
  const profileId = nextId('profile');
  const profile = h('select', { id: profileId }, profileList.map((pr) => h('option', { value: pr.name }, pr.name)));
  const scaleId = nextId('scale');
  const scaleOut = h('output', { for: scaleId }, '100 %');
  const scale = h('input', { id: scaleId, type: 'range', min: 10, max: 100, step: 5, value: '100', oninput: () => { scaleOut.textContent = `${scale.value} %`; } });
  // Answered on the Me page today already: ticked, and still there to untick.
  const well = h('input', { type: 'checkbox', id: 'well', checked: Boolean(course.data && course.data.well_today === true) });
  const caution = h('input', { type: 'checkbox', id: 'caution' });
  const cautionBox = h('label', { class: 'check', hidden: true }, caution, h('span', {}, t('start.caution')));
  const showCaution = () => {
    const chosen = profileList.find((pr) => pr.name === profile.value);
    cautionBox.hidden = !(chosen && chosen.complex_osteochondrosis);
  };
  profile.addEventListener('change', showCaution);
  showCaution();
  const go = async (event) => {
    event.preventDefault();
    message.textContent = '';
    if (!well.checked) {
      message.textContent = t('start.wellFirst');
      well.focus();
      return;
    }
    const payload = {
      program: p.id, well_today: true, scale: Number(scale.value) / 100,
      devices: boxes.filter((b) => b.checked).map((b) => b.value),
    };
    if (profileList.length) payload.profile = profile.value;
    if (!cautionBox.hidden && caution.checked) payload.accept_caution = true;
    const answer = await command('run', payload);
    if (answer.status !== 'ok') {
      message.textContent = errorText(answer);
      return;
    }
    closeDialog();
    announce(t('start.started', { title: p.title || p.id }));
    location.hash = '#/now';
  };
  openDialog(t('start.title', { title: p.title || p.id }),
    h('form', { id: 'start-form', onsubmit: go },
      h('fieldset', { class: 'plain' }, h('legend', {}, t('start.devices')),
        connected.length
          ? connected.map((d, i) => h('label', { class: 'check' }, boxes[i], h('span', {}, `${d.name} (${t(`kind.${d.kind}`)})`)))
          : h('p', { class: 'warn' }, t('start.noDevices'))),
      profileList.length ? h('div', { class: 'field' }, h('label', { for: profileId }, t('start.profile')), profile) : null,
      h('div', { class: 'field' }, h('label', { for: scaleId }, t('start.scale')), h('div', { class: 'row' }, scale, scaleOut)),
      h('label', { class: 'check' }, well, h('span', {}, t('start.well'))),
      cautionBox,
      message),
    [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('cancel')),
      h('button', { type: 'submit', class: 'btn primary', form: 'start-form', id: 'start-go' }, t('programs.start'))]);
}

const TEMPLATE = `id = "my-program"
title = "My program"
audience = "adult"
max_duration = 30
description = "What it does, in a sentence."
cites = "The method's words this program follows."

[[steps]]
technique = "stroking"
zone = "collar_zone"
repetitions = 7
intensity = 0.35
`;

/** Upload or edit a program file; check it on the daemon, errors at their line and column. */
function editor(main, id) {
  const textId = nextId('toml');
  const text = h('textarea', { id: textId, spellcheck: false, autocapitalize: 'off', 'aria-describedby': 'check-result', value: '' });
  text.value = TEMPLATE;
  const result = h('div', { id: 'check-result', 'aria-live': 'polite' });
  const file = h('input', {
    type: 'file', accept: '.toml,text/plain', id: 'upload',
    onchange: async () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      if (chosen.size > 256 * 1024) {
        fill(result, h('p', { class: 'error', role: 'alert' }, t('editor.tooBig')));
        return;
      }
      text.value = await chosen.text();
      check();
    },
  });
  const fileLabel = h('label', { class: 'btn', for: 'upload' }, t('editor.upload'));
  file.classList.add('sr-only');

  async function check(save = false) {
    const source = text.value;
    const name = (source.match(/^\s*id\s*=\s*"([^"]+)"/m) || [])[1] || id || '';
    const answer = save ? await command('program_save', { name, text: source }) : await command('program_check', { text: source });
    if (answer.status === 'ok' && answer.data && answer.data.valid === false) {
      showError(answer.data, source);
      return;
    }
    if (answer.status === 'ok') {
      fill(result, h('p', { class: 'tag ok', role: 'status' }, t(save ? 'editor.saved' : 'editor.ok')));
      if (save) {
        app.programs.delete(name);
        announce(t('editor.saved'));
      }
      return;
    }
    showError(answer, source);
  }

  function showError(answer, source) {
    const where = locate(answer);
    const lines = source.split('\n');
    const issues = (answer.issues || []).filter((i) => i && i.message);
    const nodes = [h('div', { class: 'error', role: 'alert', id: 'editor-error' },
      issues.length
        ? h('ul', {}, issues.map((i) => h('li', {}, i.line
          ? t('editor.at', { line: i.line, column: i.column || 1, error: i.message })
          : i.message)))
        : h('p', {}, where.line && !/line\s+\d+/i.test(answer.error || '')
          ? t('editor.at', { line: where.line, column: where.column || 1, error: answer.error || '' })
          : errorText(answer)))];
    if (where.line && lines[where.line - 1] !== undefined) {
      const gutter = `${where.line} | `;
      nodes.push(h('pre', { class: 'excerpt', 'aria-hidden': 'true' },
        `${gutter}${lines[where.line - 1]}\n${' '.repeat(gutter.length + Math.max(0, (where.column || 1) - 1))}^`));
      // Put the caret where the error is, so fixing it is one keystroke away.
      let offset = 0;
      for (let i = 0; i < where.line - 1; i += 1) offset += lines[i].length + 1;
      offset += Math.max(0, (where.column || 1) - 1);
      text.focus();
      text.setSelectionRange(offset, offset);
    }
    fill(result, nodes);
  }

  fill(main,
    h('p', {}, h('a', { class: 'btn link', href: id ? `#/programs/${encodeURIComponent(id)}` : '#/programs' }, `← ${t('programs.back')}`)),
    h('h1', {}, id ? t('editor.titleEdit', { id }) : t('editor.titleNew')),
    h('p', { class: 'muted' }, t('editor.help')),
    h('div', { class: 'editor' },
      h('div', { class: 'row' }, fileLabel, file),
      h('div', { class: 'field' }, h('label', { for: textId }, t('editor.text')), text),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn', id: 'check', onclick: () => check(false) }, t('editor.check')),
        h('button', { type: 'button', class: 'btn primary', id: 'save', onclick: () => check(true) }, t('editor.save'))),
      result));
  if (id) {
    load(id).then((answer) => {
      if (answer.status !== 'ok' || !answer.data.text) return;
      // A built-in stays as it is: its copy gets an id of its own to be saved under.
      text.value = answer.data.builtin
        ? answer.data.text.replace(/^(\s*id\s*=\s*")([^"]+)(")/m, '$1$2-mine$3')
        : answer.data.text;
    });
  }
  return null;
}

/** Line and column of an error answer: fields, or "line N, column M" in the message. */
export function locate(answer) {
  const data = answer.data || {};
  const issue = (answer.issues || data.issues || []).find((i) => i && i.line) || {};
  let line = Number(answer.line || data.line || issue.line) || 0;
  let column = Number(answer.column || data.column || issue.column) || 0;
  if (!line) {
    const m = String(answer.error || '').match(/line\s+(\d+)(?:,?\s*col(?:umn)?\s+(\d+))?/i);
    if (m) {
      line = Number(m[1]);
      column = Number(m[2]) || 0;
    }
  }
  return { line, column };
}

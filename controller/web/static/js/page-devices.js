// Devices: scan, pair with a felt pulse, rename, caps, unpair; link, battery, firmware.

import { act, errorText } from './actions.js';
import { command, setStatus } from './api.js';
import { closeDialog, openDialog } from './dialog.js';
import { announce, fill, h, nextId } from './dom.js';
import { t } from './i18n.js';
import { app, on } from './state.js';

export function render(main) {
  const list = h('div', { class: 'cards', id: 'paired' });
  const found = h('div', { id: 'found' });
  const scanMessage = h('p', { class: 'error', role: 'alert' });
  const scanButton = h('button', { type: 'button', class: 'btn primary', id: 'scan', onclick: scan }, t('devices.scan'));

  async function scan() {
    scanButton.disabled = true;
    scanMessage.textContent = '';
    fill(found, h('p', { class: 'muted', role: 'status' }, t('devices.scanning')));
    const answer = await command('scan', { timeout: 3 });
    scanButton.disabled = false;
    if (answer.status !== 'ok') {
      fill(found);
      scanMessage.textContent = errorText(answer);
      return;
    }
    const rows = answer.data || [];
    announce(t('devices.foundN', { n: rows.length }));
    fill(found, rows.length
      ? h('ul', { class: 'cards plain', 'aria-label': t('devices.found') }, rows.map((d) => h('li', { class: 'card' },
        h('h3', {}, d.name || d.address),
        h('p', { class: 'muted' }, `${t(`kind.${d.kind}`)} · ${d.address} · ${d.transport || ''}${d.rssi != null ? ` · ${d.rssi} dBm` : ''}`),
        d.paired
          ? h('span', { class: 'tag ok' }, t('devices.alreadyPaired'))
          : h('button', { type: 'button', class: 'btn primary', dataset: { address: d.address }, onclick: () => pairDialog(d) }, t('devices.pair')))))
      : h('p', { class: 'muted' }, t('devices.noneFound')));
  }

  fill(main,
    h('h1', {}, t('nav.devices')),
    h('section', { 'aria-labelledby': 'paired-title' }, h('h2', { id: 'paired-title' }, t('devices.paired')), list),
    h('section', { 'aria-labelledby': 'scan-title' },
      h('h2', { id: 'scan-title' }, t('devices.add')),
      h('p', { class: 'muted' }, t('devices.scanHelp')),
      scanButton, scanMessage, found));

  function paint() {
    const devices = (app.status && app.status.devices) || [];
    fill(list, devices.length ? devices.map(deviceCard) : h('p', { class: 'muted' }, t('devices.none')));
  }
  paint();
  command('devices').then((answer) => {
    if (answer.status === 'ok' && app.status) setStatus({ ...app.status, devices: answer.data });
  });
  return on((kind) => { if (kind === 'state') paint(); });
}

function deviceCard(d) {
  const kindCap = d.caps && d.caps[d.kind] != null ? d.caps[d.kind] : 1;
  const capId = nextId('cap');
  const capValue = h('output', { for: capId }, `${Math.round(kindCap * 100)} %`);
  const cap = h('input', {
    id: capId, type: 'range', min: 0, max: 100, step: 5, value: String(Math.round(kindCap * 100)),
    oninput: () => { capValue.textContent = `${cap.value} %`; },
    onchange: async () => {
      await act('set_caps', { name: d.name, max_intensity: Number(cap.value) / 100 }, t('devices.capSaved', { name: d.name, pct: cap.value }));
    },
  });
  return h('article', { class: 'card', dataset: { device: d.name }, 'aria-label': d.name },
    h('div', { class: 'spread' },
      h('h3', {}, d.name),
      h('span', { class: `tag ${d.link === 'up' ? 'ok' : d.link === 'down' ? 'bad' : ''}` }, t(`link.${d.link || 'unknown'}`))),
    h('dl', { class: 'facts' },
      h('dt', {}, t('devices.kind')), h('dd', {}, t(`kind.${d.kind}`)),
      h('dt', {}, t('devices.model')), h('dd', {}, d.model || '–'),
      h('dt', {}, t('devices.firmware')), h('dd', {}, d.firmware || '–'),
      h('dt', {}, t('devices.battery')), h('dd', {}, d.battery != null ? `${d.battery} %` : t('devices.mains')),
      d.temperature != null ? [h('dt', {}, t('devices.temperature')), h('dd', {}, `${d.temperature} °C`)] : null,
      h('dt', {}, t('devices.address')), h('dd', {}, `${d.address} (${d.transport || ''})`),
      d.in_session ? [h('dt', {}, t('devices.now')), h('dd', {}, t('devices.inSession'))] : null,
      d.last_error ? [h('dt', {}, t('devices.lastError')), h('dd', {}, d.last_error)] : null),
    h('div', { class: 'field' }, h('label', { for: capId }, t('devices.cap')), h('div', { class: 'row' }, cap, capValue)),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'btn small', onclick: () => pulseDialog({ name: d.name }, d.name) }, t('devices.find')),
      h('button', { type: 'button', class: 'btn small', onclick: () => renameDialog(d) }, t('devices.rename')),
      h('button', { type: 'button', class: 'btn small', onclick: () => unpairDialog(d) }, t('devices.unpair'))));
}

/** Pairing: name it, feel the pulse ("did you feel it?"), then pair. */
function pairDialog(found) {
  const nameId = nextId('name');
  const name = h('input', { id: nameId, type: 'text', autocomplete: 'off', maxlength: 64, placeholder: t(`kind.${found.kind}`), value: '' });
  const message = h('p', { class: 'error', role: 'alert' });
  const title = t('pair.title', { name: found.name || found.address });
  const dialog = openDialog(title,
    [h('p', {}, t('pair.intro')),
      h('div', { class: 'field' }, h('label', { for: nameId }, t('pair.name')), name, h('small', { class: 'muted' }, t('pair.nameHelp'))),
      message],
    [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('cancel')),
      h('button', { type: 'button', class: 'btn primary', id: 'send-pulse', onclick: () => pulse() }, t('pair.pulse'))]);

  async function pulse() {
    dialog.set([h('div', { class: 'pulse', 'aria-hidden': 'true' }), h('p', { role: 'status' }, t('pair.pulsing'))], []);
    const answer = await command('pulse', { address: found.address, kind: found.kind });
    if (answer.status !== 'ok') {
      dialog.set([h('p', { class: 'error', role: 'alert' }, errorText(answer))],
        [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('cancel')),
          h('button', { type: 'button', class: 'btn primary', onclick: () => pulse() }, t('pair.again'))]);
      return;
    }
    dialog.set([h('p', { class: 'count', id: 'felt-question' }, t('pair.felt'))],
      [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('pair.notMine')),
        h('button', { type: 'button', class: 'btn', onclick: () => pulse() }, t('pair.again')),
        h('button', { type: 'button', class: 'btn primary', id: 'felt-yes', onclick: () => pair() }, t('pair.yes'))]);
  }

  async function pair() {
    dialog.set([h('p', { role: 'status' }, t('pair.pairing'))], []);
    const payload = { address: found.address, kind: found.kind };
    const wanted = name.value.trim();
    if (wanted) payload.name = wanted;
    const answer = await command('pair', payload);
    if (answer.status !== 'ok') {
      dialog.set([h('p', { class: 'error', role: 'alert' }, errorText(answer))],
        [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('close'))]);
      return;
    }
    const paired = answer.data && answer.data.name;
    closeDialog();
    announce(t('pair.done', { name: paired || wanted || found.address }));
    const devices = await command('devices');
    if (devices.status === 'ok' && app.status) setStatus({ ...app.status, devices: devices.data });
    const button = document.querySelector(`[data-address="${CSS.escape(found.address)}"]`);
    if (button) button.replaceWith(h('span', { class: 'tag ok' }, t('devices.alreadyPaired')));
  }
}

/** A paired device's pulse, to find out which one it is. */
async function pulseDialog(target, label) {
  const dialog = openDialog(t('pair.findTitle', { name: label }),
    [h('div', { class: 'pulse', 'aria-hidden': 'true' }), h('p', { role: 'status' }, t('pair.pulsing'))],
    [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('close'))]);
  const answer = await command('pulse', target);
  dialog.set([answer.status === 'ok' ? h('p', {}, t('pair.pulsed', { name: label })) : h('p', { class: 'error', role: 'alert' }, errorText(answer))],
    [h('button', { type: 'button', class: 'btn primary', onclick: closeDialog }, t('close'))]);
}

function renameDialog(d) {
  const id = nextId('rename');
  const input = h('input', { id, type: 'text', value: d.name, maxlength: 64, autocomplete: 'off' });
  const message = h('p', { class: 'error', role: 'alert' });
  const save = async (event) => {
    event.preventDefault();
    const answer = await act('rename', { name: d.name, new_name: input.value.trim() }, t('devices.renamed', { name: input.value.trim() }));
    if (answer.status === 'ok') closeDialog();
    else message.textContent = errorText(answer);
  };
  openDialog(t('devices.renameTitle', { name: d.name }),
    h('form', { id: 'rename-form', onsubmit: save }, h('div', { class: 'field' }, h('label', { for: id }, t('devices.newName')), input), message),
    [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('cancel')),
      h('button', { type: 'submit', class: 'btn primary', form: 'rename-form' }, t('save'))]);
}

function unpairDialog(d) {
  const message = h('p', { class: 'error', role: 'alert' });
  openDialog(t('devices.unpairTitle', { name: d.name }), [h('p', {}, t('devices.unpairHelp')), message],
    [h('button', { type: 'button', class: 'btn', onclick: closeDialog }, t('cancel')),
      h('button', {
        type: 'button', class: 'btn stop',
        onclick: async () => {
          const answer = await act('unpair', { name: d.name }, t('devices.unpaired', { name: d.name }));
          if (answer.status === 'ok') closeDialog();
          else message.textContent = errorText(answer);
        },
      }, t('devices.unpair'))]);
}

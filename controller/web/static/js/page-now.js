// Now: the running session, live outputs, the timeline with its cursor, and the stop buttons.

import { act, errorText, stopNow } from './actions.js';
import { command } from './api.js';
import { announce, clock, fill, h } from './dom.js';
import { has, language, t } from './i18n.js';
import { timelinePlot } from './plot.js';
import { app, locked, on, session } from './state.js';
import { channelName, techniqueName } from './words.js';

export function render(main) {
  const head = h('div', { class: 'now-head' });
  const stepBox = h('div', { class: 'card', id: 'step' });
  const plotBox = h('div', { class: 'card' });
  const devicesBox = h('div', { id: 'outputs' });
  const eventList = h('ul', { class: 'events', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'events-title' });
  const stopButton = h('button', { type: 'button', class: 'btn huge stop', id: 'stop', onclick: () => stopNow('stop') }, t('now.stop'));
  const estopButton = h('button', { type: 'button', class: 'btn huge estop', id: 'estop', onclick: () => stopNow('emergency_stop') }, t('now.estop'));
  const gentler = h('button', { type: 'button', class: 'btn', id: 'gentler', onclick: gentlerPressed }, t('now.gentler'));
  const pause = h('button', { type: 'button', class: 'btn', id: 'pause', onclick: pausePressed });
  const message = h('p', { class: 'error', role: 'alert', id: 'now-error' });

  async function gentlerPressed() {
    const answer = await act('gentler', {});
    if (answer.status === 'ok') {
      const factor = answer.data && answer.data.gentler_factor;
      announce(t('now.gentlerDone', { pct: factor ? Math.round(factor * 100) : '–' }));
      message.textContent = '';
    } else message.textContent = errorText(answer);
  }

  async function pausePressed() {
    const running = session();
    const name = running && running.state === 'paused' ? 'resume' : 'pause';
    const answer = await act(name, {}, t(name === 'pause' ? 'now.paused' : 'now.resumed'));
    message.textContent = answer.status === 'ok' ? '' : errorText(answer);
  }

  fill(main,
    head,
    h('div', { class: 'controls' },
      h('div', { class: 'full' }, stopButton),
      h('div', { class: 'full' }, estopButton),
      gentler, pause),
    message,
    h('div', { class: 'split' },
      h('div', {}, stepBox, plotBox),
      h('div', {},
        h('section', { class: 'card', 'aria-labelledby': 'outputs-title' }, h('h2', { id: 'outputs-title' }, t('now.outputs')), devicesBox),
        h('section', { class: 'card', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, t('now.events')), eventList))));

  let plot = null;
  let plotFor = null;
  let lastStep = null;
  let lastCount = null;

  async function ensurePlot(id) {
    if (plotFor === id) return;
    plotFor = id;
    plot = null;
    fill(plotBox, h('h2', {}, t('now.timeline')), h('p', { class: 'muted' }, t('loading')));
    let program = app.programs.get(id);
    if (!program) {
      const answer = await command('program', { name: id });
      if (answer.status !== 'ok') {
        fill(plotBox, h('h2', {}, t('now.timeline')), h('p', { class: 'muted' }, errorText(answer)));
        return;
      }
      program = answer.data;
      app.programs.set(id, program);
    }
    if (plotFor !== id) return;
    plot = timelinePlot(program);
    fill(plotBox, h('h2', {}, t('now.timeline')), plot.element);
    follow();
  }

  function paintSession() {
    const running = session();
    // Locked out (LAN, no login), the page cannot see the session: Stop stays usable.
    stopButton.disabled = !running && !locked();
    gentler.disabled = !running;
    pause.disabled = !running;
    pause.textContent = running && running.state === 'paused' ? t('now.resume') : t('now.pause');
    if (!running) {
      const last = app.status && app.status.last_session;
      fill(head,
        h('h1', { class: 'sr-only' }, t('nav.now')),
        h('p', { class: 'count', id: 'idle' }, t('now.idle')),
        last ? h('p', { class: 'muted', id: 'last' }, t('now.last', {
          program: last.program,
          outcome: t(`outcome.${last.outcome}`),
          // (Its reason, unless it only repeats the outcome: "completed. completed".)
          reason: last.reason && last.reason !== last.outcome ? reasonText(last.reason) : '',
        })) : null,
        h('p', {}, h('a', { class: 'btn primary', href: '#/programs' }, t('now.choose'))));
      fill(stepBox, h('p', { class: 'muted' }, t('now.noStep')));
      stepBox.hidden = true;
      plotBox.hidden = true;
      plotFor = null;
      lastStep = null;
      return;
    }
    stepBox.hidden = false;
    plotBox.hidden = false;
    const stepNo = (running.step ?? -1) + 1;
    const total = running.step_count || 0;
    const count = running.count;
    const technique = (count && count.technique) || running.technique || '';
    const countText = count && count.total
      ? t('count.of', { what: techniqueWord(technique), done: count.current ?? count.done, total: count.total })
      : (technique ? techniqueName(technique) : '');
    const paused = running.state === 'paused';
    fill(head,
      h('h1', { id: 'program-title' }, running.title || running.program),
      h('p', { class: 'muted' }, paused
        ? t('now.pausedBecause', { reasons: (running.pause_reasons || []).map(reasonText).join(', ') || t('now.byYou') })
        : t(`state.${running.state}`)));
    const left = remaining(running);
    fill(stepBox,
      h('p', { class: 'muted', id: 'step-no' }, t('now.step', { n: stepNo || '–', total })),
      h('h2', { id: 'step-label' }, running.step_label || techniqueName(technique)),
      technique ? h('p', { class: 'tag' }, techniqueName(technique)) : null,
      h('p', { class: 'count', id: 'count' }, countText),
      h('p', { class: 'left', id: 'left' }, t('now.left', { time: clock(left) })),
      h('div', { class: 'progress', role: 'progressbar', 'aria-label': t('now.progress'),
        'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(progress(running) * 100) },
      h('span', { style: { width: `${progress(running) * 100}%` } })),
      running.gentler_presses ? h('p', { class: 'muted' }, t('now.gentlerSoFar', { n: running.gentler_presses, pct: Math.round((running.gentler_factor || 1) * 100) })) : null);
    // Screen readers hear a new step and a new count, not every tick of the clock.
    if (lastStep !== running.step) announce(t('now.stepSay', { n: stepNo, total, label: running.step_label || '' }));
    else if (countText && lastCount !== countText) announce(countText);
    lastStep = running.step;
    lastCount = countText;
    ensurePlot(running.program);
  }

  let shape = '';
  const fills = new Map(); // "device/channel" -> [track, fill, value]

  function paintDevices() {
    const running = session();
    const paired = (app.status && app.status.devices) || [];
    const live = app.outputs || {};
    const names = [...new Set([...paired.map((d) => d.name), ...Object.keys(live)])];
    const links = names.map((name) => {
      const info = paired.find((d) => d.name === name) || {};
      const inSession = running && running.devices && running.devices[name];
      // In a session the lane holds the device: its link is the one that counts.
      const link = (inSession && inSession.link) || info.link || 'unknown';
      return { name, info, link, channels: Object.keys(live[name] || {}) };
    });
    const now = JSON.stringify(links.map((d) => [d.name, d.link, d.info.battery, d.channels]));
    if (now !== shape) {
      // Rebuilt only when devices, links or channels change; levels update in place.
      shape = now;
      fills.clear();
      if (!names.length) {
        fill(devicesBox, h('p', { class: 'muted' }, t('now.noDevices')), h('a', { class: 'btn', href: '#/devices' }, t('nav.devices')));
        return;
      }
      fill(devicesBox, links.map((d) => h('div', { class: 'device', dataset: { device: d.name } },
        h('h3', {}, d.name,
          h('span', { class: `tag ${linkClass(d.link)}` }, t(`link.${d.link}`)),
          d.info.battery != null ? h('span', { class: 'tag' }, t('device.battery', { pct: d.info.battery })) : null),
        d.channels.length
          ? h('div', { class: 'bars' }, d.channels.map((channel) => bar(d.name, channel, fills)))
          : h('p', { class: 'muted' }, t('now.still')))));
    }
    for (const [name, channels] of Object.entries(live)) {
      for (const [channel, value] of Object.entries(channels || {})) {
        const parts = fills.get(`${name}/${channel}`);
        if (!parts) continue;
        const pct = Math.round(Math.min(1, Math.max(0, Number(value) || 0)) * 100);
        parts[0].setAttribute('aria-valuenow', pct);
        parts[0].setAttribute('aria-valuetext', `${pct} %`);
        parts[1].style.transform = `scaleX(${pct / 100})`;
        parts[2].textContent = `${pct}%`;
      }
    }
  }

  function paintEvents() {
    fill(eventList, app.events.length
      ? app.events.slice(0, 20).map((event) => h('li', {},
        h('time', {}, new Date(event.received).toLocaleTimeString()),
        h('strong', {}, event.device ? `${event.device}: ` : ''),
        eventText(event)))
      : h('li', { class: 'muted' }, t('now.noEvents')));
  }

  // The cursor moves between status updates at the daemon's speed. A timer moves it when it
  // is due to move by one position (plot.resolution), not on every animation frame: a phone
  // showing a session sleeps between the cursor's moves, and an idle or paused page at all times.
  let timer = 0;
  function follow() {
    clearTimeout(timer);
    const running = session();
    if (!plot || !running) return;
    const speed = (app.status.daemon && app.status.daemon.speed) || 1;
    const moving = running.state === 'running';
    const since = moving ? ((performance.now() - app.statusAt) / 1000) * speed : 0;
    plot.move(Math.min(running.duration || Infinity, (running.elapsed || 0) + since));
    // At most 20 moves a second (as often as the state comes) at a demo's speed.
    if (moving) timer = setTimeout(follow, Math.max(50, (1000 * plot.resolution) / speed));
  }

  paintSession();
  paintDevices();
  paintEvents();
  const off = on((kind) => {
    if (kind === 'state') {
      paintSession();
      paintDevices();
      follow();
    } else if (kind === 'outputs') paintDevices();
    else if (kind === 'event') paintEvents();
  });
  return () => {
    off();
    clearTimeout(timer);
  };
}

function remaining(running) {
  if (typeof running.remaining === 'number') return running.remaining;
  return Math.max(0, (running.duration || 0) - (running.elapsed || 0));
}

function progress(running) {
  return running.duration ? Math.min(1, Math.max(0, (running.elapsed || 0) / running.duration)) : 0;
}

function bar(device, channel, fills) {
  const label = t('now.output', { device, channel: channelName(channel) });
  const level = h('div', { class: 'fill' });
  const track = h('div', { class: 'track', role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 }, level);
  const value = h('span', { class: 'val', 'aria-hidden': 'true' }, '0%');
  fills.set(`${device}/${channel}`, [track, level, value]);
  return h('div', { class: 'bar' }, h('span', {}, channelName(channel)), track, value);
}

function linkClass(link) {
  return link === 'up' ? 'ok' : link === 'down' ? 'bad' : '';
}

function techniqueWord(technique) {
  return has(`count.${technique}`) ? t(`count.${technique}`) : techniqueName(technique);
}

/** A device event in words (the daemon's class name or snake_case name, and its detail). */
export function eventText(event) {
  const raw = String(event.event || event.type || '');
  const key = `event.${raw.replace(/[_\s-]/g, '').toLowerCase()}`;
  const detail = detailText(event.detail);
  return has(key) ? t(key, { detail }) : `${raw}${detail ? ` (${detail})` : ''}`;
}

/** Where a field's value is a code the catalogue words (outcome "completed", reason "user"). */
const CODED = { outcome: 'outcome', reason: 'reason', rule: 'rule' };

/** An event's detail in words: each field as the catalogue words it ("detail.<field>"),
 *  its value too when it is a code the catalogue knows; anything else as the daemon sent it
 *  (a free-form reason, a step's label: those are in the daemon's and the program's words). */
export function detailText(detail) {
  if (detail === null || detail === undefined) return '';
  if (typeof detail !== 'object') return String(detail);
  return Object.entries(detail)
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    // An end's reason that only repeats its outcome ("completed", "completed").
    .filter(([field, value]) => !(field === 'reason' && value === detail.outcome))
    // A safety rule's own sentence is the daemon's English: in another language the
    // rule's name stands for it.
    .filter(([field]) => !(field === 'detail' && language() !== 'en' && has(`rule.${detail.rule}`)))
    .map(([field, value]) => {
      const words = valueText(field, value);
      return has(`detail.${field}`) ? t(`detail.${field}`, { value: words }) : `${field} ${words}`;
    })
    .join(', ');
}

function valueText(field, value) {
  if (Array.isArray(value)) return value.map((one) => valueText(field, one)).join(', ');
  if (typeof value === 'boolean') return t(value ? 'detail.yes' : 'detail.no');
  if (field === 'index' && Number.isInteger(value)) return String(value + 1); // a step, from 1
  const coded = CODED[field] && `${CODED[field]}.${value}`;
  return coded && has(coded) ? t(coded) : String(value);
}

/** A pause reason in words: a code the catalogue knows ("user", "pillow_empty"), else as sent. */
export function reasonText(reason) {
  return has(`reason.${reason}`) ? t(`reason.${reason}`) : String(reason);
}

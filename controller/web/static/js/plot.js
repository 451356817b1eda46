// A program's timeline: one stepped line per output, step boundaries, and a cursor.

import { h, s } from './dom.js';
import { t } from './i18n.js';
import { channelName } from './words.js';

const LANE = 18; // px per output row, matching the label rows in app.css

/** The series of a program answer, whichever of the accepted shapes it came in. */
export function seriesOf(program) {
  if (Array.isArray(program.series)) return program.series;
  const timeline = program.timeline || program.plot;
  if (timeline && Array.isArray(timeline.series)) return timeline.series;
  if (timeline && timeline.devices) {
    // {devices: {device: {kind, series: {channel: [[t, v], ...]}}}}
    return Object.entries(timeline.devices).flatMap(([device, one]) => Object.entries((one && one.series) || {})
      .map(([channel, points]) => ({ device, channel, points, label: `${device} ${channelName(channel)}` })));
  }
  if (timeline && typeof timeline === 'object') {
    // {device: {channel: [[t, v], ...]}}
    const out = [];
    for (const [device, channels] of Object.entries(timeline)) {
      if (!channels || typeof channels !== 'object' || Array.isArray(channels)) continue;
      for (const [channel, points] of Object.entries(channels)) {
        if (Array.isArray(points)) out.push({ device, channel, points });
      }
    }
    return out;
  }
  return [];
}

export function durationOf(program) {
  const steps = program.steps || [];
  const last = steps.length ? Number(steps[steps.length - 1].end) || 0 : 0;
  return Number(program.duration || (program.timeline && program.timeline.duration)) || last || 1;
}

/**
 * The plot element and a function that moves its cursor to t seconds (null hides it).
 * Points are [t, value] with value 0..1 (or with a series `max` to scale by).
 */
export function timelinePlot(program, title) {
  const series = seriesOf(program);
  const steps = program.steps || [];
  const duration = durationOf(program);
  const width = 1000;
  const height = Math.max(1, series.length) * LANE;
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', height, 'aria-hidden': 'true', focusable: 'false',
  });
  for (const step of steps) {
    const x = (Number(step.start) / duration) * width;
    svg.append(s('line', { class: 'sep', x1: x, x2: x, y1: 0, y2: height, 'vector-effect': 'non-scaling-stroke' }));
  }
  const devices = [...new Set(series.map((one) => one.device))];
  series.forEach((one, row) => {
    const max = Number(one.max) || 1;
    const top = row * LANE + 2;
    const span = LANE - 4;
    let path = '';
    let lastY = top + span;
    for (const [time, value] of one.points || []) {
      const x = (Number(time) / duration) * width;
      const y = top + span - Math.min(1, Math.max(0, Number(value) / max)) * span;
      // Stepped: hold the last level until the next point.
      path += path ? `H${x.toFixed(1)}V${y.toFixed(1)}` : `M0,${lastY}H${x.toFixed(1)}V${y.toFixed(1)}`;
      lastY = y;
    }
    if (path) path += `H${width}`;
    svg.append(s('path', {
      d: path || `M0,${lastY}H${width}`, class: `lane c${devices.indexOf(one.device) % 3}`,
      'vector-effect': 'non-scaling-stroke',
    }));
  });
  const labels = h('div', { class: 'labels', 'aria-hidden': 'true' },
    h('span', {}, ''),
    series.map((one) => h('span', { title: one.label || `${one.device} ${one.channel}` }, one.label || `${one.device} ${one.channel}`)));
  const marks = h('div', { class: 'steps', 'aria-hidden': 'true' },
    steps.map((step, i) => h('span', { style: { left: `${(100 * Number(step.start)) / duration}%` } }, String(i + 1))));
  const cursor = h('div', { class: 'cursor', hidden: true });
  const area = h('div', { class: 'area' }, marks, svg, cursor);
  const figure = h('figure', {
    class: 'plot', role: 'img',
    'aria-label': t('plot.label', { title: title || program.title || program.id || '', n: series.length, steps: steps.length }),
  }, labels, area);
  figure.style.margin = '0';
  // The cursor is written only when it moves by a tenth of a percent (a pixel of a
  // 1000-pixel plot): resolution is that many seconds of the program, for whoever moves it.
  const resolution = duration / 1000;
  let shownAt = null;
  const move = (seconds) => {
    if (seconds === null || seconds === undefined) {
      cursor.hidden = true;
      shownAt = null;
      return;
    }
    const at = Math.round(10 * Math.min(100, Math.max(0, (100 * seconds) / duration))) / 10;
    if (at === shownAt) return;
    shownAt = at;
    cursor.hidden = false;
    cursor.style.left = `${at}%`;
  };
  return { element: series.length ? figure : h('p', { class: 'muted' }, t('plot.none')), move, resolution };
}

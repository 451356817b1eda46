// Me: profiles and contraindications (what each means), "am I well today", the course, history.

import { act, errorText, profilesOf } from './actions.js';
import { command } from './api.js';
import { announce, fill, h, nextId } from './dom.js';
import { has, t } from './i18n.js';

export function render(main) {
  const courseBox = h('section', { class: 'card', 'aria-labelledby': 'course-title' });
  const wellBox = h('section', { class: 'card', 'aria-labelledby': 'well-title' });
  const profileBox = h('section', { class: 'card', 'aria-labelledby': 'profile-title' });
  const historyBox = h('section', { 'aria-labelledby': 'history-title' });
  fill(main, h('h1', {}, t('nav.me')),
    h('div', { class: 'split' }, h('div', {}, wellBox, courseBox, profileBox), h('div', {}, historyBox)));
  let chosen = null;

  async function loadAll() {
    const [profiles, course, history] = await Promise.all([
      command('profiles'), command('course', chosen ? { profile: chosen } : {}), command('history', { limit: 20 }),
    ]);
    paintProfile(profiles);
    paintCourse(course);
    paintWell(course);
    paintHistory(history);
  }

  function paintWell(course) {
    const data = (course && course.data) || {};
    const state = data.well_today;
    const say = h('p', { id: 'well-state', role: 'status' },
      state === true ? t('me.wellYes') : state === false ? t('me.wellNo') : t('me.wellAsk'));
    const answer = async (well) => {
      const result = await act('well_today', { well }, t(well ? 'me.wellYes' : 'me.wellNo'));
      if (result.status === 'ok') loadAll();
    };
    fill(wellBox, h('h2', { id: 'well-title' }, t('me.wellTitle')), h('p', { class: 'muted' }, t('me.wellWhy')), say,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn primary', 'aria-pressed': String(state === true), onclick: () => answer(true) }, t('me.wellButton')),
        h('button', { type: 'button', class: 'btn', 'aria-pressed': String(state === false), onclick: () => answer(false) }, t('me.unwellButton'))));
  }

  function paintCourse(course) {
    if (course.status !== 'ok') {
      fill(courseBox, h('h2', { id: 'course-title' }, t('me.course')), h('p', { class: 'muted' }, errorText(course)));
      return;
    }
    const c = course.data || {};
    const current = c.course || {};
    const total = current.sessions || c.course_sessions || c.total || 15;
    const done = current.done ?? c.done ?? 0;
    fill(courseBox, h('h2', { id: 'course-title' }, t('me.course')),
      h('p', { class: 'course-count', id: 'course-done' }, t('me.done', { done, total })),
      h('div', { class: 'progress', role: 'progressbar', 'aria-label': t('me.course'), 'aria-valuemin': 0, 'aria-valuemax': total, 'aria-valuenow': done },
        h('span', { style: { width: `${Math.min(100, (100 * done) / total)}%` } })),
      h('dl', { class: 'facts' },
        h('dt', {}, t('me.nextDue')), h('dd', {}, when(current.next_due || c.next_due) || t('me.anytime')),
        h('dt', {}, t('me.rest')), h('dd', {}, t('me.restMin', { min: Math.round((c.rest_after_s || 900) / 60) }),
          c.rest_until && new Date(c.rest_until) > new Date()
            ? h('div', { class: 'warn' }, t('me.restUntil', { time: when(c.rest_until) })) : null)),
      (c.today_contraindications || []).length
        ? h('p', { class: 'warn' }, c.today_contraindications
          .map((i) => contraWords(i.name, i.reason || i.name)).join('; ')) : null,
      h('p', { class: 'muted' }, t('me.courseHelp')));
  }

  function paintProfile(answer) {
    if (answer.status !== 'ok') {
      fill(profileBox, h('h2', { id: 'profile-title' }, t('me.profile')), h('p', { class: 'muted' }, errorText(answer)));
      return;
    }
    const list = profilesOf(answer);
    const known = explanations(answer.data, list);
    if (!chosen || !list.find((p) => p.name === chosen)) {
      chosen = (answer.data && answer.data.default) || (list[0] && list[0].name) || 'default';
    }
    const profile = list.find((p) => p.name === chosen) || { name: chosen, contraindications: [] };
    const selectId = nextId('profile');
    const select = h('select', { id: selectId, onchange: () => { chosen = select.value; loadAll(); } },
      list.map((p) => h('option', { value: p.name, selected: p.name === chosen }, p.name)));
    const mine = new Set((profile.contraindications || []).map(idOf));
    const boxes = [];
    const message = h('p', { class: 'error', role: 'alert', id: 'profile-error' });
    const items = known.map((c) => {
      const box = h('input', { type: 'checkbox', value: c.id, checked: mine.has(c.id), 'aria-describedby': `why-${c.id}` });
      boxes.push(box);
      return h('li', { class: 'contra' }, h('label', { class: 'check' }, box,
        h('span', {}, h('strong', {}, has(`contra.${c.id}`) ? t(`contra.${c.id}`) : c.id.replace(/_/g, ' ')),
          h('small', { id: `why-${c.id}` }, whyText(c)))));
    });
    const save = async () => {
      const contraindications = boxes.filter((b) => b.checked).map((b) => b.value);
      const result = await act('profile_set', { name: chosen, contraindications }, t('me.saved'));
      message.textContent = result.status === 'ok' ? '' : errorText(result);
    };
    fill(profileBox, h('h2', { id: 'profile-title' }, t('me.profile')),
      list.length > 1 ? h('div', { class: 'field' }, h('label', { for: selectId }, t('me.whose')), select) : null,
      h('dl', { class: 'facts' },
        h('dt', {}, t('me.audience')), h('dd', {}, t(`audience.${profile.audience || 'adult'}`)),
        h('dt', {}, t('me.painful')), h('dd', {}, t(`side.${profile.painful_side || 'none'}`)),
        profile.caps ? [h('dt', {}, t('me.caps')), h('dd', {}, Object.entries(profile.caps).map(([k, v]) => `${t(`kind.${k}`)} ${Math.round(v * 100)} %`).join(', '))] : null),
      h('h3', {}, t('me.contra')), h('p', { class: 'muted' }, t('me.contraHelp')),
      h('ul', { class: 'plain', id: 'contraindications' }, items),
      h('button', { type: 'button', class: 'btn primary', id: 'save-profile', onclick: save }, t('save')),
      message);
  }

  function paintHistory(answer) {
    const rows = answer.status === 'ok' ? answer.data || [] : [];
    fill(historyBox, h('h2', { id: 'history-title' }, t('me.history')),
      answer.status !== 'ok' ? h('p', { class: 'muted' }, errorText(answer))
        : rows.length ? h('div', { class: 'scroll card' }, h('table', { id: 'history' },
          h('thead', {}, h('tr', {}, [t('me.when'), t('me.program'), t('me.outcome')].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows.map((r) => h('tr', {},
            h('td', {}, when(r.started_at)),
            h('td', {}, r.program, r.simulated ? h('span', { class: 'tag' }, t('me.simulated')) : null),
            h('td', {}, r.outcome ? t(`outcome.${r.outcome}`) : '–', r.gentler_presses ? h('div', { class: 'muted' }, t('me.gentlerN', { n: r.gentler_presses })) : null))))))
          : h('p', { class: 'muted card' }, t('me.noHistory')));
  }

  loadAll();
  announce(t('nav.me'));
  return null;
}

function idOf(item) {
  return typeof item === 'string' ? item : item.id || item.name;
}

/** The known contraindications with what each means: from the answer, else from the profiles. */
function explanations(data, list) {
  const all = (data && !Array.isArray(data) && (data.contraindications || data.known)) || [];
  if (all.length) return all.map((c) => (typeof c === 'string' ? { id: c } : { ...c, id: idOf(c) }));
  const seen = new Map();
  for (const p of list) for (const c of p.contraindications || []) if (typeof c === 'object') seen.set(idOf(c), { ...c, id: idOf(c) });
  return [...seen.values()];
}

/** Why a contraindication matters: the catalogue's words where it has them (translated),
 *  else the daemon's own. */
function contraWords(id, own) {
  return has(`contraWhy.${id}`) ? t(`contraWhy.${id}`) : own;
}

function whyText(c) {
  const parts = [contraWords(c.id, c.reason || c.meaning || '')];
  if (c.ems_only) parts.push(t('me.emsOnly'));
  else if (c.source) parts.push(`(${c.source})`);
  return parts.filter(Boolean).join(' ');
}

function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

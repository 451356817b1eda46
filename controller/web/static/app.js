// The page's entry: language, login state, the live socket, the router and the stop bar.

import { stopNow } from './js/actions.js';
import { connect, loadSession, login, refreshStatus } from './js/api.js';
import { fill, h } from './js/dom.js';
import { language, preferred, setLanguage, t } from './js/i18n.js';
import { app, locked, on, session } from './js/state.js';

// Pages load on first visit: the first load carries only the page in view.
const PAGES = {
  now: () => import('./js/page-now.js'),
  devices: () => import('./js/page-devices.js'),
  programs: () => import('./js/page-programs.js'),
  me: () => import('./js/page-me.js'),
};

const main = document.getElementById('main');
let leave = null; // the current page's clean-up
let rendering = 0;
let navigated = false; // the first render keeps the browser's focus

async function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const page = PAGES[name] ? name : 'now';
  const ticket = ++rendering;
  for (const link of document.querySelectorAll('.tabs a')) {
    if (link.dataset.route === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const module = await PAGES[page]();
  if (ticket !== rendering) return; // a newer navigation won
  if (leave) leave();
  main.setAttribute('aria-busy', 'true');
  fill(main);
  leave = module.render(main, rest.map(decodeURIComponent)) || null;
  main.setAttribute('aria-busy', 'false');
  if (navigated) {
    // A new page starts at its top, and a screen reader starts reading it there.
    window.scrollTo(0, 0);
    main.focus({ preventScroll: true });
  }
  navigated = true;
  document.title = `${t(`nav.${page}`)} · massaged`;
  updateStopBar();
}

/** While a session runs, Stop and Emergency stop stay in reach on every page. */
function updateStopBar() {
  const bar = document.getElementById('stopbar');
  const page = (location.hash.replace(/^#\/?/, '').split('/')[0]) || 'now';
  const show = Boolean(session()) && page !== 'now';
  bar.hidden = !show;
  document.body.classList.toggle('with-stopbar', show);
  if (show && !bar.firstChild) {
    fill(
      bar,
      h('button', { type: 'button', class: 'btn stop', onclick: () => stopNow('stop') }, t('now.stop')),
      h('button', { type: 'button', class: 'btn estop', onclick: () => stopNow('emergency_stop') }, t('now.estop')),
    );
  }
  if (!show) fill(bar);
}

function showLink() {
  const el = document.getElementById('link');
  el.textContent = app.online ? '' : t('link.offline');
  el.classList.toggle('bad', !app.online);
}

function showLogin() {
  const box = document.getElementById('login');
  box.hidden = !locked();
  if (box.hidden) return fill(box);
  const input = h('input', {
    id: 'token', type: 'password', autocomplete: 'current-password', required: true,
    'aria-describedby': 'login-why',
  });
  const message = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    {
      class: 'row',
      onsubmit: async (event) => {
        event.preventDefault();
        const result = await login(input.value.trim());
        if (!result.ok) {
          message.textContent = result.status === 429
            ? t('login.slow', { s: result.retryAfter || '?' })
            : (result.error || t('login.failed'));
        }
      },
    },
    h('label', { for: 'token' }, t('login.token')),
    input,
    h('button', { type: 'submit', class: 'btn primary' }, t('login.submit')),
  );
  fill(box, h('p', { id: 'login-why' }, t('login.why')), form, message);
}

async function start() {
  let info = {};
  try {
    info = await loadSession();
  } catch {
    info = {};
  }
  await setLanguage(preferred(info.lang_default));
  const langButton = document.getElementById('lang');
  const paint = () => {
    const other = language() === 'ru' ? 'en' : 'ru';
    langButton.textContent = other.toUpperCase();
    langButton.setAttribute('aria-label', t('lang.switch'));
    langButton.setAttribute('lang', other);
  };
  paint();
  langButton.addEventListener('click', async () => {
    await setLanguage(language() === 'ru' ? 'en' : 'ru', true);
    paint();
    showLogin();
    showLink();
    fill(document.getElementById('stopbar'));
    route();
  });
  on((kind) => {
    if (kind === 'session') showLogin();
    if (kind === 'online') showLink();
    if (kind === 'state') updateStopBar();
  });
  showLogin();
  window.addEventListener('hashchange', route);
  connect();
  refreshStatus().catch(() => {});
  await route();
  showLink();
}

start();

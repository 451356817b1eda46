// One string catalogue per language (i18n/<lang>.json); English is the fallback.

export const LANGUAGES = ['en', 'ru'];
const KEY = 'massaged.lang';
let strings = {};
let fallback = {};
let current = 'en';

async function load(lang) {
  const answer = await fetch(`/static/i18n/${lang}.json`, { credentials: 'same-origin' });
  if (!answer.ok) throw new Error(`i18n ${lang}: HTTP ${answer.status}`);
  return answer.json();
}

/** The language to start in: the user's choice, else the browser's, else the server's default. */
export function preferred(serverDefault = 'en') {
  const saved = localStorage.getItem(KEY);
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || '']) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return LANGUAGES.includes(serverDefault) ? serverDefault : 'en';
}

export async function setLanguage(lang, remember = false) {
  if (!LANGUAGES.includes(lang)) lang = 'en';
  const [main, base] = await Promise.all([load(lang), lang === 'en' ? null : load('en')]);
  strings = main;
  fallback = base || main;
  current = lang;
  if (remember) localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
  translateStatic(document);
}

export function language() {
  return current;
}

/** The string for key with {name} placeholders filled; the key itself if it is missing. */
export function t(key, vars = {}) {
  const text = strings[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Whether the catalogue has a key (for optional strings such as event names). */
export function has(key) {
  return key in strings || key in fallback;
}

/** Fill the static page's data-i18n (text) and data-i18n-label (aria-label) elements. */
export function translateStatic(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
}

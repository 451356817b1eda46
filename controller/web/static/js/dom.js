// Tiny DOM helpers: build elements without innerHTML (no injection, CSP-friendly).

/** h('button', {class: 'big', onclick: fn}, 'Stop') -> HTMLButtonElement */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'style') {
      // CSSOM, not the style attribute: the page's CSP forbids inline style attributes.
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value; // checked, value, disabled, hidden as properties
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** SVG element with attributes. */
export function s(tag, attrs = {}) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Say something to screen readers (polite, or assertive for alerts). */
export function announce(text, assertive = false) {
  const region = document.getElementById(assertive ? 'alert' : 'live');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick makes readers announce a repeat of the same words.
  setTimeout(() => { region.textContent = text; }, 30);
}

/** m:ss (or h:mm:ss) for seconds. */
export function clock(seconds) {
  const total = Math.max(0, Math.round(seconds || 0));
  const hh = Math.floor(total / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function nextId(prefix = 'id') {
  uid += 1;
  return `${prefix}-${uid}`;
}

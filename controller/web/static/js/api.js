// The one HTTP/WebSocket client of the page (the contract: docs/web.md).

import { app, emit } from './state.js';

let csrf = '';
let socket = null;
let retry = 500;
const waiting = new Map(); // request id -> resolve, for WebSocket answers
let lastId = 0;

/** GET /api/session: login state and the CSRF token every POST carries. */
export async function loadSession() {
  const answer = await fetch('/api/session', { credentials: 'same-origin', cache: 'no-store' });
  const body = await answer.json();
  app.session = body.data || {};
  csrf = app.session.csrf || '';
  emit('session');
  return app.session;
}

// Scans and pairing wait on the radio; everything else answers at once.
const SLOW = { scan: 75000, pair: 330000, pulse: 20000, run: 30000 };

/**
 * POST /api/command/<name>: the daemon's answer, {status, data} or {status, error},
 * with the HTTP status as `http` (0 when the server could not be reached).
 */
export async function command(name, payload = {}) {
  let answer;
  try {
    answer = await fetch(`/api/command/${encodeURIComponent(name)}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(SLOW[name] || 15000),
    });
  } catch (err) {
    return { status: 'error', error: String(err && err.message || err), http: 0, offline: true };
  }
  let body;
  try {
    body = await answer.json();
  } catch {
    body = { status: 'error', error: `HTTP ${answer.status}` };
  }
  body.http = answer.status;
  if (answer.status === 401 && app.session) {
    app.session.logged_in = false;
    emit('session');
  }
  return body;
}

export async function login(token) {
  const answer = await fetch('/api/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify({ token }),
    signal: AbortSignal.timeout(15000),
  }).catch((err) => ({ ok: false, status: 0, json: async () => ({ error: String(err) }) }));
  const body = await answer.json().catch(() => ({}));
  if (answer.ok) {
    await loadSession();
    reconnect(); // the socket's rights follow the new cookie
  }
  return { ok: answer.ok, status: answer.status, error: body.error, retryAfter: answer.headers?.get?.('Retry-After') };
}

/**
 * Stop and emergency stop: over the open WebSocket (the shortest path), else POST.
 * Both are allowed without a login.
 */
export function stopCommand(name) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    return new Promise((resolve) => {
      lastId += 1;
      const id = `stop-${lastId}`;
      // No answer in time (a half-dead socket): the same command by POST.
      const timer = setTimeout(() => {
        waiting.delete(id);
        command(name).then(resolve);
      }, 2500);
      waiting.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      socket.send(JSON.stringify({ command: name, id }));
    });
  }
  return command(name);
}

/** Keep a WebSocket open for live state, outputs and events; reconnect with backoff. */
export function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
  socket = new WebSocket(url);
  socket.addEventListener('open', () => {
    retry = 500;
    app.online = true;
    emit('online');
  });
  socket.addEventListener('message', (msg) => {
    let data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      return;
    }
    receive(data);
  });
  socket.addEventListener('close', () => {
    app.online = false;
    emit('online');
    const me = socket;
    setTimeout(() => { if (socket === me) connect(); }, retry);
    retry = Math.min(retry * 2, 5000);
  });
}

function reconnect() {
  if (socket) {
    const old = socket;
    socket = null;
    old.close();
  }
  connect();
}

function receive(message) {
  switch (message.type) {
    case 'state':
      setStatus(message.data);
      break;
    case 'outputs':
      app.outputs = message.data || {};
      emit('outputs');
      break;
    case 'event':
      app.events.unshift({ ...message.data, received: Date.now() });
      app.events.length = Math.min(app.events.length, 50);
      emit('event', message.data);
      break;
    case 'answer': {
      const fn = waiting.get(message.id);
      waiting.delete(message.id);
      if (fn) fn(message);
      break;
    }
    case 'hello':
      if (app.session && app.session.logged_in !== message.logged_in) {
        app.session.logged_in = Boolean(message.logged_in);
        emit('session');
      }
      break;
    default:
      break;
  }
}

/** A new status (from the socket or a status command): remember when, for the cursor. */
export function setStatus(status) {
  app.status = status || null;
  app.statusAt = performance.now();
  emit('state');
}

/** Refresh the status once by command (when the socket is down). */
export async function refreshStatus() {
  const answer = await command('status');
  if (answer.status === 'ok') setStatus(answer.data);
  return answer;
}

// What the page knows, and who wants to hear when it changes.

export const app = {
  session: null, // GET /api/session data
  status: null, // the daemon's status (WebSocket "state")
  statusAt: 0, // performance.now() when status arrived
  outputs: {}, // {device: {channel: 0..1}}
  events: [], // newest first
  online: false,
  programs: new Map(), // id -> program data (cache for plots)
};

const listeners = new Set();

/** Call fn(kind, detail) on every change; returns the function that stops it. */
export function on(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function emit(kind, detail) {
  for (const fn of [...listeners]) {
    try {
      fn(kind, detail);
    } catch (err) {
      console.error(err);
    }
  }
}

/** The running session, or null: the status's `now` (the page's view), else its `session`. */
export function session() {
  const status = app.status;
  if (!status) return null;
  const old = status.session || {};
  if ('now' in status) {
    const now = status.now;
    if (!now) return null;
    return {
      ...old,
      ...now,
      step_count: now.step_total ?? old.step_count,
      step_label: now.label ?? old.step_label,
      remaining: now.time_left ?? old.remaining,
      state: now.state || (now.paused ? 'paused' : old.state),
    };
  }
  return status.session && status.session.state !== 'ended' ? status.session : null;
}

/** The login gate: true when this page may only stop. */
export function locked() {
  return Boolean(app.session && app.session.login_required && !app.session.logged_in);
}

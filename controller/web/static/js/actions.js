// Commands shared by several pages, with what the person hears about them.

import { command, stopCommand } from './api.js';
import { announce } from './dom.js';
import { t } from './i18n.js';

/** Stop or emergency stop from anywhere; announces the outcome. */
export async function stopNow(name) {
  const answer = await stopCommand(name);
  if (answer.status === 'ok') announce(t(name === 'stop' ? 'now.stopping' : 'now.estopped'), true);
  else announce(answer.error || t('error.generic'), true);
  return answer;
}

/** Run a command; on failure say why (and return the answer either way). */
export async function act(name, payload, okText) {
  const answer = await command(name, payload);
  if (answer.status === 'ok') {
    if (okText) announce(okText);
  } else {
    announce(errorText(answer), true);
  }
  return answer;
}

/** The one-line reason of a failed answer, in words a person can act on. */
export function errorText(answer) {
  if (answer.http === 401) return t('error.login');
  if (answer.offline) return t('error.offline');
  return answer.error || t('error.generic');
}

/** The profiles answer as a list, whichever shape it came in. */
export function profilesOf(answer) {
  if (!answer || answer.status !== 'ok') return [];
  const data = answer.data;
  if (Array.isArray(data)) return data;
  return (data && data.profiles) || [];
}

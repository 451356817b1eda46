// The daemon's identifiers in the person's words (from the catalogue, else as they are).

import { has, t } from './i18n.js';

/** A technique's name: rubbing -> "Rubbing". */
export function techniqueName(technique) {
  return has(`technique.${technique}`) ? t(`technique.${technique}`) : technique;
}

/** A channel's name in words: motor3 -> "Motor 3", output_a -> "EMS left". */
export function channelName(channel) {
  const text = String(channel);
  const key = `channel.${text.replace(/\d+$/, '')}`;
  const n = text.match(/\d+$/);
  return has(key) ? `${t(key)}${n ? ` ${n[0]}` : ''}` : text;
}

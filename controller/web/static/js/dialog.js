// One modal dialog (<dialog>: focus stays inside, Esc closes, focus returns after).

import { fill, h } from './dom.js';

const dialog = () => document.getElementById('dialog');
let onClose = null;

/** Show a dialog with a title, body nodes and action buttons; returns its parts. */
export function openDialog(title, body, actions) {
  const box = dialog();
  const returnTo = document.activeElement;
  const bodyBox = h('div', { class: 'body' }, h('h2', { id: 'dialog-title' }, title), body);
  const actionBox = h('div', { class: 'actions' }, actions);
  fill(box, bodyBox, actionBox);
  if (onClose) box.removeEventListener('close', onClose);
  onClose = () => {
    if (returnTo && returnTo.isConnected) returnTo.focus();
  };
  box.addEventListener('close', onClose, { once: true });
  if (!box.open) box.showModal();
  const first = box.querySelector('[autofocus], input, select, textarea, .actions .btn');
  if (first) first.focus();
  return { box, body: bodyBox, actions: actionBox, set: (nodes, buttons) => reset(bodyBox, actionBox, title, nodes, buttons) };
}

function reset(bodyBox, actionBox, title, nodes, buttons) {
  fill(bodyBox, h('h2', { id: 'dialog-title' }, title), nodes);
  fill(actionBox, buttons);
  const first = bodyBox.querySelector('[autofocus], input, select') || actionBox.querySelector('.btn');
  if (first) first.focus();
}

export function closeDialog() {
  const box = dialog();
  if (box.open) box.close();
}

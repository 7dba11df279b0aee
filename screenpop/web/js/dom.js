// Tiny DOM helpers: build elements from data, never from HTML strings (no injection).

import { t } from './i18n.js';

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child, [more])
 * Attributes: `class`, `dataset` (object), `on<event>` (function), booleans (present when
 * true), everything else via setAttribute. Children: strings, nodes, arrays, null/false.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value') el.value = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace all children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

/** A left-to-right island (phone numbers, times) inside right-to-left text. */
export function ltr(text, cls = 'num') {
  return h('bdi', { dir: 'ltr', class: cls }, text);
}

/** A short message in the toast area, read out by screen readers. */
export function toast(message, kind = 'info', ms = 5000) {
  let area = document.getElementById('toasts');
  if (!area) {
    area = h('div', { id: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(area);
  }
  const item = h('div', { class: ['toast', `toast-${kind}`] }, message);
  area.append(item);
  setTimeout(() => item.remove(), ms);
  return item;
}

/** A modal <dialog> (Esc closes it natively; focus stays inside while open). */
export function dialog(title, body, { onclose, id } = {}) {
  const closeBtn = h('button', { type: 'button', class: 'icon close', 'data-close': '' }, '×');
  const dlg = h(
    'dialog',
    { class: 'modal', id, 'aria-labelledby': `${id || 'dlg'}-title` },
    h('header', {}, h('h2', { id: `${id || 'dlg'}-title` }, title), closeBtn),
    body,
  );
  closeBtn.setAttribute('aria-label', t('close'));
  closeBtn.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (onclose) onclose();
  });
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

// Keyboard shortcuts (single keys, ignored while typing) and the help overlay listing them.
// Everything is also reachable with Tab / Enter; shortcuts only save travel.

import { dialog, h } from './dom.js';
import { t } from './i18n.js';

function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  return ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

/** shortcuts: [{key: '/', label: 'shortcut_search', run: () => ...}] (label = string key). */
export function installShortcuts(shortcuts) {
  const all = [
    ...shortcuts,
    { key: '?', label: 'shortcut_help', run: () => showHelp(all) },
    { key: 'Esc', label: 'shortcut_escape', run: null },
  ];
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === 'Escape') {
      // Native dialogs close themselves; a focused field just loses focus.
      if (!document.querySelector('dialog[open]') && typing(e.target)) e.target.blur();
      return;
    }
    if (typing(e.target)) return;
    const hit = all.find((s) => s.key === e.key && s.run);
    if (hit) {
      e.preventDefault();
      hit.run();
    }
  });
  return all;
}

export function showHelp(shortcuts) {
  const existing = document.getElementById('help-dialog');
  if (existing) return existing;
  const rows = shortcuts.map((s) =>
    h('tr', {}, h('th', { scope: 'row' }, h('kbd', {}, s.key)), h('td', {}, t(s.label))),
  );
  return dialog(t('shortcuts'), h('table', { class: 'shortcuts' }, h('tbody', {}, rows)), {
    id: 'help-dialog',
  });
}

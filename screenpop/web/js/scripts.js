// Call scripts on the agent desktop: the campaign's and the lead list's script for the
// customer on screen, filled in by the gateway (GET /api/v1/scripts/render) with the fields
// the agent may see. Built from segments as text nodes (no HTML strings); a field the record
// lacks shows as a highlighted placeholder so the agent asks for it.

import { q } from './api.js';
import { h } from './dom.js';
import { sep, STRINGS, t } from './i18n.js';

Object.assign(STRINGS.fa, {
  call_script: 'متن تماس',
  script_campaign: 'کمپین',
  script_lead_list: 'فهرست سرنخ',
  script_missing: 'در پرونده نیست: {fields}',
});
Object.assign(STRINGS.en, {
  call_script: 'Call script',
  script_campaign: 'Campaign',
  script_lead_list: 'Lead list',
  script_missing: 'Not on the record: {fields}',
});

/** The rendered scripts for a record (null when there are none or on error). */
export async function loadScripts(api, type, id, campaignId) {
  let path = `/api/v1/scripts/render?${q(type)}_id=${q(id)}`;
  if (campaignId) path += `&campaign_id=${q(campaignId)}`;
  try {
    const out = await api.get(path);
    return out.scripts && out.scripts.length ? out : null;
  } catch {
    return null; // a missing script never blocks the record
  }
}

function segmentNode(s) {
  if (!s.field) return s.text;
  if (s.missing) {
    return h('mark', { class: 'missing-field', dataset: { field: s.field }, title: s.field }, s.text);
  }
  return h('span', { class: s.masked ? 'field masked' : 'field', dataset: { field: s.field } }, s.text);
}

/** Cards for the scripts of `result` (from loadScripts), in the script's own direction. */
export function renderScripts(result) {
  if (!result) return null;
  return result.scripts.map((s, i) =>
    h(
      'section',
      {
        class: 'card script',
        'aria-labelledby': `script-title-${i}`,
        dataset: { source: s.source, id: s.id },
      },
      h('h3', { id: `script-title-${i}` }, `${t('call_script')}${sep()}${t(`script_${s.source}`)}: ${s.name || ''}`),
      h(
        'div',
        { class: 'script-text', lang: result.language, dir: result.direction },
        s.segments.map(segmentNode),
      ),
      s.missing.length ? h('p', { class: 'muted script-missing' }, t('script_missing', { fields: s.missing.join('، ') })) : null,
    ),
  );
}

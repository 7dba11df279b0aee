// The knowledge base panel of the agent desktop: search approved articles (Persian and
// English, spelling variants folded by the gateway) and read one, beside the call card, so
// an agent can look an answer up while talking. Non-modal: the call stays usable. It lives
// outside #root, so the desktop's re-renders (language switch, events) keep it open.

import { q } from './api.js';
import { fill, h } from './dom.js';
import { formatDate, language, latinDigits, sep, STRINGS, t } from './i18n.js';

Object.assign(STRINGS.fa, {
  kb: 'دانشنامه',
  kb_title: 'دانشنامه',
  kb_search: 'جست‌وجو در دانشنامه',
  kb_placeholder: 'واژه‌ها یا موضوع',
  kb_all_categories: 'همه دسته‌ها',
  kb_all_languages: 'همه زبان‌ها',
  kb_back: 'بازگشت به نتیجه‌ها',
  kb_version: 'نسخه {n}',
  kb_approved_at: 'تأیید شده در {date}',
  kb_no_results: 'مقاله‌ای پیدا نشد.',
  shortcut_knowledge: 'باز کردن دانشنامه',
});
Object.assign(STRINGS.en, {
  kb: 'Knowledge',
  kb_title: 'Knowledge base',
  kb_search: 'Search the knowledge base',
  kb_placeholder: 'Words or topic',
  kb_all_categories: 'All categories',
  kb_all_languages: 'All languages',
  kb_back: 'Back to results',
  kb_version: 'Version {n}',
  kb_approved_at: 'Approved {date}',
  kb_no_results: 'No article found.',
  shortcut_knowledge: 'Open the knowledge base',
});

const state = {
  api: null,
  panel: null,
  query: '',
  category: '',
  lang: '',
  categories: null,
  results: null,
  article: null,
  error: null,
  body: null, // the part a search or an opened article replaces; the search box stays
};

function catName(c) {
  return c ? (language() === 'fa' ? c.name_fa : c.name_en) : '';
}

/** The top-bar button that opens and closes the panel. */
export function knowledgeButton(getApi) {
  return h(
    'button',
    {
      type: 'button',
      id: 'kb-toggle',
      'aria-controls': 'kb-panel',
      'aria-expanded': state.panel && !state.panel.hidden ? 'true' : 'false',
      onclick: () => toggleKnowledge(getApi()),
    },
    t('kb'),
  );
}

/** The `k` shortcut: open the panel and put the cursor in its search box. */
export function knowledgeShortcut(getApi) {
  return { key: 'k', label: 'shortcut_knowledge', run: () => openKnowledge(getApi()) };
}

export function toggleKnowledge(api) {
  if (state.panel && !state.panel.hidden) closeKnowledge();
  else openKnowledge(api);
}

export async function openKnowledge(api) {
  state.api = api;
  if (!state.panel) {
    state.panel = h('aside', { id: 'kb-panel', class: 'kb-panel', 'aria-labelledby': 'kb-heading' });
    document.body.append(state.panel);
    document.addEventListener('tamas:language', () => {
      if (state.panel && !state.panel.hidden) render();
    });
  }
  state.panel.hidden = false;
  syncButton();
  if (state.categories === null) {
    try {
      state.categories = (await api.get('/api/v1/kb/categories')).items;
    } catch {
      state.categories = [];
    }
  }
  render();
  if (state.results === null) search();
  const input = document.getElementById('kb-q');
  if (input) input.focus();
}

export function closeKnowledge() {
  if (!state.panel) return;
  state.panel.hidden = true;
  syncButton();
  const button = document.getElementById('kb-toggle');
  if (button) button.focus();
}

function syncButton() {
  const button = document.getElementById('kb-toggle');
  if (button) button.setAttribute('aria-expanded', state.panel && !state.panel.hidden ? 'true' : 'false');
}

async function search() {
  const params = [`q=${q(latinDigits(state.query))}`, 'limit=30'];
  if (state.category) params.push(`category_id=${q(state.category)}`);
  if (state.lang) params.push(`language=${q(state.lang)}`);
  try {
    state.results = (await state.api.get(`/api/v1/kb/articles?${params.join('&')}`)).items;
    state.error = null;
  } catch (err) {
    state.results = [];
    state.error = err.detail || err.message;
  }
  state.article = null;
  showBody();
}

async function open(id) {
  try {
    state.article = await state.api.get(`/api/v1/kb/articles/${q(id)}`);
  } catch (err) {
    state.error = err.detail || err.message;
  }
  showBody();
  const title = document.getElementById('kb-article-title');
  if (title) title.focus();
}

/** The whole panel: on opening and when the language changes. A search only replaces the
 * results (showBody), so the search box keeps the agent's cursor and what they type. */
function render() {
  const typing = document.activeElement && document.activeElement.id === 'kb-q';
  const input = h('input', {
    id: 'kb-q',
    type: 'search',
    value: state.query,
    placeholder: t('kb_placeholder'),
    'aria-label': t('kb_search'),
    autocomplete: 'off',
    oninput: (e) => {
      state.query = e.target.value;
    },
  });
  const cats = h(
    'select',
    {
      id: 'kb-category',
      'aria-label': t('kb_all_categories'),
      onchange: (e) => {
        state.category = e.target.value;
        search();
      },
    },
    h('option', { value: '' }, t('kb_all_categories')),
    (state.categories || []).map((c) => h('option', { value: String(c.id) }, catName(c))),
  );
  cats.value = state.category;
  const langs = h(
    'select',
    {
      id: 'kb-language',
      'aria-label': t('kb_all_languages'),
      onchange: (e) => {
        state.lang = e.target.value;
        search();
      },
    },
    h('option', { value: '' }, t('kb_all_languages')),
    h('option', { value: 'fa', lang: 'fa' }, 'فارسی'),
    h('option', { value: 'en', lang: 'en' }, 'English'),
  );
  langs.value = state.lang;
  fill(
    state.panel,
    h(
      'header',
      { class: 'kb-head' },
      h('h2', { id: 'kb-heading' }, t('kb_title')),
      h('button', { type: 'button', class: 'icon close', 'aria-label': t('close'), onclick: closeKnowledge }, '×'),
    ),
    h(
      'form',
      {
        role: 'search',
        class: 'kb-search',
        onsubmit: (e) => {
          e.preventDefault();
          search();
        },
      },
      input,
      h('button', { type: 'submit' }, t('search')),
      h('div', { class: 'kb-filters' }, cats, langs),
    ),
    (state.body = h('div', { class: 'kb-main' })),
  );
  showBody();
  if (typing) input.focus();
}

function showBody() {
  if (!state.body) return;
  fill(
    state.body,
    state.error ? h('p', { class: 'error', role: 'alert' }, state.error) : null,
    state.article ? renderArticle(state.article) : renderResults(state.results || []),
  );
}

function renderResults(items) {
  if (!items.length) return h('p', { class: 'muted', id: 'kb-empty' }, t('kb_no_results'));
  return h(
    'ul',
    { class: 'kb-results', id: 'kb-results' },
    items.map((a) =>
      h(
        'li',
        { lang: a.language, dir: a.language === 'fa' ? 'rtl' : 'ltr' },
        h('button', { type: 'button', class: 'link kb-open', dataset: { id: a.id }, onclick: () => open(a.id) }, a.title),
        a.category ? h('span', { class: 'badge' }, catName(a.category)) : null,
        a.snippet ? h('p', { class: 'muted kb-snippet' }, a.snippet) : null,
      ),
    ),
  );
}

function renderArticle(a) {
  return h(
    'article',
    { class: 'kb-article', dataset: { id: a.id } },
    h('button', { type: 'button', class: 'link kb-back', onclick: () => { state.article = null; showBody(); } }, t('kb_back')),
    h(
      'div',
      { lang: a.language, dir: a.language === 'fa' ? 'rtl' : 'ltr' },
      h('h3', { id: 'kb-article-title', tabindex: '-1' }, a.title),
      h(
        'p',
        { class: 'muted' },
        a.category ? [catName(a.category), sep()] : null,
        t('kb_version', { n: a.version }),
        a.updated_at ? [sep(), t('kb_approved_at', { date: formatDate(a.updated_at, 'date') })] : null,
      ),
      h('div', { class: 'kb-body' }, a.body),
    ),
  );
}

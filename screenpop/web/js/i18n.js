// Language, direction, strings and every number, date and phone number the UI shows.
// Persian (default): right to left, Persian digits, Jalali calendar (Intl's persian
// calendar); English: left to right, Latin digits, Gregorian calendar.

export const LANGUAGES = {
  fa: { dir: 'rtl', numbers: 'fa-IR', dates: 'fa-IR-u-ca-persian-nu-arabext', name: 'فارسی' },
  en: { dir: 'ltr', numbers: 'en-US', dates: 'en-GB-u-ca-gregory-nu-latn', name: 'English' },
};

export const STRINGS = {
  fa: {
    app_title: 'تماس · میز کار',
    wallboard_title: 'تماس · تابلوی سرپرست',
    login_title: 'ورود',
    username: 'نام کاربری',
    password: 'گذرواژه',
    login: 'ورود',
    logout: 'خروج',
    login_failed: 'ورود ناموفق بود: {reason}',
    session_expired: 'نشست شما به پایان رسید؛ دوباره وارد شوید.',
    deactivated: 'حساب کاربری شما غیرفعال شده است.',
    language: 'زبان',
    switch_language: 'English',
    help: 'راهنما',
    shortcuts: 'میان‌برهای صفحه‌کلید',
    close: 'بستن',
    cancel: 'انصراف',
    save: 'ذخیره',
    saved: 'ذخیره شد',
    loading: 'در حال بارگذاری…',
    error: 'خطا: {message}',
    none: '—',
    conn_open: 'متصل',
    conn_connecting: 'در حال اتصال…',
    conn_reconnecting: 'قطع شد؛ اتصال دوباره تا {seconds} ثانیه',
    conn_fatal: 'اتصال برقرار نشد',
    pbx_down: 'ارتباط با مرکز تلفن {pbx} قطع است',
    my_state: 'وضعیت من',
    state_available: 'آماده',
    state_paused: 'مکث',
    state_paused_reason: 'مکث: {reason}',
    state_logged_out: 'خارج از صف',
    state_ringing: 'در حال زنگ',
    state_on_call: 'در تماس',
    state_wrap_up: 'جمع‌بندی',
    state_unknown: 'نامشخص',
    state_change_failed: 'تغییر وضعیت انجام نشد: {message}',
    search: 'جست‌وجو',
    search_placeholder: 'نام، شماره تلفن یا ایمیل',
    search_results: 'نتیجه‌های «{q}»',
    no_results: 'چیزی پیدا نشد.',
    calls: 'تماس‌ها',
    no_calls: 'تماسی در جریان نیست.',
    incoming_call: 'تماس ورودی',
    outgoing_call: 'تماس خروجی',
    call_state_ringing: 'در حال زنگ',
    call_state_answered: 'در حال مکالمه',
    call_state_held: 'در انتظار',
    call_state_ended: 'پایان یافته',
    queue: 'صف',
    waited: 'انتظار',
    talk_time: 'مدت مکالمه',
    recording: 'ضبط مکالمه',
    recording_pending: 'ضبط مکالمه در حال آماده شدن است',
    recording_ingesting: 'ضبط مکالمه در حال آماده شدن است',
    recording_missing: 'فایل ضبط مکالمه پیدا نشد',
    recording_failed: 'ضبط مکالمه قابل پخش نیست',
    recording_corrupt: 'فایل ضبط مکالمه خراب است',
    unknown_caller: 'تماس‌گیرنده ناشناس',
    create_lead: 'ساخت سرنخ',
    link_to_record: 'پیوند به پرونده',
    open_record: 'باز کردن پرونده',
    more_matches: 'و {n} پروندهٔ دیگر با همین شماره',
    transferred_from: 'انتقال از {name}',
    vip: 'ویژه',
    do_not_call: 'تماس نگیرید',
    open_deals: 'معامله‌های باز',
    open_cases: 'درخواست‌های باز',
    recent_activity: 'فعالیت‌های اخیر',
    hangup: 'قطع تماس',
    hold: 'نگه‌داشتن',
    unhold: 'ادامهٔ مکالمه',
    answer_on_phone: 'تماس را با تلفن خود پاسخ دهید',
    answered_by: 'پاسخ داده شد توسط {name}',
    wrapup: 'جمع‌بندی تماس',
    note: 'یادداشت',
    disposition: 'نتیجهٔ تماس',
    choose: 'انتخاب کنید…',
    schedule_callback: 'زمان‌بندی تماس برگشتی',
    callback_at: 'زمان تماس برگشتی',
    callback_subject: 'تماس برگشتی با {name}',
    save_wrapup: 'ثبت جمع‌بندی',
    dismiss: 'کنار گذاشتن',
    wrapup_saved: 'جمع‌بندی تماس ثبت شد',
    call_script: 'متن مکالمه',
    welcome: 'خوش آمدید، {name}',
    welcome_hint: 'با آمدن تماس، پرونده مشتری اینجا باز می‌شود. برای جست‌وجو «/» را بزنید.',
    contact: 'مخاطب',
    lead: 'سرنخ',
    account: 'شرکت',
    details: 'مشخصات',
    phones: 'تلفن‌ها',
    email: 'ایمیل',
    company: 'شرکت',
    owner: 'مسئول',
    tags: 'برچسب‌ها',
    lifecycle_stage: 'مرحله',
    preferred_channel: 'راه ارتباطی ترجیحی',
    best_time_to_call: 'بهترین زمان تماس',
    status: 'وضعیت',
    call: 'تماس',
    call_number: 'تماس با {number}',
    calling: 'تلفن شما زنگ می‌زند؛ سپس شماره گرفته می‌شود.',
    call_failed: 'تماس برقرار نشد: {message}',
    timeline: 'سابقه',
    deals: 'معامله‌ها',
    cases: 'درخواست‌ها',
    add_note: 'افزودن یادداشت',
    note_added: 'یادداشت افزوده شد',
    empty: 'موردی نیست.',
    first_name: 'نام',
    last_name: 'نام خانوادگی',
    number: 'شماره',
    lead_created: 'سرنخ ساخته شد',
    duplicate: 'این مشتری احتمالاً قبلاً ثبت شده است.',
    number_linked: 'شماره به پرونده پیوست شد',
    link_hint: 'پرونده را جست‌وجو کنید و انتخاب کنید.',
    choose_record: 'انتخاب',
    kind_call: 'تماس',
    kind_note: 'یادداشت',
    kind_task: 'کار',
    kind_meeting: 'جلسه',
    dir_inbound: 'ورودی',
    dir_outbound: 'خروجی',
    dir_internal: 'داخلی',
    phone_mobile: 'همراه',
    phone_office: 'محل کار',
    phone_home: 'منزل',
    phone_fax: 'نمابر',
    phone_other: 'دیگر',
    outcome_answered: 'پاسخ داده شد',
    outcome_missed: 'بی‌پاسخ',
    outcome_abandoned: 'رهاشده',
    due: 'موعد',
    notify_title: 'تماس ورودی',
    notify_unknown: 'شماره ناشناس {number}',
    title_ringing: '☎ {name}',
    shortcut_search: 'رفتن به جست‌وجو',
    shortcut_call: 'رفتن به تماس جاری',
    shortcut_note: 'رفتن به یادداشت تماس',
    shortcut_state: 'رفتن به وضعیت من',
    shortcut_help: 'نمایش این راهنما',
    shortcut_escape: 'بستن پنجره‌ها',
    shortcut_language: 'تغییر زبان',
    shortcut_queues: 'رفتن به صف‌ها',
    shortcut_agents: 'رفتن به کارشناسان',
    // wallboard
    queues: 'صف‌ها',
    waiting: 'در انتظار',
    longest_wait: 'بیشترین انتظار',
    answered: 'پاسخ‌داده',
    abandoned: 'رهاشده',
    offered: 'ورودی',
    avg_wait: 'میانگین انتظار',
    avg_talk: 'میانگین مکالمه',
    service_level: 'سطح خدمت',
    agents_line: '{available} آماده، {busy} مشغول، {paused} در مکث',
    agents: 'کارشناسان',
    agent: 'کارشناس',
    state: 'وضعیت',
    time_in_state: 'مدت در وضعیت',
    actions: 'اقدام‌ها',
    pause: 'مکث',
    unpause: 'پایان مکث',
    log_out_agent: 'خروج از صف',
    pause_agent: 'مکث {name}',
    reason: 'دلیل',
    live_calls: 'تماس‌های جاری',
    started: 'شروع',
    duration: 'مدت',
    listen: 'شنود',
    whisper: 'نجوا',
    barge: 'ورود به مکالمه',
    spy_started: 'تلفن شما زنگ می‌زند ({mode})',
    callbacks: 'تماس‌های برگشتی در انتظار',
    assignee: 'مسئول',
    reassign: 'واگذاری',
    reassigned: 'به {name} واگذار شد',
    unassigned: 'بدون مسئول',
    no_queues: 'صفی برای نمایش نیست.',
    no_agents: 'کارشناسی برای نمایش نیست.',
    done: 'انجام شد',
    not_supervisor: 'این صفحه برای سرپرستان است.',
  },
  en: {
    app_title: 'Tamas · Agent desktop',
    wallboard_title: 'Tamas · Wallboard',
    login_title: 'Sign in',
    username: 'Username',
    password: 'Password',
    login: 'Sign in',
    logout: 'Sign out',
    login_failed: 'Sign-in failed: {reason}',
    session_expired: 'Your session ended; please sign in again.',
    deactivated: 'Your account has been deactivated.',
    language: 'Language',
    switch_language: 'فارسی',
    help: 'Help',
    shortcuts: 'Keyboard shortcuts',
    close: 'Close',
    cancel: 'Cancel',
    save: 'Save',
    saved: 'Saved',
    loading: 'Loading…',
    error: 'Error: {message}',
    none: '—',
    conn_open: 'Connected',
    conn_connecting: 'Connecting…',
    conn_reconnecting: 'Disconnected; reconnecting in {seconds} s',
    conn_fatal: 'Cannot connect',
    pbx_down: 'The link to PBX {pbx} is down',
    my_state: 'My state',
    state_available: 'Available',
    state_paused: 'Paused',
    state_paused_reason: 'Paused: {reason}',
    state_logged_out: 'Logged out of queues',
    state_ringing: 'Ringing',
    state_on_call: 'On a call',
    state_wrap_up: 'Wrap-up',
    state_unknown: 'Unknown',
    state_change_failed: 'Could not change state: {message}',
    search: 'Search',
    search_placeholder: 'Name, phone number or e-mail',
    search_results: 'Results for “{q}”',
    no_results: 'Nothing found.',
    calls: 'Calls',
    no_calls: 'No call in progress.',
    incoming_call: 'Incoming call',
    outgoing_call: 'Outgoing call',
    call_state_ringing: 'Ringing',
    call_state_answered: 'Talking',
    call_state_held: 'On hold',
    call_state_ended: 'Ended',
    queue: 'Queue',
    waited: 'Waited',
    talk_time: 'Talk time',
    recording: 'Recording',
    recording_pending: 'Recording being prepared',
    recording_ingesting: 'Recording being prepared',
    recording_missing: 'Recording file missing',
    recording_failed: 'Recording cannot be played',
    recording_corrupt: 'Recording file is damaged',
    unknown_caller: 'Unknown caller',
    create_lead: 'Create lead',
    link_to_record: 'Link to record',
    open_record: 'Open record',
    more_matches: 'and {n} more records with this number',
    transferred_from: 'Transferred by {name}',
    vip: 'VIP',
    do_not_call: 'Do not call',
    open_deals: 'Open deals',
    open_cases: 'Open cases',
    recent_activity: 'Recent activity',
    hangup: 'Hang up',
    hold: 'Hold',
    unhold: 'Resume',
    answer_on_phone: 'Answer on your phone',
    answered_by: 'Answered by {name}',
    wrapup: 'Call wrap-up',
    note: 'Note',
    disposition: 'Disposition',
    choose: 'Choose…',
    schedule_callback: 'Schedule a callback',
    callback_at: 'Call back at',
    callback_subject: 'Call back {name}',
    save_wrapup: 'Save wrap-up',
    dismiss: 'Dismiss',
    wrapup_saved: 'Wrap-up saved',
    call_script: 'Call script',
    welcome: 'Welcome, {name}',
    welcome_hint: 'When a call comes in, the customer opens here. Press “/” to search.',
    contact: 'Contact',
    lead: 'Lead',
    account: 'Account',
    details: 'Details',
    phones: 'Phones',
    email: 'E-mail',
    company: 'Company',
    owner: 'Owner',
    tags: 'Tags',
    lifecycle_stage: 'Stage',
    preferred_channel: 'Preferred channel',
    best_time_to_call: 'Best time to call',
    status: 'Status',
    call: 'Call',
    call_number: 'Call {number}',
    calling: 'Your phone rings first, then the number is dialled.',
    call_failed: 'Could not call: {message}',
    timeline: 'Timeline',
    deals: 'Deals',
    cases: 'Cases',
    add_note: 'Add note',
    note_added: 'Note added',
    empty: 'Nothing yet.',
    first_name: 'First name',
    last_name: 'Last name',
    number: 'Number',
    lead_created: 'Lead created',
    duplicate: 'This customer probably exists already.',
    number_linked: 'Number linked to the record',
    link_hint: 'Search for the record and choose it.',
    choose_record: 'Choose',
    kind_call: 'Call',
    kind_note: 'Note',
    kind_task: 'Task',
    kind_meeting: 'Meeting',
    dir_inbound: 'inbound',
    dir_outbound: 'outbound',
    dir_internal: 'internal',
    phone_mobile: 'mobile',
    phone_office: 'office',
    phone_home: 'home',
    phone_fax: 'fax',
    phone_other: 'other',
    outcome_answered: 'Answered',
    outcome_missed: 'Missed',
    outcome_abandoned: 'Abandoned',
    due: 'Due',
    notify_title: 'Incoming call',
    notify_unknown: 'Unknown number {number}',
    title_ringing: '☎ {name}',
    shortcut_search: 'Go to search',
    shortcut_call: 'Go to the current call',
    shortcut_note: 'Go to the call note',
    shortcut_state: 'Go to my state',
    shortcut_help: 'Show this help',
    shortcut_escape: 'Close dialogs',
    shortcut_language: 'Switch language',
    shortcut_queues: 'Go to queues',
    shortcut_agents: 'Go to agents',
    queues: 'Queues',
    waiting: 'Waiting',
    longest_wait: 'Longest wait',
    answered: 'Answered',
    abandoned: 'Abandoned',
    offered: 'Offered',
    avg_wait: 'Avg wait',
    avg_talk: 'Avg talk',
    service_level: 'Service level',
    agents_line: '{available} available · {busy} busy · {paused} paused',
    agents: 'Agents',
    agent: 'Agent',
    state: 'State',
    time_in_state: 'Time in state',
    actions: 'Actions',
    pause: 'Pause',
    unpause: 'Unpause',
    log_out_agent: 'Log out',
    pause_agent: 'Pause {name}',
    reason: 'Reason',
    live_calls: 'Calls in progress',
    started: 'Started',
    duration: 'Duration',
    listen: 'Listen',
    whisper: 'Whisper',
    barge: 'Barge',
    spy_started: 'Your phone is ringing ({mode})',
    callbacks: 'Waiting callbacks',
    assignee: 'Assignee',
    reassign: 'Reassign',
    reassigned: 'Reassigned to {name}',
    unassigned: 'Unassigned',
    no_queues: 'No queue to show.',
    no_agents: 'No agent to show.',
    done: 'Done',
    not_supervisor: 'This page is for supervisors.',
  },
};

let current = 'fa';
let timeZone;

/** Switch the UI language: strings, <html lang/dir>, and a `languagechange` event. */
export function setLanguage(lang) {
  current = LANGUAGES[lang] ? lang : 'fa';
  const root = document.documentElement;
  root.lang = current;
  root.dir = LANGUAGES[current].dir;
  document.dispatchEvent(new CustomEvent('tamas:language', { detail: current }));
  return current;
}

export function language() {
  return current;
}

/** Dates are shown in the call centre's time zone (the gateway's setting), not the PC's. */
export function setTimeZone(tz) {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    timeZone = tz;
  } catch {
    timeZone = undefined;
  }
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => {
    const v = vars[name];
    if (typeof v === 'number') return formatNumber(v);
    return v === undefined || v === null ? '' : String(v);
  });
}

/** The separator between the parts of a line. Not a middle dot in Persian: it looks
 * like the Persian zero (۰) next to numbers. */
export function sep() {
  return current === 'fa' ? ' | ' : ' · ';
}

export function phoneKind(kind) {
  return STRINGS[current][`phone_${kind}`] || kind;
}

/** A label from a configured list ({code, en, fa}), falling back to the code itself. */
export function labelOf(list, code) {
  const item = (list || []).find((x) => x.code === code);
  if (item) return item[current] || item.en;
  // What the call log writes before the agent chooses (answered, missed, abandoned).
  const outcome = STRINGS[current][`outcome_${code}`];
  return outcome || code;
}

const numberFormats = new Map();
export function formatNumber(n, options = {}) {
  if (n === null || n === undefined || Number.isNaN(n)) return t('none');
  const key = current + JSON.stringify(options);
  let fmt = numberFormats.get(key);
  if (!fmt) {
    fmt = new Intl.NumberFormat(LANGUAGES[current].numbers, options);
    numberFormats.set(key, fmt);
  }
  return fmt.format(n);
}

export function formatPercent(pct) {
  if (pct === null || pct === undefined) return t('none');
  return formatNumber(pct / 100, { style: 'percent', maximumFractionDigits: 0 });
}

const PERSIAN_DIGITS = '۰۱۲۳۴۵۶۷۸۹';
const ARABIC_DIGITS = '٠١٢٣٤٥٦٧٨٩';

/** ASCII digits of any Persian or Arabic-Indic digits (for what users type). */
export function latinDigits(text) {
  return String(text).replace(/[۰-۹٠-٩]/g, (d) => {
    const i = PERSIAN_DIGITS.indexOf(d);
    return String(i >= 0 ? i : ARABIC_DIGITS.indexOf(d));
  });
}

/** The text with its digits in the user's digits (Persian in fa, Latin in en). */
export function localDigits(text) {
  const s = latinDigits(text ?? '');
  if (current !== 'fa') return s;
  return s.replace(/[0-9]/g, (d) => PERSIAN_DIGITS[Number(d)]);
}

function toDate(value) {
  if (value instanceof Date) return value;
  if (typeof value === 'number') return new Date(value * 1000); // epoch seconds
  if (typeof value === 'string') {
    // The API writes UTC times; a bare ISO time without offset is UTC too.
    const iso = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
    return new Date(iso);
  }
  return null;
}

const dateFormats = new Map();
function dateFormat(kind) {
  const key = `${current}|${kind}|${timeZone}`;
  let fmt = dateFormats.get(key);
  if (!fmt) {
    const styles = {
      datetime: { dateStyle: 'medium', timeStyle: 'short' },
      date: { dateStyle: 'medium' },
      full: { dateStyle: 'full' },
      time: { timeStyle: 'short' },
    }[kind];
    fmt = new Intl.DateTimeFormat(LANGUAGES[current].dates, { ...styles, timeZone });
    dateFormats.set(key, fmt);
  }
  return fmt;
}

/** A date (Date, ISO string or epoch seconds): Jalali in fa, Gregorian in en. */
export function formatDate(value, kind = 'datetime') {
  const d = toDate(value);
  if (!d || Number.isNaN(d.getTime())) return t('none');
  return dateFormat(kind).format(d);
}

/** Seconds as m:ss or h:mm:ss in the user's digits. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return t('none');
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  const text = h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  return localDigits(text);
}

/** An E.164 number (or a masked one) the way people here write it: +98912... -> 0912 123 4567. */
export function formatPhone(number) {
  if (!number) return t('none');
  let s = latinDigits(String(number)).trim();
  if (s.startsWith('+98')) {
    const national = `0${s.slice(3)}`;
    if (/^09\d{9}$/.test(national)) {
      s = `${national.slice(0, 4)} ${national.slice(4, 7)} ${national.slice(7)}`;
    } else if (/^0\d{10}$/.test(national)) {
      s = `${national.slice(0, 3)} ${national.slice(3, 7)} ${national.slice(7)}`;
    } else {
      s = national;
    }
  }
  return localDigits(s);
}

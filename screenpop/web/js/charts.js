// Charts drawn as inline SVG by hand: no library, no CDN, nothing to download at runtime.
//
// columnChart draws grouped or stacked columns per category, with an optional line on a
// second (percent) axis. Right to left (Persian) mirrors the category axis: the first
// category is on the right and the value axis on the right side, as a Persian reader
// scans. Colours come from CSS classes (series-0..5), so the page's stylesheet owns them and
// no inline style is needed (the pages' CSP forbids inline styles).

// The SVG namespace, as the HTML parser assigns it (the pages' files name no URL at all).
const NS = (() => {
  const tpl = document.createElement('template');
  tpl.innerHTML = '<svg></svg>';
  return tpl.content.firstChild.namespaceURI;
})();

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A "nice" upper bound and tick step for values up to `max` (1, 2, 2.5, 5 x 10^k). */
export function niceScale(max, ticks = 5) {
  if (!(max > 0)) return { max: 1, step: 1 / ticks };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw);
  return { max: step * Math.ceil(max / step), step };
}

function shorten(text, n) {
  const str = String(text);
  return str.length > n ? `${str.slice(0, n - 1)}…` : str;
}

/**
 * columnChart({ title, categories, series: [{ name, values }], stacked, line: { name,
 * values, max }, format, lineFormat, labelFormat, rtl, width, height }) -> <figure>
 * (`format` writes values, `tickFormat` the value axis (compact), `labelFormat` category
 * names: all in the user's digits.)
 */
export function columnChart(opts) {
  const {
    title,
    categories,
    series,
    stacked = false,
    line = null,
    format = String,
    lineFormat = format,
    labelFormat = String,
    tickFormat = format,
    rtl = false,
    width = 760,
    height = 300,
    id,
  } = opts;
  const n = categories.length;
  const many = n > 12;
  const m = { top: 16, bottom: many ? 78 : 46, axis: 72, other: line ? 52 : 16 };
  const plotW = width - m.axis - m.other;
  const plotH = height - m.top - m.bottom;
  const left = rtl ? m.other : m.axis; // x of the plot's left edge
  const totals = categories.map((_, i) =>
    stacked
      ? series.reduce((acc, sr) => acc + (Number(sr.values[i]) || 0), 0)
      : Math.max(0, ...series.map((sr) => Number(sr.values[i]) || 0)),
  );
  const scale = niceScale(Math.max(0, ...totals));
  const y = (v) => m.top + plotH - (plotH * v) / scale.max;
  const slot = n ? plotW / n : plotW;
  // Category i's slot starts here: from the left in LTR, from the right in RTL.
  const slotX = (i) => (rtl ? left + plotW - (i + 1) * slot : left + i * slot);

  const svg = s('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': title,
    preserveAspectRatio: 'xMidYMid meet',
    id,
    'data-rtl': rtl ? '1' : '0',
  });
  const grid = s('g', { class: 'grid' });
  const axisX = rtl ? left + plotW + 6 : left - 6;
  for (let v = 0; v <= scale.max + scale.step / 2; v += scale.step) {
    const yy = y(v);
    grid.append(
      s('line', { x1: left, x2: left + plotW, y1: yy, y2: yy }),
      s('text', { x: axisX, y: yy + 4, class: 'tick', 'text-anchor': rtl ? 'start' : 'end' }, tickFormat(v)),
    );
  }
  svg.append(grid);

  const bars = s('g', { class: 'bars' });
  const inner = slot * 0.78;
  const barW = stacked ? inner : inner / Math.max(1, series.length);
  categories.forEach((cat, i) => {
    let base = 0;
    series.forEach((sr, k) => {
      const value = Number(sr.values[i]) || 0;
      const order = rtl ? series.length - 1 - k : k; // series order reads the same way too
      const x = slotX(i) + (slot - inner) / 2 + (stacked ? 0 : order * barW);
      const top = y(base + value);
      const h = y(base) - top;
      const rect = s(
        'rect',
        {
          class: `bar series-${k % 6}`,
          x: x.toFixed(2),
          y: top.toFixed(2),
          width: Math.max(1, barW - 1).toFixed(2),
          height: Math.max(0, h).toFixed(2),
          'data-category': cat,
          'data-series': sr.name,
          'data-value': value,
        },
        s('title', {}, `${labelFormat(cat)} | ${sr.name}: ${format(value)}`),
      );
      bars.append(rect);
      if (stacked) base += value;
    });
  });
  svg.append(bars);

  if (line) {
    const lmax = line.max || 100;
    const ly = (v) => m.top + plotH - (plotH * v) / lmax;
    const pts = [];
    const dots = s('g', { class: 'dots' });
    categories.forEach((cat, i) => {
      const v = line.values[i];
      if (v === null || v === undefined) return;
      const cx = slotX(i) + slot / 2;
      pts.push(`${cx.toFixed(2)},${ly(v).toFixed(2)}`);
      dots.append(
        s(
          'circle',
          { cx: cx.toFixed(2), cy: ly(v).toFixed(2), r: 3.5, class: 'dot', 'data-category': cat, 'data-value': v },
          s('title', {}, `${labelFormat(cat)} | ${line.name}: ${lineFormat(v)}`),
        ),
      );
    });
    const otherX = rtl ? left - 6 : left + plotW + 6;
    const laxis = s('g', { class: 'line-axis' });
    for (let v = 0; v <= lmax; v += lmax / 4) {
      laxis.append(s('text', { x: otherX, y: ly(v) + 4, class: 'tick', 'text-anchor': rtl ? 'end' : 'start' }, lineFormat(v)));
    }
    svg.append(laxis, s('polyline', { class: 'line', points: pts.join(' '), fill: 'none' }), dots);
  }

  const labels = s('g', { class: 'labels' });
  const every = many ? Math.ceil(n / 16) : 1;
  categories.forEach((cat, i) => {
    if (i % every) return;
    const cx = slotX(i) + slot / 2;
    const ty = m.top + plotH + 16;
    const attrs = { x: cx.toFixed(2), y: ty, class: 'cat', 'text-anchor': many ? (rtl ? 'start' : 'end') : 'middle' };
    if (many) attrs.transform = `rotate(${rtl ? 40 : -40} ${cx.toFixed(2)} ${ty})`;
    const text = labelFormat(cat);
    labels.append(s('text', attrs, s('title', {}, text), shorten(text, many ? 16 : Math.max(6, Math.floor(slot / 7)))));
  });
  svg.append(labels, s('line', { class: 'axis', x1: left, x2: left + plotW, y1: y(0), y2: y(0) }));

  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const [k, sr] of series.entries()) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = `swatch series-${k % 6}`;
    li.append(sw, document.createTextNode(sr.name));
    legend.append(li);
  }
  if (line) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch line-swatch';
    li.append(sw, document.createTextNode(line.name));
    legend.append(li);
  }
  const figure = document.createElement('figure');
  figure.className = 'chart-figure';
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  figure.append(caption, svg, legend);
  return figure;
}

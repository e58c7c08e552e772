// The report page's CSS and script. The script draws the heatmap on a <canvas> from the packed
// matrices in #cka-data (see encode.ts) and gives it tooltips, keyboard moves and a measure selector.

export const STYLE = `
:root { color-scheme: light; --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { font-size: 1.6rem; margin: 0 0 4px; line-height: 1.25; overflow-wrap: anywhere; }
header p { margin: 0; color: var(--muted); font-size: 0.9rem; }
h2 { font-size: 1.15rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.figure { margin: 20px 0 0; text-align: center; }
.figure canvas { display: block; margin: 0 auto; max-width: 100%; }
.figure canvas:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.figure figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 6px; }
.measures { display: flex; flex-wrap: wrap; justify-content: center; gap: 6px; margin: 0 0 10px; }
.measures button { font: inherit; font-size: 0.9rem; padding: 4px 14px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--soft); color: var(--ink); cursor: pointer; }
.measures button[aria-selected="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
.measures button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 0; padding: 0; list-style: none; }
.stats li { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.stats .label { display: block; color: var(--muted); font-size: 0.8rem; }
.stats .value { font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
thead th { background: var(--soft); font-weight: 600; }
tbody tr:hover { background: #f3f6fa; }
th[scope="row"] { font-weight: 600; white-space: nowrap; width: 1%; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.86em; }
td code { background: var(--soft); padding: 1px 4px; border-radius: 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.none, .muted { color: var(--muted); }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; margin-right: 6px; vertical-align: -0.1em; border: 1px solid rgba(0,0,0,0.15); }
#tooltip { position: fixed; z-index: 10; pointer-events: none; max-width: min(420px, 90vw); padding: 6px 10px; text-align: left;
  background: rgba(31, 35, 40, 0.94); color: #fff; border-radius: 6px; font-size: 0.85rem; line-height: 1.4;
  box-shadow: 0 4px 14px rgba(0,0,0,0.25); overflow-wrap: anywhere; }
#tooltip[hidden] { display: none; }
#tooltip .k { color: #9fb3c8; margin-right: 6px; }
#tooltip .v { font-weight: 600; font-variant-numeric: tabular-nums; }
footer { color: var(--muted); font-size: 0.8rem; margin-top: 40px; }
`;

// Runs in the page. Plain ES2017, no dependencies; text goes in through textContent only.
export const SCRIPT = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('cka-data').textContent);
  var canvas = document.getElementById('heatmap-canvas');
  var figure = document.getElementById('heatmap');
  var tip = document.getElementById('tooltip');
  var live = document.getElementById('heatmap-live');
  if (!canvas || !tip || !canvas.getContext) return;
  var ctx = canvas.getContext('2d');
  var rows = data.model1Layers.length, cols = data.model2Layers.length;
  var measures = data.measures, current = data.initial;
  var FS = data.fontSize, FONT = data.fontFamily, AXIS_FS = Math.round(FS * 12) / 10;
  var PAD = 12, TICK = 4, GAP = 3, CB_GAP = 18, CB_W = 16, INK = '#262626';
  var colors = data.colormap.map(function (hex) {
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
  });

  // The matrices, decoded when first shown: Float64Array, row-major, NaN for null.
  function values(m) {
    if (m.values) return m.values;
    var bin = atob(m.data), n = rows * cols, out = new Float64Array(n), p;
    if (m.encoding === 'i16') {
      for (p = 0; p < n; p++) {
        var k = ((bin.charCodeAt(2 * p) | (bin.charCodeAt(2 * p + 1) << 8)) << 16) >> 16;
        out[p] = k === -32768 ? NaN : k / 1000;
      }
    } else {
      var bytes = new Uint8Array(n * 8);
      for (p = 0; p < n * 8; p++) bytes[p] = bin.charCodeAt(p);
      var view = new DataView(bytes.buffer);
      for (p = 0; p < n; p++) out[p] = view.getFloat64(8 * p, true);
    }
    m.values = out;
    m.data = null;
    return out;
  }
  function colorIndex(v) {
    var c = Math.min(1, Math.max(0, v));
    return Math.min(colors.length - 1, Math.floor(c * colors.length));
  }
  function format(v) {
    var text = v.toFixed(3);
    return /^-0\\.?0*$/.test(text) ? text.slice(1) : text;
  }
  function sigmaText(s) {
    return s === null || s === undefined ? '\\u2014' : String(Number(s.toPrecision(4)));
  }

  // Layout in CSS px, recomputed when the page width changes.
  var L = null;
  function textW(text, size) {
    ctx.font = size + 'px ' + FONT;
    return ctx.measureText(text).width;
  }
  function maxW(labels) {
    var w = 0;
    ctx.font = FS + 'px ' + FONT;
    for (var k = 0; k < labels.length; k++) w = Math.max(w, ctx.measureText(labels[k]).width);
    return w;
  }
  var rowLabelW = -1, colLabelW = -1;
  function layout() {
    if (rowLabelW < 0) { rowLabelW = maxW(data.rowLabels); colLabelW = maxW(data.colLabels); }
    var avail = Math.max(120, (figure.clientWidth || 600));
    var cbLabelW = textW('0.0', FS);
    var left = PAD + AXIS_FS * 1.2 + 8 + rowLabelW + TICK + GAP;
    var right = CB_GAP + CB_W + TICK + GAP + cbLabelW + 8 + AXIS_FS * 1.2 + PAD;
    var top = PAD + FS * 0.7;
    var swatch = Math.max(14, Math.round(FS * 1.2));
    function bottomFor(cell) {
      var step = Math.max(1, Math.ceil((FS * 1.25) / cell));
      var rotated = colLabelW + 4 > step * cell;
      return { rotated: rotated, size: TICK + GAP + (rotated ? colLabelW : FS * 1.2) + 10 + AXIS_FS * 1.3 +
        (data.hasNull ? 10 + swatch : 0) + PAD };
    }
    // Cells fill the width; at least 2 px, and a matrix at least ~160 px on its long side (on a narrow
    // screen the whole picture is then scaled down to the width rather than losing its cells).
    var cell = Math.min(data.maxCell, Math.max((avail - left - right) / cols, 2, 160 / Math.max(rows, cols)));
    var bottom = bottomFor(cell);
    var fitH = (Math.max(480, window.innerHeight - 40) - top - bottom.size) / rows;
    cell = Math.min(cell, Math.max(2, fitH));
    bottom = bottomFor(cell);
    var W = cols * cell, H = rows * cell;
    var cssW = Math.ceil(left + W + right), cssH = Math.ceil(top + Math.max(H, 100) + bottom.size);
    L = { x0: left, y0: top, cell: cell, W: W, H: H, cssW: cssW, cssH: cssH, rotated: bottom.rotated,
      rowStep: Math.max(1, Math.ceil((FS * 1.25) / cell)), colStep: Math.max(1, Math.ceil((FS * 1.25) / cell)),
      swatch: swatch, cbLabelW: cbLabelW, labels: [] };
    var dpr = window.devicePixelRatio || 1, k = Math.min(1, avail / cssW);
    canvas.style.width = cssW * k + 'px';
    canvas.style.height = cssH * k + 'px';
    canvas.width = Math.round(cssW * k * dpr);
    canvas.height = Math.round(cssH * k * dpr);
    L.dpr = dpr;
    L.scale = dpr * k;
    // Where the cells are, in CSS px of the page (for tests and tools).
    canvas.setAttribute('data-x0', String(L.x0 * k));
    canvas.setAttribute('data-y0', String(L.y0 * k));
    canvas.setAttribute('data-cell', String(L.cell * k));
  }

  // One pixel per cell, drawn once per measure, then scaled up without smoothing.
  function cellImage(m) {
    if (m.image) return m.image;
    var v = values(m), img = document.createElement('canvas');
    img.width = cols;
    img.height = rows;
    var c = img.getContext('2d'), pix = c.createImageData(cols, rows), d = pix.data;
    for (var i = 0; i < rows; i++) {
      for (var j = 0; j < cols; j++) {
        var x = v[i * cols + j], q = 4 * ((rows - 1 - i) * cols + j);
        var rgb = x !== x ? [230, 230, 230] : colors[colorIndex(x)];
        d[q] = rgb[0]; d[q + 1] = rgb[1]; d[q + 2] = rgb[2]; d[q + 3] = 255;
      }
    }
    c.putImageData(pix, 0, 0);
    m.image = img;
    return img;
  }
  var hatch = null;
  function hatchPattern() {
    if (hatch) return hatch;
    var s = Math.max(1, Math.round(6 * L.scale)), p = document.createElement('canvas');
    p.width = s; p.height = s;
    var c = p.getContext('2d');
    c.fillStyle = '#e6e6e6'; c.fillRect(0, 0, s, s);
    c.strokeStyle = '#9e9e9e'; c.lineWidth = 1.5 * L.scale;
    c.beginPath();
    c.moveTo(-1, s + 1); c.lineTo(s + 1, -1);
    c.moveTo(-1, 1); c.lineTo(1, -1);
    c.moveTo(s - 1, s + 1); c.lineTo(s + 1, s - 1);
    c.stroke();
    hatch = ctx.createPattern(p, 'repeat');
    if (hatch.setTransform && window.DOMMatrix) hatch.setTransform(new DOMMatrix().scale(1 / L.scale));
    return hatch;
  }
  function luminance(rgb) {
    var t = rgb.map(function (c) { var s = c / 255; return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4); });
    return 0.2126 * t[0] + 0.7152 * t[1] + 0.0722 * t[2];
  }
  function hasNull(v) {
    for (var p = 0; p < v.length; p++) if (v[p] !== v[p]) return true;
    return false;
  }

  var focusRow = rows - 1, focusCol = 0, focused = false;
  function draw() {
    var m = measures[current], v = values(m), cell = L.cell, x0 = L.x0, y0 = L.y0;
    ctx.setTransform(L.scale, 0, 0, L.scale, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, L.cssW, L.cssH);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cellImage(m), x0, y0, L.W, L.H);
    // Undefined cells: the hatch, one rectangle per run of them in a row.
    var pattern = null;
    for (var i = 0; i < rows; i++) {
      for (var j = 0; j < cols; j++) {
        if (v[i * cols + j] === v[i * cols + j]) continue;
        var end = j;
        while (end + 1 < cols && v[i * cols + end + 1] !== v[i * cols + end + 1]) end++;
        if (!pattern) pattern = hatchPattern();
        ctx.fillStyle = pattern;
        ctx.fillRect(x0 + j * cell, y0 + (rows - 1 - i) * cell, (end - j + 1) * cell, cell);
        j = end;
      }
    }
    ctx.strokeStyle = INK;
    ctx.lineWidth = 1;
    ctx.strokeRect(x0, y0, L.W, L.H);
    // Values inside the cells for small matrices.
    var valueFs = Math.min(FS, cell * 0.42, (cell * 0.9) / (4 * 0.66));
    if (data.showValues && valueFs >= 4) {
      ctx.font = valueFs + 'px ' + FONT;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      for (var a = 0; a < rows; a++) {
        for (var b = 0; b < cols; b++) {
          var x = v[a * cols + b];
          if (x !== x) continue;
          ctx.fillStyle = luminance(colors[colorIndex(x)]) > 0.179 ? '#000000' : '#ffffff';
          ctx.fillText(x.toFixed(2).replace(/^-(0\\.?0*)$/, '$1'), x0 + (b + 0.5) * cell, y0 + (rows - 1 - a + 0.5) * cell);
        }
      }
    }
    // Ticks and labels, every rowStep-th / colStep-th; their boxes answer hovers with the full name.
    L.labels = [];
    ctx.fillStyle = INK;
    ctx.font = FS + 'px ' + FONT;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.beginPath();
    for (var r = 0; r < rows; r += L.rowStep) {
      var y = y0 + (rows - 1 - r + 0.5) * cell;
      ctx.moveTo(x0 - TICK, y); ctx.lineTo(x0, y);
      var w = ctx.measureText(data.rowLabels[r]).width;
      ctx.fillText(data.rowLabels[r], x0 - TICK - GAP, y);
      L.labels.push({ row: r, x: x0 - TICK - GAP - w, y: y - FS * 0.6, w: w + TICK + GAP, h: FS * 1.2 });
    }
    var labelTop = y0 + L.H + TICK + GAP;
    for (var c = 0; c < cols; c += L.colStep) {
      var cx = x0 + (c + 0.5) * cell, cw = ctx.measureText(data.colLabels[c]).width;
      ctx.moveTo(cx, y0 + L.H); ctx.lineTo(cx, y0 + L.H + TICK);
      if (L.rotated) {
        ctx.save();
        ctx.translate(cx, labelTop);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = 'right';
        ctx.fillText(data.colLabels[c], 0, 0);
        ctx.restore();
        L.labels.push({ col: c, x: cx - FS * 0.6, y: labelTop - GAP, w: FS * 1.2, h: cw + GAP });
      } else {
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        ctx.fillText(data.colLabels[c], cx, labelTop);
        L.labels.push({ col: c, x: cx - cw / 2, y: labelTop - GAP, w: cw, h: FS * 1.2 + GAP });
      }
    }
    ctx.stroke();
    // Axis titles.
    var xTitleTop = labelTop + (L.rotated ? maxW(data.colLabels) : FS * 1.2) + 10;
    ctx.font = AXIS_FS + 'px ' + FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    ctx.fillText(data.model2Name + ' layers', x0 + L.W / 2, xTitleTop);
    ctx.save();
    ctx.translate(PAD, y0 + L.H / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(data.model1Name + ' layers', 0, 0);
    ctx.restore();
    // Colour bar 0..1 with the measure's name.
    var cbX = x0 + L.W + CB_GAP, cbH = Math.max(L.H, 100);
    var grad = ctx.createLinearGradient(0, y0 + cbH, 0, y0);
    colors.forEach(function (rgb, k) {
      grad.addColorStop(k / (colors.length - 1), 'rgb(' + rgb[0] + ',' + rgb[1] + ',' + rgb[2] + ')');
    });
    ctx.fillStyle = grad;
    ctx.fillRect(cbX, y0, CB_W, cbH);
    ctx.strokeRect(cbX, y0, CB_W, cbH);
    ctx.fillStyle = INK;
    ctx.font = FS + 'px ' + FONT;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.beginPath();
    for (var t = 0; t <= 5; t++) {
      var ty = y0 + cbH * (1 - t / 5);
      ctx.moveTo(cbX + CB_W, ty); ctx.lineTo(cbX + CB_W + TICK, ty);
      ctx.fillText((t / 5).toFixed(1), cbX + CB_W + TICK + GAP, ty);
    }
    ctx.stroke();
    ctx.save();
    ctx.translate(cbX + CB_W + TICK + GAP + L.cbLabelW + 8 + AXIS_FS * 0.6, y0 + cbH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.font = AXIS_FS + 'px ' + FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(m.label, 0, 0);
    ctx.restore();
    // Legend for undefined cells, when this measure has some.
    if (hasNull(v)) {
      var legendW = L.swatch + 6 + textW(data.undefinedText, FS), lx = x0 + L.W / 2 - legendW / 2;
      var ly = xTitleTop + AXIS_FS * 1.3 + 10;
      ctx.fillStyle = hatchPattern();
      ctx.fillRect(lx, ly, L.swatch, L.swatch);
      ctx.lineWidth = 0.5;
      ctx.strokeRect(lx, ly, L.swatch, L.swatch);
      ctx.fillStyle = INK;
      ctx.font = FS + 'px ' + FONT;
      ctx.textAlign = 'left';
      ctx.fillText(data.undefinedText, lx + L.swatch + 6, ly + L.swatch / 2);
    }
    // The keyboard's cell.
    if (focused) {
      var s = Math.max(cell, 6), fx = x0 + (focusCol + 0.5) * cell - s / 2, fy = y0 + (rows - 1 - focusRow + 0.5) * cell - s / 2;
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#00e5ff';
      ctx.strokeRect(fx, fy, s, s);
      ctx.lineWidth = 1;
      ctx.strokeStyle = '#000000';
      ctx.strokeRect(fx - 1.5, fy - 1.5, s + 3, s + 3);
    }
    canvas.setAttribute('data-measure', m.id);
    canvas.setAttribute('data-drawn', String(++drawCount));
  }
  var drawCount = 0;

  function line(key, value, cls) {
    var div = document.createElement('div');
    var k = document.createElement('span');
    k.className = 'k';
    k.textContent = key;
    var v = document.createElement('span');
    if (cls) v.className = cls;
    v.textContent = value;
    div.appendChild(k);
    div.appendChild(v);
    return div;
  }
  function view(views, k) { return views ? views[k] : 'flatten'; }
  // A null cell: its reason when the result has one (full batch), e.g.
  // 'null: rank_deficient (layer fills the sample space: d >= N - 1)'.
  function nullText(m, p) {
    var r = m.reasons, k = r ? r.cells[p] : -1;
    if (!r || k === undefined || k < 0) return data.undefinedText;
    var code = r.codes[k], why = data.reasonTexts && data.reasonTexts[code];
    return 'null: ' + code + (why ? ' (' + why + ')' : '');
  }
  // The tooltip of cell (i, j); returns the same facts as one sentence for the live region.
  function fillCell(i, j) {
    var m = measures[current], x = values(m)[i * cols + j];
    var text = x !== x ? nullText(m, i * cols + j) : format(x);
    var v1 = view(data.model1Views, i), v2 = view(data.model2Views, j);
    tip.textContent = '';
    tip.appendChild(line(data.model1Name, data.model1Layers[i]));
    tip.appendChild(line(data.model2Name, data.model2Layers[j]));
    tip.appendChild(line('views', v1 + ' \\u00d7 ' + v2));
    var sigma = '';
    if ((m.id === 'rbf_cka' || m.id === 'rbf_cka_biased') && data.rbf) {
      var s1 = sigmaText(data.rbf.sigma1[i]), s2 = sigmaText(data.rbf.sigma2[j]);
      tip.appendChild(line('\\u03c3', s1 + ' \\u00d7 ' + s2 + ' (threshold ' + data.rbf.threshold + ')'));
      sigma = ', \\u03c3 ' + s1 + ' and ' + s2;
    }
    tip.appendChild(line(m.label, text, 'v'));
    tip.hidden = false;
    return data.model1Name + ' ' + data.model1Layers[i] + ' (' + v1 + '), ' + data.model2Name + ' ' +
      data.model2Layers[j] + ' (' + v2 + ')' + sigma + ': ' + m.label + ' ' + text;
  }
  function fillLabel(box) {
    tip.textContent = '';
    if (box.row !== undefined) {
      tip.appendChild(line(data.model1Name, data.model1Layers[box.row]));
      tip.appendChild(line('view', view(data.model1Views, box.row)));
    } else {
      tip.appendChild(line(data.model2Name, data.model2Layers[box.col]));
      tip.appendChild(line('view', view(data.model2Views, box.col)));
    }
    tip.hidden = false;
  }
  function place(x, y) {
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 14, top = y + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, x - w - 14);
    if (top + h > window.innerHeight - 4) top = Math.max(4, y - h - 14);
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
  }
  function hide() { tip.hidden = true; shown = null; }
  var shown = null;
  // Page coordinates to the canvas's CSS px (the canvas may be scaled down by max-width).
  function local(e) {
    var r = canvas.getBoundingClientRect();
    return { x: ((e.clientX - r.left) * L.cssW) / r.width, y: ((e.clientY - r.top) * L.cssH) / r.height };
  }
  canvas.addEventListener('mousemove', function (e) {
    var p = local(e);
    var j = Math.floor((p.x - L.x0) / L.cell), ri = Math.floor((p.y - L.y0) / L.cell);
    var key = null;
    if (j >= 0 && j < cols && ri >= 0 && ri < rows && p.x < L.x0 + L.W && p.y < L.y0 + L.H) {
      var i = rows - 1 - ri;
      key = 'c' + i + ',' + j + ',' + current;
      if (shown !== key) fillCell(i, j);
    } else {
      for (var k = 0; k < L.labels.length; k++) {
        var b = L.labels[k];
        if (p.x >= b.x && p.x <= b.x + b.w && p.y >= b.y && p.y <= b.y + b.h) {
          key = b.row !== undefined ? 'r' + b.row : 'k' + b.col;
          if (shown !== key) fillLabel(b);
          break;
        }
      }
    }
    if (key === null) { hide(); return; }
    shown = key;
    place(e.clientX, e.clientY);
  });
  canvas.addEventListener('mouseleave', hide);

  function announce() {
    var text = fillCell(focusRow, focusCol);
    shown = 'f';
    live.textContent = text;
    canvas.setAttribute('data-focus-row', String(focusRow));
    canvas.setAttribute('data-focus-col', String(focusCol));
    var r = canvas.getBoundingClientRect(), k = r.width / L.cssW;
    place(r.left + (L.x0 + (focusCol + 1) * L.cell) * k, r.top + (L.y0 + (rows - focusRow) * L.cell) * k);
  }
  canvas.addEventListener('focus', function () {
    focused = true;
    draw();
    announce();
  });
  canvas.addEventListener('blur', function () {
    focused = false;
    draw();
    hide();
  });
  canvas.addEventListener('keydown', function (e) {
    var i = focusRow, j = focusCol;
    if (e.key === 'ArrowUp') i = Math.min(rows - 1, i + 1);
    else if (e.key === 'ArrowDown') i = Math.max(0, i - 1);
    else if (e.key === 'ArrowLeft') j = Math.max(0, j - 1);
    else if (e.key === 'ArrowRight') j = Math.min(cols - 1, j + 1);
    else if (e.key === 'Escape') { hide(); return; }
    else return;
    e.preventDefault();
    focusRow = i;
    focusCol = j;
    draw();
    announce();
  });

  // The measure selector: tabs, arrow keys between them; each shows its heatmap and best-match table.
  var tabs = Array.prototype.slice.call(document.querySelectorAll('.measures [role="tab"]'));
  function select(k, moveFocus) {
    current = k;
    tabs.forEach(function (tab, n) {
      tab.setAttribute('aria-selected', n === k ? 'true' : 'false');
      tab.setAttribute('tabindex', n === k ? '0' : '-1');
    });
    if (moveFocus && tabs[k]) tabs[k].focus();
    var id = measures[k].id;
    Array.prototype.forEach.call(document.querySelectorAll('[data-measure-section]'), function (el) {
      el.hidden = el.getAttribute('data-measure-section') !== id;
    });
    canvas.setAttribute('aria-label', data.canvasLabel.replace('{measure}', measures[k].label));
    if (!L) return;
    draw();
    if (focused) announce(); else hide();
  }
  tabs.forEach(function (tab, n) {
    tab.addEventListener('click', function () { select(n, false); });
    tab.addEventListener('keydown', function (e) {
      var k = n;
      if (e.key === 'ArrowRight') k = (n + 1) % tabs.length;
      else if (e.key === 'ArrowLeft') k = (n - 1 + tabs.length) % tabs.length;
      else if (e.key === 'Home') k = 0;
      else if (e.key === 'End') k = tabs.length - 1;
      else return;
      e.preventDefault();
      select(k, true);
    });
  });

  var width = -1;
  function resize() {
    var w = figure.clientWidth;
    if (L && w === width && (window.devicePixelRatio || 1) === L.dpr) return;
    width = w;
    hatch = null;
    layout();
    draw();
    // The figure width the data-x0/y0/cell attributes were laid out for: tools that read them after a
    // resize wait until it equals figure.clientWidth (the CSS max-width shrinks the canvas first).
    canvas.setAttribute('data-layout-width', String(w));
  }
  window.addEventListener('resize', function () { window.requestAnimationFrame(resize); });
  select(current, false);
  resize();
  canvas.setAttribute('data-ready', 'true');
})();
`;

'use strict';
// Heatmap SVG/PNG and result validation. The SVG is checked with independent parsers:
// librsvg (through sharp) and Chromium's DOMParser and layout (through playwright-core).
const assert = require('node:assert/strict');
const sharp = require('sharp');
const { launchChromium } = require('./helpers/browser');
const { heatmapSvg, heatmapPng, svgToPng, hasUsableFont, validateResult, colorOf } = require('../dist/plot');

// Matplotlib's end colours, as its docs list them.
const MAGMA_0 = '#000004';
const MAGMA_1 = '#fcfdbf';
const VIRIDIS_0 = '#440154';
const VIRIDIS_1 = '#fde725';

function makeResult(rows, cols, { names1, names2, value, nulls = [] } = {}) {
  const model1Layers = names1 ?? Array.from({ length: rows }, (_, i) => `a${i}`);
  const model2Layers = names2 ?? Array.from({ length: cols }, (_, j) => `b${j}`);
  const at = value ?? ((i, j) => (i * cols + j) / Math.max(1, rows * cols - 1));
  const cka = model1Layers.map((_, i) => model2Layers.map((_, j) => at(i, j)));
  for (const [i, j] of nulls) cka[i][j] = null;
  return {
    model1Name: 'NetA',
    model2Name: 'NetB',
    model1Layers,
    model2Layers,
    dataset1Name: 'data1',
    dataset2Name: 'data1',
    cka,
    samples: 256,
    batches: 4,
  };
}

const attrs = (text) => Object.fromEntries([...text.matchAll(/([\w:-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
const cellsOf = (svg) => [...svg.matchAll(/<rect class="tcka-cell" ([^>]*)>/g)].map((m) => attrs(m[1]));
const rootOf = (svg) => attrs(/<svg ([^>]*)>/.exec(svg)[1]);
const textsOf = (svg, group) => {
  const body = new RegExp(`<g class="${group}"[^>]*>([\\s\\S]*?)</g>`).exec(svg);
  return body
    ? [...body[1].matchAll(/<text ([^>]*)>([^<]*)<\/text>/g)].map((m) => ({ ...attrs(m[1]), text: m[2] }))
    : [];
};
const unescape = (s) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');

const long = (i) => `layer${(i % 4) + 1}.${i}.downsample.0`;
const small = makeResult(3, 4);
const withNulls = makeResult(3, 4, { nulls: [[1, 2]] });
const large = makeResult(120, 130, {
  names1: Array.from({ length: 120 }, (_, i) => long(i)),
  names2: Array.from({ length: 130 }, (_, j) => `blocks.${j}.attn.proj_drop`),
});
const nasty = makeResult(2, 3, {
  names1: ['<script>alert(1)</script>', 'a & b'],
  names2: ['say "hi"', "it's", '</svg><b>x</b>'],
});
nasty.model1Name = 'M<1>&"';
nasty.dataset2Name = 'd&2';

describe('heatmapSvg', function () {
  it('is XML that librsvg parses, sized as its root says', async function () {
    for (const result of [small, withNulls, large, nasty]) {
      const svg = heatmapSvg(result);
      const root = rootOf(svg);
      const meta = await sharp(Buffer.from(svg)).metadata();
      assert.equal(meta.format, 'svg');
      assert.equal(meta.width, Number(root.width));
      assert.equal(meta.height, Number(root.height));
      assert.equal(root.viewBox, `0 0 ${root.width} ${root.height}`);
    }
  });

  it('draws one rect per cell, row 0 at the bottom and column 0 at the left', function () {
    for (const result of [small, large]) {
      const cells = cellsOf(heatmapSvg(result));
      const rows = result.model1Layers.length;
      const cols = result.model2Layers.length;
      assert.equal(cells.length, rows * cols);
      const at = new Map(cells.map((c) => [`${c['data-row']},${c['data-col']}`, c]));
      for (let i = 0; i < rows; i += 1) {
        for (let j = 0; j < cols; j += 1) {
          const c = at.get(`${i},${j}`);
          assert.ok(c, `cell ${i},${j}`);
          assert.equal(Number(c['data-value']), result.cka[i][j]);
          if (i > 0) assert.ok(Number(c.y) < Number(at.get(`${i - 1},${j}`).y), `row ${i} above row ${i - 1}`);
          if (j > 0) assert.ok(Number(c.x) > Number(at.get(`${i},${j - 1}`).x), `column ${j} right of ${j - 1}`);
        }
      }
      const bottom = Math.max(...cells.map((c) => Number(c.y)));
      assert.ok(cells.filter((c) => c['data-row'] === '0').every((c) => Number(c.y) === bottom));
      const left = Math.min(...cells.map((c) => Number(c.x)));
      assert.ok(cells.filter((c) => c['data-col'] === '0').every((c) => Number(c.x) === left));
    }
  });

  it('gives each cell a title with both layer names and the value', function () {
    const svg = heatmapSvg(small);
    const titles = [...svg.matchAll(/data-row="(\d+)" data-col="(\d+)"[^>]*><title>([^<]*)<\/title>/g)];
    assert.equal(titles.length, 12);
    for (const [, i, j, title] of titles) {
      const value = small.cka[i][j];
      assert.equal(title, `a${i} × b${j}: ${value.toFixed(3)}`);
    }
  });

  it('colours 0 and 1 with the colormap ends, clamping values just outside [0, 1]', function () {
    const ends = makeResult(1, 4, { value: (i, j) => [0, 1, -1e-9, 1.0000001][j] });
    const fill = (options) => cellsOf(heatmapSvg(ends, options)).map((c) => c.fill);
    assert.deepEqual(fill(), [MAGMA_0, MAGMA_1, MAGMA_0, MAGMA_1]);
    assert.deepEqual(fill({ colormap: 'viridis' }), [VIRIDIS_0, VIRIDIS_1, VIRIDIS_0, VIRIDIS_1]);
    assert.deepEqual(colorOf(1, 'magma'), [252, 253, 191]);
    assert.deepEqual(colorOf(0.5, 'viridis'), [33, 145, 140]); // #21918c, matplotlib's middle
  });

  it('hatches undefined cells and explains them in a legend only when there are some', function () {
    const svg = heatmapSvg(withNulls);
    const hatched = cellsOf(svg).filter((c) => c.fill.startsWith('url('));
    assert.deepEqual(
      hatched.map((c) => [c['data-row'], c['data-col'], c['data-value'], c.fill]),
      [['1', '2', 'null', 'url(#tcka-undefined)']],
    );
    assert.match(svg, /<pattern id="tcka-undefined"/);
    assert.match(
      svg,
      /class="tcka-legend"[\s\S]*fill="url\(#tcka-undefined\)"[\s\S]*undefined: layer constant over the data/,
    );
    assert.doesNotMatch(heatmapSvg(small), /tcka-legend|layer constant/);
    assert.doesNotMatch(heatmapSvg(small), /url\(#tcka-undefined\)/);
  });

  it('thins tick labels on a large matrix so they never overlap', function () {
    const svg = heatmapSvg(large);
    const fontSize = Number(rootOf(svg)['font-size']);
    const ylabels = textsOf(svg, 'tcka-ylabels');
    const xlabels = textsOf(svg, 'tcka-xlabels');
    assert.ok(ylabels.length > 10 && ylabels.length < 120, `${ylabels.length} row labels`);
    assert.ok(xlabels.length > 10 && xlabels.length < 130, `${xlabels.length} column labels`);
    for (const label of ylabels) assert.equal(label.text, large.model1Layers[Number(label['data-row'])]);
    for (const label of xlabels) assert.equal(label.text, large.model2Layers[Number(label['data-col'])]);
    const ys = ylabels.map((l) => Number(l.y)).sort((a, b) => a - b);
    const xs = xlabels.map((l) => Number(/translate\(([\d.]+)/.exec(l.transform)[1])).sort((a, b) => a - b);
    for (const positions of [ys, xs]) {
      for (let k = 1; k < positions.length; k += 1) assert.ok(positions[k] - positions[k - 1] >= fontSize);
    }
    // Every layer is labelled on a small matrix.
    assert.equal(textsOf(heatmapSvg(small), 'tcka-ylabels').length, 3);
    assert.equal(textsOf(heatmapSvg(small), 'tcka-xlabels').length, 4);
  });

  it('writes values inside the cells of small matrices only', function () {
    const values = (result, options) => textsOf(heatmapSvg(result, options), 'tcka-values');
    assert.deepEqual(
      values(small).map((t) => t.text),
      [0, 1, 2].map((i) => [0, 1, 2, 3].map((j) => small.cka[i][j].toFixed(2))).flat(),
    );
    assert.equal(values(withNulls).length, 11);
    assert.equal(values(small, { showValues: false }).length, 0);
    assert.equal(values(makeResult(13, 5)).length, 0);
    assert.equal(values(makeResult(13, 5), { showValues: true }).length, 65);
  });

  it('titles like torch_cka, with the data sets where they differ', function () {
    assert.match(heatmapSvg(small), /class="tcka-title"[^>]*>NetA vs NetB</);
    assert.match(heatmapSvg({ ...small, dataset2Name: 'other' }), />NetA \(data1\) vs NetB \(other\)</);
    assert.match(heatmapSvg(small, { title: 'Mine' }), /class="tcka-title"[^>]*>Mine</);
    assert.doesNotMatch(heatmapSvg(small, { title: '' }), /tcka-title/);
    assert.match(heatmapSvg(small), /class="tcka-ytitle"[^>]*>NetA layers</);
    assert.match(heatmapSvg(small), /class="tcka-xtitle"[^>]*>NetB layers</);
  });

  it('escapes every name', function () {
    const svg = heatmapSvg(nasty);
    assert.doesNotMatch(svg, /<script|<b>|<\/svg><b>/);
    const texts = [...svg.matchAll(/>([^<]+)</g)].map((m) => unescape(m[1]));
    for (const name of [...nasty.model1Layers, ...nasty.model2Layers]) {
      assert.ok(texts.includes(name), `label ${name}`);
    }
    assert.ok(texts.includes('M<1>&" (data1) vs NetB (d&2)'));
    assert.ok(texts.includes(`a & b × say "hi": ${nasty.cka[1][0].toFixed(3)}`));
  });

  it('sizes the picture from width, height or cellSize', function () {
    const size = (options) => {
      const root = rootOf(heatmapSvg(small, options));
      return [Number(root.width), Number(root.height)];
    };
    const cell = (options) => Number(cellsOf(heatmapSvg(small, options))[0].width);
    assert.equal(cell({ cellSize: 20 }), 20);
    assert.equal(size({ width: 900 })[0], 900);
    assert.equal(size({ width: 900, height: 700 }).join('x'), '900x700');
    assert.ok(cell({ width: 900 }) > cell({ width: 600 }));
    assert.ok(size()[0] > 200 && size()[0] < 700);
  });

  it('rejects bad options', function () {
    assert.throws(() => heatmapSvg(small, { colormap: 'jet' }), { name: 'RangeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => heatmapSvg(small, { width: -1 }), { name: 'RangeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => heatmapSvg(small, { showValues: 'yes' }), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => heatmapSvg(small, 'big'), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => heatmapSvg({ ...small, cka: [] }), { code: 'ERR_INVALID_RESULT' });
  });
});

describe('heatmapSvg in Chromium', function () {
  let browser;
  let page;

  before(async function () {
    browser = await launchChromium();
    page = await browser.newPage();
    await page.route('**/*', (route) => route.abort());
    await page.setContent('<!DOCTYPE html><html><body style="margin:0"></body></html>');
  });

  after(async function () {
    await browser?.close();
  });

  // Puts the SVG in the page and returns the text boxes that stick out of it or overlap a neighbour.
  const layoutProblems = (svg) =>
    page.evaluate((source) => {
      const doc = new DOMParser().parseFromString(source, 'image/svg+xml');
      if (doc.querySelector('parsererror')) return [`parser: ${doc.querySelector('parsererror').textContent}`];
      document.body.replaceChildren(document.importNode(doc.documentElement, true));
      const svg = document.querySelector('svg');
      const frame = svg.getBoundingClientRect();
      const problems = [];
      for (const text of svg.querySelectorAll('text')) {
        const box = text.getBoundingClientRect();
        if (box.left < frame.left || box.top < frame.top || box.right > frame.right || box.bottom > frame.bottom) {
          problems.push(`clipped: ${text.textContent}`);
        }
      }
      for (const group of ['tcka-ylabels', 'tcka-xlabels']) {
        const boxes = [...svg.querySelectorAll(`.${group} text`)].map((t) => t.getBoundingClientRect());
        for (let k = 1; k < boxes.length; k += 1) {
          const a = boxes[k - 1];
          const b = boxes[k];
          const overlap =
            Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
            Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
          if (overlap) problems.push(`overlap in ${group} at ${k}`);
        }
      }
      return problems;
    }, svg);

  it('parses the SVG, keeps the names and clips no text (5x5 to 120x130, long names)', async function () {
    const long5 = makeResult(5, 5, {
      names1: ['conv1', 'layer1.0.conv1', 'layer4.1.downsample.0', 'avgpool', 'fc'],
      names2: ['conv1', 'layer1.0.conv1', 'layer4.1.downsample.0', 'avgpool', 'fc'],
    });
    for (const result of [small, withNulls, long5, large, makeResult(1, 1), makeResult(2, 60), nasty]) {
      assert.deepEqual(await layoutProblems(heatmapSvg(result)), []);
    }
    const names = await page.evaluate(() =>
      [...document.querySelectorAll('.tcka-ylabels text, .tcka-xlabels text')].map((t) => t.textContent),
    );
    assert.deepEqual(names.slice(0, 2), nasty.model1Layers);
    assert.deepEqual(names.slice(2), nasty.model2Layers);
  });
});

describe('heatmapPng', function () {
  const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

  it('renders at scale 2 by default, with cells where the SVG puts them', async function () {
    const result = makeResult(3, 4, { value: (i, j) => (i === 1 && j === 2 ? 1 : 0.2) });
    const svg = heatmapSvg(result);
    const root = rootOf(svg);
    const png = heatmapPng(result);
    assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE));
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, Number(root.width) * 2);
    assert.equal(info.height, Number(root.height) * 2);
    const pixel = (x, y) => {
      const k = (Math.floor(y) * info.width + Math.floor(x)) * info.channels;
      return [data[k], data[k + 1], data[k + 2]];
    };
    const cell = cellsOf(svg).find((c) => c['data-row'] === '1' && c['data-col'] === '2');
    // Sample near a corner of the cell: the value text sits in its middle.
    const inside = (c, fx, fy) => [(Number(c.x) + Number(c.width) * fx) * 2, (Number(c.y) + Number(c.height) * fy) * 2];
    const near = (got, want) => got.every((v, k) => Math.abs(v - want[k]) <= 2);
    assert.ok(near(pixel(...inside(cell, 0.15, 0.15)), [252, 253, 191]), `${pixel(...inside(cell, 0.15, 0.15))}`);
    const other = cellsOf(svg).find((c) => c['data-row'] === '0' && c['data-col'] === '0');
    assert.ok(near(pixel(...inside(other, 0.15, 0.15)), colorOf(0.2, 'magma')));
    // The corner of the picture is the white background.
    assert.deepEqual(pixel(1, 1), [255, 255, 255]);
  });

  it('takes a scale and renders large matrices', async function () {
    const svg = heatmapSvg(large);
    const root = rootOf(svg);
    const png = svgToPng(svg, { scale: 1 });
    const meta = await sharp(png).metadata();
    assert.equal(meta.width, Number(root.width));
    assert.equal(meta.height, Number(root.height));
    assert.throws(() => svgToPng(svg, { scale: 0 }), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => svgToPng(42), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
  });

  it('warns about a missing font only when resvg finds none', function () {
    const warnings = [];
    heatmapPng(small, { scale: 1, onWarning: (w) => warnings.push(w) });
    if (hasUsableFont()) {
      assert.deepEqual(warnings, []);
    } else {
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].code, 'TORCH_CKA_NO_FONT');
      assert.match(warnings[0].message, /fonts-dejavu-core/);
    }
  });
});

describe('validateResult', function () {
  const good = () => JSON.parse(JSON.stringify(withNulls));

  it('returns the result without extra keys (such as the CLI’s)', function () {
    const parsed = { ...good(), cli: { version: '0.1.0', argv: [] } };
    const result = validateResult(parsed, 'results.json');
    // A result without views (written before them) reads as all 'flatten'.
    const views = (layers) => layers.map(() => 'flatten');
    assert.deepEqual(result, {
      ...good(),
      model1Views: views(good().model1Layers),
      model2Views: views(good().model2Layers),
    });
    assert.equal('cli' in result, false);
    assert.notEqual(result.cka, parsed.cka);
  });

  // Each case makes a bad value: a good one edited, or something else altogether.
  const edit = (change) => () => {
    const value = good();
    change(value);
    return value;
  };
  const cases = [
    ['not an object', () => [1, 2], /results\.json: expected an object but received an array/],
    ['null', () => null, /expected an object but received null/],
    ['a missing name', edit((r) => delete r.model1Name), /expected a string for model1Name but received undefined/],
    ['a data set name that is a number', edit((r) => (r.dataset2Name = 3)), /dataset2Name but received 3/],
    ['layers that are not an array', edit((r) => (r.model2Layers = 'a,b')), /array of layer names for model2Layers/],
    [
      'a layer name that is not a string',
      edit((r) => (r.model1Layers[1] = 7)),
      /string for model1Layers\[1\] but received 7/,
    ],
    ['no layers', edit((r) => ((r.model1Layers = []), (r.cka = []))), /model1Layers is empty/],
    ['too few rows', edit((r) => r.cka.pop()), /cka has 2 rows but model1Layers has 3 layers/],
    ['a short row', edit((r) => r.cka[2].pop()), /cka\[2\] has 3 values but model2Layers has 4 layers/],
    ['a row that is not an array', edit((r) => (r.cka[0] = {})), /array for cka\[0\] but received an? Object/],
    ['a NaN', edit((r) => (r.cka[0][1] = NaN)), /finite number or null for cka\[0\]\[1\] but received NaN/],
    ['an infinity', edit((r) => (r.cka[1][1] = Infinity)), /cka\[1\]\[1\] but received Infinity/],
    ['a string value', edit((r) => (r.cka[2][3] = '0.5')), /cka\[2\]\[3\] but received "0.5"/],
    ['a missing matrix', edit((r) => delete r.cka), /array of rows for cka but received undefined/],
    ['a negative sample count', edit((r) => (r.samples = -1)), /non-negative integer for samples but received -1/],
    ['a fractional batch count', edit((r) => (r.batches = 1.5)), /batches but received 1.5/],
  ];
  for (const [what, make, message] of cases) {
    it(`rejects ${what}`, function () {
      assert.throws(() => validateResult(make(), 'results.json'), {
        name: 'TypeError',
        code: 'ERR_INVALID_RESULT',
        message,
      });
    });
  }

  it('names the source, "result" by default', function () {
    assert.throws(() => validateResult({}), { code: 'ERR_INVALID_RESULT', message: /^Invalid CKA result in result: / });
  });
});

'use strict';
// The HTML report in a real browser (Chromium through playwright-core), with the network cut off.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { launchChromium } = require('./helpers/browser');
const { reportHtml, bestMatches } = require('../dist/report');
const { colorHex } = require('../dist/plot/colormap');

/** A value as the report shows it, written plainly: 3 decimals, no minus sign on a zero. */
const shown = (v) =>
  v === null ? 'undefined: layer constant over the data' : v.toFixed(3).replace(/^-(0\.0+)$/, '$1');

/** The best match of each row written plainly: highest value, first on ties, null for an all-null row. */
function expectedMatches(result, matrix = result.cka) {
  return matrix.map((row, i) => {
    let best = -1;
    for (let j = 0; j < row.length; j += 1) {
      if (row[j] !== null && (best < 0 || row[j] > row[best])) best = j;
    }
    return best < 0
      ? [result.model1Layers[i], '—', '—']
      : [result.model1Layers[i], result.model2Layers[best], row[best].toFixed(3)];
  });
}

// 6 x 7 with a tie (row 1), an all-undefined row (row 3), one undefined cell and names that need escaping.
const names1 = ['conv1', 'layer1.0', '<b class="injected">bold</b>', 'layer4.1.downsample.0', 'a & b', 'fc'];
const names2 = ['conv1', 'layer1.0', 'layer1.1', "it's", 'layer4.1.downsample.0', 'avgpool', 'fc'];
const cka = names1.map((_, i) => names2.map((_, j) => Math.round(1000 * Math.exp(-Math.abs(i - j) / 2)) / 1000));
cka[1] = [0.2, 0.9, 0.9, 0.1, 0.3, -0.0001, 0.9];
cka[3] = names2.map(() => null);
cka[4][2] = null;
cka[0][0] = 1;
const result = {
  model1Name: 'ResNet<18>',
  model2Name: 'ResNet34',
  model1Layers: names1,
  model2Layers: names2,
  dataset1Name: 'cifar10',
  dataset2Name: 'cifar10',
  cka,
  samples: 12345,
  batches: 97,
};
const info = {
  model1: { path: '/models/resnet18.pt', device: 'cpu', layerCount: 60 },
  model2: { path: '/models/resnet34.pt', device: 'cuda:0' },
  dataset1: { path: '/data/cifar10/test', description: '10000 images 3x32x32 <png>' },
  generatedAt: new Date('2025-03-04T05:06:07Z'),
  version: '0.1.0',
  command: 'torch-cka compare a.pt b.pt --data "x<y>" --report r.html',
  elapsedSeconds: 12.5,
};

describe('reportHtml in Chromium', function () {
  let browser;
  let page;
  let dir;
  const requests = [];
  const consoleErrors = [];

  before(async function () {
    // A missing browser fails the suite: it is a dev dependency of these tests, not optional.
    browser = await launchChromium();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-report-'));
  });

  after(async function () {
    await browser?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(html, name) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, html);
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      requests.push(url);
      return route.abort();
    });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await page.waitForSelector('#heatmap-canvas[data-ready]');
    return page;
  }

  /** Where cell (i, j) of the canvas is on the page (row 0 at the bottom), from the canvas's layout attributes. */
  const cellBox = async (i, j) => {
    const box = await page.locator('#heatmap-canvas').boundingBox();
    const geo = await page.$eval('#heatmap-canvas', (c) => ({
      x0: Number(c.dataset.x0),
      y0: Number(c.dataset.y0),
      cell: Number(c.dataset.cell),
      rows: JSON.parse(document.getElementById('cka-data').textContent).model1Layers.length,
    }));
    return {
      x: box.x + geo.x0 + j * geo.cell,
      y: box.y + geo.y0 + (geo.rows - 1 - i) * geo.cell,
      size: geo.cell,
      canvas: box,
      geo,
    };
  };
  const tooltipFor = async (i, j) => {
    const at = await cellBox(i, j);
    await page.mouse.move(1, 1);
    await page.mouse.move(at.x + at.size / 2, at.y + at.size / 2);
    await page.waitForSelector('#tooltip:not([hidden])', { state: 'visible' });
    return page.textContent('#tooltip');
  };
  /** The canvas's pixel at a page point, as #rrggbb. */
  const pixelAt = (x, y) =>
    page.$eval(
      '#heatmap-canvas',
      (c, [px, py]) => {
        const r = c.getBoundingClientRect();
        const k = c.width / r.width;
        const d = c
          .getContext('2d')
          .getImageData(Math.floor((px - r.left) * k), Math.floor((py - r.top) * k), 1, 1).data;
        return `#${[d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
      },
      [x, y],
    );

  it('shows both layer names and the value of a hovered cell', async function () {
    await open(reportHtml(result, info), 'report.html');
    for (const [i, j] of [
      [2, 4],
      [0, 0],
      [5, 6],
    ]) {
      const text = await tooltipFor(i, j);
      assert.ok(text.includes(names1[i]), `${text} names ${names1[i]}`);
      assert.ok(text.includes(names2[j]), `${text} names ${names2[j]}`);
      assert.ok(text.includes(cka[i][j].toFixed(3)), `${text} shows ${cka[i][j].toFixed(3)}`);
    }
    assert.match(await tooltipFor(4, 2), /undefined: layer constant over the data/);
    assert.match(await tooltipFor(1, 5), /CKA0\.000$/); // -0.0001 shows without a minus sign
    // It follows the mouse and goes away when the mouse leaves the heatmap.
    const box = await cellBox(5, 6);
    await page.mouse.move(box.x + 2, box.y + 2);
    const at = await page.locator('#tooltip').boundingBox();
    assert.ok(Math.abs(at.x - (box.x + 16)) < 2 && Math.abs(at.y - (box.y + 16)) < 2, JSON.stringify(at));
    await page.mouse.move(1, 1);
    assert.equal(await page.isHidden('#tooltip'), true);
  });

  it('lets the keyboard move between cells with the tooltip and an aria-live readout', async function () {
    const canvas = page.locator('#heatmap-canvas');
    assert.equal(await canvas.getAttribute('tabindex'), '0');
    assert.equal(await page.getAttribute('#heatmap-live', 'aria-live'), 'polite');
    await page.keyboard.press('Tab'); // from the page's start, the heatmap is the first stop
    assert.equal(await page.evaluate(() => document.activeElement.id), 'heatmap-canvas');
    assert.equal(await canvas.getAttribute('data-focus-row'), '5'); // the top-left cell
    assert.equal(await canvas.getAttribute('data-focus-col'), '0');
    assert.match(await page.textContent('#tooltip'), /fc/);
    assert.ok(
      (await page.textContent('#heatmap-live')).includes(
        `fc (flatten), ResNet34 conv1 (flatten): CKA ${shown(cka[5][0])}`,
      ),
    );
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    const focused = [await canvas.getAttribute('data-focus-row'), await canvas.getAttribute('data-focus-col')];
    assert.deepEqual(focused, ['4', '1']);
    const text = await page.textContent('#tooltip');
    assert.ok(text.includes('a & b') && text.includes('layer1.0') && text.includes(shown(cka[4][1])), text);
    const readout = await page.textContent('#heatmap-live');
    assert.equal(readout, `ResNet<18> a & b (flatten), ResNet34 layer1.0 (flatten): CKA ${shown(cka[4][1])}`);
    // The edges hold; Escape hides the tooltip; leaving the canvas hides it too.
    for (let k = 0; k < 8; k += 1) await page.keyboard.press('ArrowDown');
    assert.equal(await canvas.getAttribute('data-focus-row'), '0');
    assert.ok((await page.textContent('#heatmap-live')).endsWith(`CKA ${shown(cka[0][1])}`));
    await page.keyboard.press('Escape');
    assert.equal(await page.isHidden('#tooltip'), true);
    await page.keyboard.press('ArrowUp');
    assert.equal(await page.isHidden('#tooltip'), false);
    await page.evaluate(() => document.activeElement.blur());
    assert.equal(await page.isHidden('#tooltip'), true);
  });

  it('lists the best match of each layer', async function () {
    const rows = await page.$$eval('table.matches tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
    );
    assert.deepEqual(rows, expectedMatches(result));
    assert.equal(rows[1][1], 'layer1.0'); // the first of three tied 0.9s
    assert.deepEqual(
      bestMatches(result).map((m) => [m.layer1, m.layer2 ?? '—', m.cka === null ? '—' : m.cka.toFixed(3)]),
      expectedMatches(result),
    );
  });

  it('shows the counts, models, data, date, version and command', async function () {
    const count = async (id) => Number((await page.textContent(`#${id}`)).replace(/,/g, ''));
    assert.equal(await count('samples'), 12345);
    assert.equal(await count('batches'), 97);
    const body = await page.textContent('body');
    for (const text of [
      'ResNet<18>',
      '/models/resnet18.pt',
      '/models/resnet34.pt',
      'cuda:0',
      '/data/cifar10/test',
      '10000 images 3x32x32 <png>',
      '2025-03-04 05:06:07 UTC',
      'torch-cka 0.1.0',
      '12.5 s',
    ]) {
      assert.ok(body.includes(text), `the page shows ${text}`);
    }
    assert.equal(await page.textContent('#command'), info.command);
    assert.equal(await page.textContent('td.layers1'), '6 of 60');
    assert.equal(await page.textContent('td.layers2'), '7');
    assert.equal(await page.title(), 'ResNet<18> vs ResNet34 — CKA report');
    assert.equal(await page.textContent('h1'), 'ResNet<18> vs ResNet34');
    assert.equal(await page.locator('.injected').count(), 0);
  });

  it("draws the heatmap on a canvas in the data's colours, scaled to the page, with nothing fetched", async function () {
    assert.equal(await page.locator('figure canvas').count(), 1);
    assert.equal(await page.locator('figure svg, rect').count(), 0);
    // Cell colours from the colour map (sampled off-centre, clear of the values written in the cells).
    for (const [i, j] of [
      [0, 0],
      [2, 4],
      [5, 6],
      [1, 3],
    ]) {
      const at = await cellBox(i, j);
      const want = colorHex(Math.round(cka[i][j] * 1000) / 1000);
      assert.equal(await pixelAt(at.x + at.size * 0.15, at.y + at.size * 0.15), want, `cell ${i},${j}`);
    }
    const hatched = await cellBox(4, 2);
    const grey = await pixelAt(hatched.x + hatched.size * 0.5, hatched.y + hatched.size * 0.5);
    const [r, g, b] = [1, 3, 5].map((k) => Number.parseInt(grey.slice(k, k + 2), 16));
    assert.ok(r === g && g === b && r >= 0x9e && r <= 0xe6, `undefined cell drawn hatched grey, got ${grey}`);
    const { canvasWidth, pageWidth } = await page.evaluate(() => ({
      canvasWidth: document.querySelector('figure canvas').getBoundingClientRect().width,
      pageWidth: document.documentElement.clientWidth,
    }));
    assert.ok(canvasWidth > 200 && canvasWidth <= pageWidth, `${canvasWidth} in ${pageWidth}`);
    await page.setViewportSize({ width: 360, height: 700 });
    // Laid out again for the new width (not only shrunk by max-width), so the cell attributes are current.
    await page.waitForFunction(() => {
      const canvas = document.querySelector('figure canvas');
      return (
        canvas.getBoundingClientRect().width <= 360 &&
        canvas.dataset.layoutWidth === String(canvas.closest('figure').clientWidth)
      );
    });
    const narrow = await page.evaluate(() => ({
      canvas: document.querySelector('figure canvas').getBoundingClientRect().width,
      scroll: document.documentElement.scrollWidth,
    }));
    assert.ok(narrow.canvas <= 360 && narrow.scroll <= 360, JSON.stringify(narrow));
    // Still answers hovers at the new size.
    assert.ok((await tooltipFor(2, 4)).includes(shown(cka[2][4])));
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.doesNotMatch(html, /\b(src|href)=|https?:\/\/|@import|url\(/);
    assert.deepEqual(requests, []);
    assert.deepEqual(consoleErrors, []);
  });

  it('is crisp on a HiDPI screen: the canvas has devicePixelRatio pixels per CSS pixel', async function () {
    const file = path.join(dir, 'report.html');
    const hidpi = await browser.newPage({ viewport: { width: 1000, height: 800 }, deviceScaleFactor: 2 });
    await hidpi.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await hidpi.waitForSelector('#heatmap-canvas[data-ready]');
    const size = await hidpi.$eval('#heatmap-canvas', (c) => ({
      w: c.width,
      h: c.height,
      cssW: c.getBoundingClientRect().width,
      cssH: c.getBoundingClientRect().height,
    }));
    assert.ok(Math.abs(size.w - 2 * size.cssW) <= 1 && Math.abs(size.h - 2 * size.cssH) <= 1, JSON.stringify(size));
    await hidpi.close();
  });

  it('works for a 120 x 130 result, and with few details', async function () {
    const big = {
      ...result,
      model1Name: 'A',
      model1Layers: Array.from({ length: 120 }, (_, i) => `layer${(i % 4) + 1}.${i}.downsample.0`),
      model2Layers: Array.from({ length: 130 }, (_, j) => `blocks.${j}.mlp.fc2`),
      cka: Array.from({ length: 120 }, (_, i) => Array.from({ length: 130 }, (_, j) => ((i * 7 + j * 13) % 101) / 100)),
      dataset2Name: 'svhn',
    };
    await page.close();
    await open(reportHtml(big), 'big.html');
    const text = await tooltipFor(119, 129);
    assert.ok(text.includes('layer4.119.downsample.0') && text.includes('blocks.129.mlp.fc2'), text);
    assert.ok(text.includes(big.cka[119][129].toFixed(3)), text);
    assert.ok((await tooltipFor(37, 5)).endsWith(`CKA${shown(big.cka[37][5])}`));
    // Too many labels to read: every k-th is drawn, and hovering a label names its layer in full.
    const geo = (await cellBox(0, 0)).geo;
    const step = Math.ceil((12 * 1.25) / geo.cell);
    assert.ok(step > 1, `labels thinned to every ${step}th at ${geo.cell} px a cell`);
    const at = await cellBox(step, 0);
    await page.mouse.move(at.x - 12, at.y + at.size / 2);
    assert.equal(await page.textContent('#tooltip'), `A${big.model1Layers[step]}viewflatten`);
    await page.$eval('#heatmap-canvas', (c) => c.scrollIntoView({ block: 'end' }));
    const col = await cellBox(0, 2 * step);
    await page.mouse.move(col.x + col.size / 2, col.y + col.size + 20);
    assert.equal(await page.textContent('#tooltip'), `ResNet34${big.model2Layers[2 * step]}viewflatten`);
    const rows = await page.$$eval('table.matches tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
    );
    assert.deepEqual(rows, expectedMatches(big));
    assert.equal(await page.textContent('h1'), 'A (cifar10) vs ResNet34 (svhn)');
    assert.equal(await page.locator('#command').count(), 0);
    assert.deepEqual(requests, []);
    assert.deepEqual(consoleErrors, []);
  });
});

// Several measures, views and RBF σ, as export() gives them with `measures: ['cka', 'rbf_cka', 'dcor']`.
const mNames1 = ['embed', 'blocks.0', 'blocks.1.' + 'very_long_name_'.repeat(6) + 'end', 'head'];
const mNames2 = ['conv1', 'layer1', 'layer2', 'pool', 'fc'];
const grid = (f) => mNames1.map((_, i) => mNames2.map((_, j) => f(i, j)));
const multi = {
  model1Name: 'ViT',
  model2Name: 'CNN',
  model1Layers: mNames1,
  model2Layers: mNames2,
  dataset1Name: 'imagenet',
  dataset2Name: 'imagenet',
  samples: 640,
  batches: 10,
  cka: grid((i, j) => Math.round(10000 * Math.exp(-Math.abs(i - j))) / 10000),
  measures: {
    cka: grid((i, j) => Math.round(10000 * Math.exp(-Math.abs(i - j))) / 10000),
    rbf_cka: grid((i, j) => (i === 1 && j === 2 ? null : Math.round(10000 * (0.3 + 0.1 * i + 0.05 * j)) / 10000)),
    dcor: grid((i, j) => Math.round(10000 * (0.9 - 0.1 * j + 0.02 * i)) / 10000),
  },
  model1Views: ['flatten', 'token:0', 'token-mean', 'token:0'],
  model2Views: ['spatial-mean', 'spatial-mean', 'spatial-mean', 'flatten', 'flatten'],
  rbf: { threshold: 0.5, sigma1: [1.25, 2.5, 3.75, 123456.7], sigma2: [0.5, 0.75, null, 1, 2] },
};

describe('reportHtml with several measures in Chromium', function () {
  let browser;
  let page;
  let dir;
  const consoleErrors = [];

  before(async function () {
    browser = await launchChromium();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-report-m-'));
  });
  after(async function () {
    await browser?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(html, name, viewport = { width: 1200, height: 900 }) {
    await page?.close();
    const file = path.join(dir, name);
    fs.writeFileSync(file, html);
    page = await browser.newPage({ viewport });
    await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await page.waitForSelector('#heatmap-canvas[data-ready]');
  }
  const point = async (i, j) => {
    const box = await page.locator('#heatmap-canvas').boundingBox();
    const g = await page.$eval('#heatmap-canvas', (c) => [c.dataset.x0, c.dataset.y0, c.dataset.cell].map(Number));
    const rows = await page.$eval('#cka-data', (el) => JSON.parse(el.textContent).model1Layers.length);
    // A whole pixel inside the cell: mouse events carry integer coordinates, and cells may be < 2 px.
    const pick = (start, size) =>
      Math.ceil(start + 0.05 * size) < start + size ? Math.ceil(start + 0.05 * size) : start + size / 2;
    return [pick(box.x + g[0] + j * g[2], g[2]), pick(box.y + g[1] + (rows - 1 - i) * g[2], g[2])];
  };
  const hover = async (i, j) => {
    await page.mouse.move(1, 1);
    let [x, y] = await point(i, j);
    const height = page.viewportSize().height;
    if (y < 10 || y > height - 10) {
      await page.evaluate((dy) => window.scrollBy(0, dy), y - height / 2);
      [x, y] = await point(i, j);
    }
    await page.mouse.move(x, y);
    await page.waitForSelector('#tooltip:not([hidden])');
    return page.textContent('#tooltip');
  };
  const visibleMatches = () =>
    page.$$eval('section:not([hidden]) table.matches tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
    );

  it('switches the heatmap, tooltip and best-match table between measures with tabs (mouse and keys)', async function () {
    await open(reportHtml(multi), 'multi.html');
    const tabs = page.locator('.measures [role="tab"]');
    assert.deepEqual(await tabs.allTextContents(), ['CKA', 'RBF CKA', 'dCor']);
    assert.equal(await page.getAttribute('[role="tablist"]', 'aria-label'), 'Measure');
    assert.equal(await page.getAttribute('#measure-tab-0', 'aria-selected'), 'true');
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'cka');
    assert.ok((await hover(2, 1)).endsWith(`CKA${shown(multi.measures.cka[2][1])}`));
    assert.deepEqual(await visibleMatches(), expectedMatches(multi, multi.measures.cka));

    await page.click('#measure-tab-2');
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'dcor');
    assert.equal(await page.getAttribute('#measure-tab-2', 'aria-selected'), 'true');
    assert.equal(await page.getAttribute('#measure-tab-0', 'aria-selected'), 'false');
    assert.ok((await hover(2, 1)).endsWith(`dCor${shown(multi.measures.dcor[2][1])}`));
    assert.deepEqual(await visibleMatches(), expectedMatches(multi, multi.measures.dcor));

    // Keys on the focused tab: ArrowLeft goes to the previous measure, Home/End to the ends.
    await page.focus('#measure-tab-2');
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'measure-tab-1');
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'rbf_cka');
    assert.deepEqual(await visibleMatches(), expectedMatches(multi, multi.measures.rbf_cka));
    await page.keyboard.press('End');
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'dcor');
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'rbf_cka');
    assert.deepEqual(consoleErrors, []);
  });

  it('shows views and, for rbf_cka, both σ in the tooltip and the readout; views beside the labels', async function () {
    // RBF CKA is selected (the previous test); cell (3, 4): head × fc.
    const text = await hover(3, 4);
    assert.equal(
      text,
      `ViThead` +
        `CNNfc` +
        `viewstoken:0 × flatten` +
        `σ123500 × 2 (threshold 0.5)` +
        `RBF CKA${shown(multi.measures.rbf_cka[3][4])}`,
    );
    assert.match(await hover(1, 2), /σ2\.5 × — \(threshold 0\.5\)RBF CKAundefined: layer constant over the data$/);
    // Keyboard: Tab from the selected tab reaches the canvas; the readout says the same.
    await page.focus('#measure-tab-1');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'heatmap-canvas');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowRight');
    assert.equal(
      await page.textContent('#heatmap-live'),
      `ViT blocks.1.${'very_long_name_'.repeat(6)}end (token-mean), CNN layer1 (spatial-mean), σ 3.75 and 0.75: RBF CKA ${shown(multi.measures.rbf_cka[2][1])}`,
    );
    // Switching the measure while the canvas has the focus updates the readout.
    await page.evaluate(() => document.getElementById('measure-tab-0').click());
    await page.focus('#heatmap-canvas');
    assert.ok((await page.textContent('#heatmap-live')).endsWith(`: CKA ${shown(multi.measures.cka[2][1])}`));
    // Labels carry the view (not all are flatten); a long name is shortened there, whole on hover.
    const labels = await page.$eval('#cka-data', (el) => JSON.parse(el.textContent));
    assert.equal(labels.rowLabels[0], 'embed [flatten]');
    assert.equal(labels.colLabels[3], 'pool [flatten]');
    assert.ok(labels.rowLabels[2].includes('…') && labels.rowLabels[2].endsWith(' [token-mean]'), labels.rowLabels[2]);
    await page.evaluate(() => document.activeElement.blur());
    const [x, y] = await point(2, 0);
    const size = Number(await page.getAttribute('#heatmap-canvas', 'data-cell'));
    await page.mouse.move(x - 60, Math.round(y - 0.05 * size + size / 2));
    assert.equal(await page.textContent('#tooltip'), `ViT${mNames1[2]}viewtoken-mean`);
    assert.equal(await page.textContent('td.views1'), 'flatten × 1, token:0 × 2, token-mean × 1');
    assert.ok((await page.textContent('#rbf')).includes('0.5 ×'));
    assert.deepEqual(consoleErrors, []);
  });

  it('takes the first measure when cka is absent, and shows values beyond ±32.767 exactly', async function () {
    const { cka: _drop, ...rest } = multi;
    const noCka = {
      ...rest,
      measures: {
        dcor: multi.measures.dcor,
        wide: grid((i, j) => (i === 0 && j === 0 ? 40.12345 : -1234.5678 * i + j)),
      },
    };
    await open(reportHtml(noCka), 'nocka.html');
    assert.deepEqual(await page.locator('.measures [role="tab"]').allTextContents(), ['dCor', 'wide']);
    assert.equal(await page.getAttribute('#heatmap-canvas', 'data-measure'), 'dcor');
    assert.ok((await hover(0, 0)).endsWith(`dCor${shown(multi.measures.dcor[0][0])}`));
    await page.click('#measure-tab-1');
    assert.ok((await hover(0, 0)).endsWith('wide40.123'));
    assert.ok((await hover(3, 2)).endsWith(`wide${shown(-1234.5678 * 3 + 2)}`));
    const data = await page.$eval('#cka-data', (el) => JSON.parse(el.textContent));
    assert.deepEqual(
      data.measures.map((m) => m.encoding),
      ['i16', 'f64'],
    );
    assert.deepEqual(consoleErrors, []);
  });

  it('keeps a 500 x 400 result with 3 measures to a few MB, interactive within seconds', async function () {
    const rows = 500;
    const cols = 400;
    const mk = (f) => Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => f(i, j)));
    // Values with 5+ digits, so that rounding to what the tooltip shows is exercised.
    const measures = {
      cka: mk((i, j) => Math.sin(i * 0.37 + j * 0.11) ** 2),
      rbf_cka: mk((i, j) => (i === 7 ? null : Math.cos(i * j * 0.001) ** 2)),
      dcor: mk((i, j) => Math.abs(Math.sin(i + 2 * j)) * 0.999),
    };
    const big = {
      model1Name: 'vit_b_16',
      model2Name: 'resnet50',
      model1Layers: Array.from({ length: rows }, (_, i) => `encoder.layers.${i}.mlp.fc${(i % 2) + 1}`),
      model2Layers: Array.from({ length: cols }, (_, j) => `layer${(j % 4) + 1}.${j}.conv2`),
      model1Views: Array.from({ length: rows }, (_, i) => (i % 3 ? 'token:0' : 'token-mean')),
      model2Views: Array.from({ length: cols }, () => 'spatial-mean'),
      rbf: { threshold: 0.5, sigma1: Array(rows).fill(1.5), sigma2: Array(cols).fill(2.5) },
      dataset1Name: 'imagenet',
      dataset2Name: 'imagenet',
      samples: 10000,
      batches: 40,
      cka: measures.cka,
      measures,
    };
    const html = reportHtml(big);
    const bytes = Buffer.byteLength(html);
    const file = path.join(dir, 'huge.html');
    fs.writeFileSync(file, html);
    await page?.close();
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    const t0 = Date.now();
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await page.waitForSelector('#heatmap-canvas[data-ready]');
    const drawn = Date.now() - t0;
    const first = await hover(250, 200);
    const interactive = Date.now() - t0;
    await page.click('#measure-tab-1');
    const t1 = Date.now();
    const switched = await hover(123, 45);
    const switchMs = Date.now() - t1;
    console.log(
      `      500 x 400, 3 measures: ${(bytes / 1e6).toFixed(2)} MB, drawn in ${drawn} ms, ` +
        `first hover answered at ${interactive} ms, measure switch + hover ${switchMs} ms`,
    );
    assert.ok(bytes < 4e6, `${bytes} bytes`);
    assert.ok(interactive < 5000, `${interactive} ms`);
    assert.ok(
      first.includes(big.model1Layers[250]) &&
        first.includes(big.model2Layers[200]) &&
        first.endsWith(`CKA${shown(measures.cka[250][200])}`),
      first,
    );
    assert.ok(first.includes('viewstoken:0 × spatial-mean'), first);
    assert.ok(switched.endsWith(`RBF CKA${shown(measures.rbf_cka[123][45])}`), switched);
    assert.match(await hover(7, 3), /RBF CKAundefined/);
    for (const [i, j] of [
      [0, 0],
      [499, 399],
      [317, 12],
    ]) {
      assert.ok((await hover(i, j)).endsWith(`RBF CKA${shown(measures.rbf_cka[i][j])}`), `${i},${j}`);
    }
    // The keyboard from the top-left cell: 3 right, 2 down, with the dCor measure.
    await page.click('#measure-tab-2');
    await page.focus('#heatmap-canvas');
    for (const key of ['ArrowRight', 'ArrowRight', 'ArrowRight', 'ArrowDown', 'ArrowDown'])
      await page.keyboard.press(key);
    assert.equal(
      await page.textContent('#heatmap-live'),
      `vit_b_16 ${big.model1Layers[497]} (token:0), resnet50 ${big.model2Layers[3]} (spatial-mean): dCor ${shown(measures.dcor[497][3])}`,
    );
    assert.deepEqual(consoleErrors, []);
  });
});

describe('reportHtml arguments', function () {
  it('rejects a bad result or bad info', function () {
    assert.throws(() => reportHtml({ ...result, cka: [[1]] }), { name: 'TypeError', code: 'ERR_INVALID_RESULT' });
    assert.throws(() => reportHtml(result, { model1: 'a.pt' }), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => reportHtml(result, { generatedAt: 5 }), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => reportHtml(result, { elapsedSeconds: -1 }), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => reportHtml(result, { heatmap: { colormap: 'jet' } }), { code: 'ERR_INVALID_ARG' });
  });

  it('rejects bad measures, views and rbf fields, naming the field', function () {
    const bad = (patch, pattern) =>
      assert.throws(() => reportHtml({ ...multi, ...patch }), {
        name: 'TypeError',
        code: 'ERR_INVALID_RESULT',
        message: pattern,
      });
    bad({ measures: [] }, /measures/);
    bad({ measures: {} }, /measures is empty/);
    bad({ measures: { ...multi.measures, dcor: multi.measures.dcor.slice(1) } }, /measures\.dcor has 3 rows/);
    bad(
      { measures: { ...multi.measures, dcor: grid(() => 0).map((r, i) => (i === 2 ? r.slice(1) : r)) } },
      /measures\.dcor\[2\] has 4 values/,
    );
    bad(
      { measures: { ...multi.measures, rbf_cka: grid((i, j) => (i + j === 3 ? Number.NaN : 0)) } },
      /measures\.rbf_cka\[0\]\[3\]/,
    );
    bad({ model1Views: ['flatten'] }, /model1Views.*4 view names|4 view names .* model1Views/);
    bad({ model2Views: mNames2.map(() => 3) }, /model2Views/);
    bad({ rbf: { threshold: 0.5, sigma1: [1, 2, 3], sigma2: multi.rbf.sigma2 } }, /rbf\.sigma1/);
    bad({ rbf: { threshold: 0.5, sigma1: multi.rbf.sigma1, sigma2: [1, -2, 1, 1, 1] } }, /rbf\.sigma2\[1\]/);
    bad({ rbf: { sigma1: multi.rbf.sigma1, sigma2: multi.rbf.sigma2 } }, /rbf/);
    const { cka: _cka, measures: _measures, ...neither } = multi;
    assert.throws(() => reportHtml(neither), { code: 'ERR_INVALID_RESULT', message: /cka/ });
    // An older result without measures, views or rbf is one CKA heatmap, all views flatten.
    const html = reportHtml(result);
    const data = JSON.parse(html.match(/<script type="application\/json" id="cka-data">(.*?)<\/script>/s)[1]);
    assert.deepEqual(
      data.measures.map((m) => m.id),
      ['cka'],
    );
    assert.equal(data.model1Views, null);
    assert.doesNotMatch(html, /role="tablist"/);
  });
});

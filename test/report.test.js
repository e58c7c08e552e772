'use strict';
// The HTML report in a real browser (Chromium through playwright-core), with the network cut off.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { launchChromium } = require('./helpers/browser');
const { reportHtml, bestMatches } = require('../dist/report');

/** The best match of each row written plainly: highest value, first on ties, null for an all-null row. */
function expectedMatches(result) {
  return result.cka.map((row, i) => {
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
    return page;
  }

  const tooltipFor = async (i, j) => {
    await page.hover(`rect.tcka-cell[data-row="${i}"][data-col="${j}"]`);
    await page.waitForSelector('#tooltip:not([hidden])', { state: 'visible' });
    return page.textContent('#tooltip');
  };

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
    const box = await page.locator('rect.tcka-cell[data-row="5"][data-col="6"]').boundingBox();
    await page.mouse.move(box.x + 2, box.y + 2);
    const at = await page.locator('#tooltip').boundingBox();
    assert.ok(Math.abs(at.x - (box.x + 16)) < 2 && Math.abs(at.y - (box.y + 16)) < 2, JSON.stringify(at));
    await page.mouse.move(1, 1);
    assert.equal(await page.isHidden('#tooltip'), true);
  });

  it('lets the keyboard move between cells with the tooltip', async function () {
    const start = page.locator('rect.tcka-cell[tabindex="0"]');
    assert.equal(await start.count(), 1);
    assert.equal(await start.getAttribute('data-row'), '5'); // the top-left cell
    assert.equal(await start.getAttribute('data-col'), '0');
    await start.focus();
    assert.match(await page.textContent('#tooltip'), /fc/);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    const focused = await page.evaluate(() => [
      document.activeElement.getAttribute('data-row'),
      document.activeElement.getAttribute('data-col'),
    ]);
    assert.deepEqual(focused, ['4', '1']);
    const text = await page.textContent('#tooltip');
    assert.ok(text.includes('a & b') && text.includes('layer1.0') && text.includes(cka[4][1].toFixed(3)), text);
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

  it('draws the heatmap inline, scaled to the page, with nothing fetched and no console errors', async function () {
    const cells = await page.locator('figure svg rect.tcka-cell').count();
    assert.equal(cells, 6 * 7);
    const { svgWidth, pageWidth } = await page.evaluate(() => ({
      svgWidth: document.querySelector('figure svg').getBoundingClientRect().width,
      pageWidth: document.documentElement.clientWidth,
    }));
    assert.ok(svgWidth > 200 && svgWidth <= pageWidth, `${svgWidth} in ${pageWidth}`);
    await page.setViewportSize({ width: 360, height: 700 });
    const narrow = await page.evaluate(() => ({
      svg: document.querySelector('figure svg').getBoundingClientRect().width,
      scroll: document.documentElement.scrollWidth,
    }));
    assert.ok(narrow.svg <= 360 && narrow.scroll <= 360, JSON.stringify(narrow));
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.doesNotMatch(html, /\b(src|href)=|https?:\/\/(?!www\.w3\.org\/2000\/svg)|@import|url\((?!#)/);
    assert.deepEqual(requests, []);
    assert.deepEqual(consoleErrors, []);
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

describe('reportHtml arguments', function () {
  it('rejects a bad result or bad info', function () {
    assert.throws(() => reportHtml({ ...result, cka: [[1]] }), { name: 'TypeError', code: 'ERR_INVALID_RESULT' });
    assert.throws(() => reportHtml(result, { model1: 'a.pt' }), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => reportHtml(result, { generatedAt: 5 }), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
    assert.throws(() => reportHtml(result, { elapsedSeconds: -1 }), { code: 'ERR_INVALID_ARG' });
  });
});

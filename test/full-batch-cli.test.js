'use strict';
// The full-batch mode's API and CLI (docs/full-batch.md): every bad option
// and flag gives its code and names itself, the streaming mode refuses the
// full-batch-only measures, --memory-budget sizes, the progress phases, and
// the CLI end to end (JSON, CSV, SVG, HTML, plot) on the measures fixture.
// The numerical checks of each measure are in test/full-batch.test.js.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel } = require('..');
const { parseByteSize } = require('../dist/cli/args');
const { Progress } = require('../dist/cli/progress');
const { pathToFileURL } = require('node:url');
const { reportHtml } = require('../dist/report');
const { launchChromium } = require('./helpers/browser');
const { hsic1, warningSink, writeNpy } = require('./helpers');

const REF = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'measures', 'measures.json'), 'utf8'));
const MODEL = path.join(__dirname, 'fixtures', 'measures', 'features_scripted.pt');
const CLI = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const ALL = [
  'cka',
  'linear_cka_biased',
  'rbf_cka',
  'rbf_cka_biased',
  'dcor',
  'cca_rho',
  'cca_r2',
  'svcca',
  'procrustes',
  'rsa',
  'mknn',
];
const FULL_ONLY = ['linear_cka_biased', 'rbf_cka_biased', 'cca_rho', 'cca_r2', 'svcca', 'procrustes', 'rsa', 'mknn'];

const run = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
const lastLine = (text) => text.trim().split('\n').pop();

/** The demo data (100 x 10 each) as batches of `size` for the `id` layer (its features are its input). */
function batchesOf(rows, size) {
  const out = [];
  for (let start = 0; start < rows.length; start += size) {
    const part = rows.slice(start, start + size);
    out.push({ data: Float32Array.from(part.flat()), shape: [part.length, part[0].length] });
  }
  return out;
}

/** Float64 linear Gram of the rows (n x d). */
function gram(rows) {
  const n = rows.length;
  const k = new Float64Array(n * n);
  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j < n; j += 1) {
      let s = 0;
      for (let c = 0; c < rows[i].length; c += 1) s += rows[i][c] * rows[j][c];
      k[i * n + j] = s;
    }
  }
  return k;
}

/** ⟨HKH, HLH⟩ / (‖HKH‖ ‖HLH‖), plainly in float64. */
function biasedCka(k, l, n) {
  const centre = (m) => {
    const row = new Float64Array(n);
    let all = 0;
    for (let i = 0; i < n; i += 1) {
      for (let j = 0; j < n; j += 1) row[i] += m[i * n + j] / n;
      all += row[i] / n;
    }
    return m.map((v, p) => v - row[Math.floor(p / n)] - row[p % n] + all);
  };
  const a = centre(k);
  const b = centre(l);
  const dot = (x, y) => x.reduce((s, v, p) => s + v * y[p], 0);
  return dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
}

/** A CKA of the identity model `model` with itself on its `id` layer. */
const identityCka = (model, options) =>
  new CKA(model, model, {
    model1Name: 'm1',
    model2Name: 'm2',
    model1Layers: ['id'],
    model2Layers: ['id'],
    ...options,
  });

describe('full-batch options and flags', function () {
  this.timeout(120000);
  let model;
  before(async () => {
    model = await loadModel(MODEL);
  });
  after(() => model?.dispose());

  it('refuses every bad fullBatch option with ERR_INVALID_ARG naming it and its value', () => {
    const cases = [
      [3, /options\.fullBatch to be an integer of at least 4 .* received 3/],
      [4.5, /options\.fullBatch to be an integer of at least 4 .* received 4\.5/],
      [0, /options\.fullBatch to be an integer of at least 4/],
      [-10, /options\.fullBatch to be an integer of at least 4/],
      [Number.NaN, /options\.fullBatch to be an integer of at least 4/],
      ['100', /options\.fullBatch to be a sample count or an object/],
      [null, /options\.fullBatch to be a sample count or an object/],
      [[100], /options\.fullBatch to be a sample count or an object/],
      [{}, /options\.fullBatch\.samples to be an integer of at least 4 .* received undefined/],
      [{ samples: 2 }, /options\.fullBatch\.samples to be an integer of at least 4 .* received 2/],
      [
        { samples: 100, svccaVariance: 0 },
        /options\.fullBatch\.svccaVariance to be a fraction in \(0, 1\] .* received 0/,
      ],
      [{ samples: 100, svccaVariance: 1.5 }, /options\.fullBatch\.svccaVariance .* received 1\.5/],
      [{ samples: 100, svccaVariance: '0.9' }, /options\.fullBatch\.svccaVariance .* received/],
      [{ samples: 100, mknnK: 0 }, /options\.fullBatch\.mknnK to be a positive integer but received 0/],
      [{ samples: 100, mknnK: 2.5 }, /options\.fullBatch\.mknnK to be a positive integer but received 2\.5/],
      [{ samples: 100, mknnK: 100 }, /options\.fullBatch\.mknnK to be less than the 100 samples .* received 100/],
      [{ samples: 100, ccaRidge: -0.1 }, /options\.fullBatch\.ccaRidge to be a finite number >= 0 but received -0\.1/],
      [{ samples: 100, ccaRidge: Infinity }, /options\.fullBatch\.ccaRidge .* received Infinity/],
      [{ samples: 100, memoryBudget: 0 }, /options\.fullBatch\.memoryBudget to be a positive number of bytes .* 0/],
      [{ samples: 100, memoryBudget: -1 }, /options\.fullBatch\.memoryBudget .* received -1/],
      [{ samples: 100, memoryBudget: Infinity }, /options\.fullBatch\.memoryBudget .* received Infinity/],
      [{ samples: 100, ridge: 1 }, /options\.fullBatch has no option 'ridge'/],
    ];
    for (const [fullBatch, message] of cases) {
      assert.throws(
        () => identityCka(model, { fullBatch }),
        { code: 'ERR_INVALID_ARG', message },
        `fullBatch ${String(fullBatch)}`,
      );
    }
  });

  it('accepts good fullBatch options and every measure in the full-batch mode', () => {
    identityCka(model, { fullBatch: 100 });
    identityCka(model, { fullBatch: { samples: 4, svccaVariance: 1, mknnK: 3, ccaRidge: 0, memoryBudget: 2 ** 30 } });
    identityCka(model, { fullBatch: 100, measures: ALL });
  });

  it('refuses the full-batch-only measures in the streaming mode, saying to set fullBatch', () => {
    for (const id of FULL_ONLY) {
      assert.throws(() => identityCka(model, { measures: ['cka', id] }), {
        name: 'RangeError',
        code: 'ERR_INVALID_ARG',
        message: new RegExp(`options\\.measures names '${id}', a full-batch measure: set fullBatch`),
      });
    }
    assert.throws(() => identityCka(model, { fullBatch: 100, measures: ['cka', 'nosuch'] }), {
      code: 'ERR_INVALID_ARG',
      message: /options\.measures to hold cka, rbf_cka, dcor, linear_cka_biased, .*mknn but received "nosuch"/,
    });
    assert.throws(() => identityCka(model, { fullBatch: 100, measures: ['svcca', 'svcca'] }), {
      code: 'ERR_INVALID_ARG',
      message: /names 'svcca' twice/,
    });
  });

  it('refuses checkpoint and distributed in the full-batch mode', async () => {
    const data = batchesOf(REF.demo.X, 10);
    await assert.rejects(
      identityCka(model, { fullBatch: 100 }).compare(data, undefined, { checkpoint: { path: 'x.ckpt' } }),
      {
        code: 'ERR_INVALID_ARG',
        message: /options\.checkpoint is not available in the full-batch mode/,
      },
    );
    await assert.rejects(
      identityCka(model, { fullBatch: 100 }).compare(data, undefined, { distributed: { worldSize: 2, rank: 0 } }),
      {
        code: 'ERR_INVALID_ARG',
        message: /options\.distributed is not available in the full-batch mode/,
      },
    );
  });

  it('parses --memory-budget sizes in bytes or with K, M, G, T (base 1024)', () => {
    assert.equal(parseByteSize('1024'), 1024);
    assert.equal(parseByteSize('1.5K'), 1536);
    assert.equal(parseByteSize('512M'), 512 * 2 ** 20);
    assert.equal(parseByteSize('8G'), 8 * 2 ** 30);
    assert.equal(parseByteSize('8g'), 8 * 2 ** 30);
    assert.equal(parseByteSize('8GiB'), 8 * 2 ** 30);
    assert.equal(parseByteSize('8GB'), 8 * 2 ** 30);
    assert.equal(parseByteSize(' 2T '), 2 * 2 ** 40);
    assert.equal(parseByteSize('100B'), 100);
    for (const bad of ['', 'G', '0', '0G', '-1G', '8X', '1e9', '8 G B', 'eight'])
      assert.equal(parseByteSize(bad), null, bad);
  });

  it('checks every full-batch flag before reading anything, naming the flag (exit 2)', () => {
    const base = ['compare', 'nosuch1.pt', 'nosuch2.pt', '--data', 'nosuch.npy'];
    const cases = [
      [['--full-batch', '3'], /Expected an integer >= 4 for --full-batch but received '3'/],
      [['--full-batch', 'lots'], /--full-batch but received 'lots'/],
      [['--full-batch', '100', '--memory-budget', '8X'], /for --memory-budget but received '8X'/],
      [['--full-batch', '100', '--memory-budget', '0'], /for --memory-budget but received '0'/],
      [['--full-batch', '100', '--svcca-variance', '0'], /Expected a fraction in \(0, 1\] for --svcca-variance/],
      [['--full-batch', '100', '--svcca-variance', '1.01'], /--svcca-variance but received '1\.01'/],
      [['--full-batch', '100', '--mknn-k', '0'], /Expected an integer >= 1 for --mknn-k but received '0'/],
      [['--full-batch', '100', '--mknn-k', '100'], /--mknn-k to be less than --full-batch 100 but received '100'/],
      [['--full-batch', '100', '--cca-ridge=-1'], /Expected a number >= 0 for --cca-ridge but received '-1'/],
      [['--full-batch', '100', '--cca-ridge', 'x'], /--cca-ridge but received 'x'/],
      [['--cca-ridge', '0.1'], /--cca-ridge is a setting of the full-batch mode: it needs --full-batch N/],
      [['--memory-budget', '8G'], /--memory-budget is a setting of the full-batch mode/],
      [['--full-batch', '100', '--checkpoint', 'x.ckpt'], /--full-batch needs no --checkpoint/],
    ];
    for (const [flags, message] of cases) {
      const { status, stderr } = run(...base, ...flags);
      assert.equal(status, 2, `${flags.join(' ')}: ${stderr}`);
      assert.match(lastLine(stderr), message);
      assert.match(lastLine(stderr), /\[ERR_USAGE\]$/);
    }
  });

  it('lists the full-batch flags and measures in compare --help', () => {
    const { status, stdout } = run('compare', '--help');
    assert.equal(status, 0);
    for (const flag of [
      '--full-batch N',
      '--svcca-variance F',
      '--mknn-k K',
      '--cca-ridge E',
      '--memory-budget SIZE',
    ]) {
      assert.ok(stdout.includes(flag), flag);
    }
    for (const id of FULL_ONLY) assert.ok(stdout.includes(id), id);
  });

  it('refuses a full-batch-only measure without --full-batch (CLI, exit 1)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-full-batch-flags-'));
    try {
      writeNpy(path.join(dir, 'X.npy'), Float32Array.from(REF.demo.X.flat()), [100, 10]);
      const args = ['compare', MODEL, MODEL, '--data', path.join(dir, 'X.npy'), '--layers1', 'id', '--layers2', 'id'];
      const { status, stderr } = run(...args, '--measures', 'cka,svcca');
      assert.equal(status, 1, stderr);
      assert.match(lastLine(stderr), /names 'svcca', a full-batch measure: set fullBatch \(--full-batch N\)/);
      assert.match(lastLine(stderr), /\[ERR_INVALID_ARG\]$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shows the reading, forward and measures phases in the progress line', () => {
    let clock = 0;
    const lines = [];
    const stream = { isTTY: false, write: (text) => lines.push(text) };
    const progress = new Progress(stream, { now: () => clock, interval: 5 });
    progress.phase('reading', 32, 100);
    clock += 1000;
    progress.phase('reading', 64, 100); // same phase within the interval: not printed
    progress.phase('forward', 1, 4);
    clock += 6000;
    progress.phase('forward', 3, 4);
    progress.phase('measures', 10, 40);
    assert.deepEqual(
      lines.map((line) => line.replace(/, elapsed .*\n$/, '')),
      [
        'reading 32/100 samples (32%)',
        'forward 1/4 forward passes (25%)',
        'forward 3/4 forward passes (75%)',
        'measures 10/40 (25%)',
      ],
    );
  });
});

describe('full-batch report', function () {
  this.timeout(120000);
  let browser;
  let dir;
  before(async () => {
    browser = await launchChromium();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-full-batch-report-'));
  });
  after(async () => {
    await browser?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("shows a null cell's reason in its tooltip", async () => {
    const result = {
      model1Name: 'a',
      model2Name: 'b',
      model1Layers: ['conv', 'fc'],
      model2Layers: ['conv', 'fc'],
      dataset1Name: 'data1',
      dataset2Name: 'data1',
      measures: {
        cca_rho: [
          [null, 0.25],
          [0.5, 0.75],
        ],
        rbf_cka_biased: [
          [0.1, null],
          [0.3, 0.4],
        ],
      },
      rbf: { threshold: 0.5, sigma1: [1, 2], sigma2: [3, null] },
      nullReasons: {
        cca_rho: [
          ['rank_deficient', null],
          [null, null],
        ],
        rbf_cka_biased: [
          [null, 'no_sigma'],
          [null, null],
        ],
      },
      fullBatch: 50,
      samples: 50,
      batches: 1,
    };
    const html = reportHtml(result);
    assert.match(html, /Full-batch \(50 samples\) mean canonical correlation, biased RBF-kernel CKA/);
    const file = path.join(dir, 'report.html');
    fs.writeFileSync(file, html);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    await page.waitForSelector('#heatmap-canvas[data-ready]');
    const tooltipFor = async (i, j) => {
      const box = await page.locator('#heatmap-canvas').boundingBox();
      const geo = await page.$eval('#heatmap-canvas', (c) => ({
        x0: Number(c.dataset.x0),
        y0: Number(c.dataset.y0),
        cell: Number(c.dataset.cell),
      }));
      await page.mouse.move(1, 1);
      await page.mouse.move(box.x + geo.x0 + (j + 0.5) * geo.cell, box.y + geo.y0 + (2 - 1 - i + 0.5) * geo.cell);
      await page.waitForSelector('#tooltip:not([hidden])', { state: 'visible' });
      return page.textContent('#tooltip');
    };
    assert.match(await tooltipFor(0, 0), /null: rank_deficient \(layer fills the sample space: d >= N - 1\)/);
    assert.match(await tooltipFor(1, 1), /0\.750/);
    await page.click('.measures button:nth-child(2)');
    const tip = await tooltipFor(0, 1);
    assert.match(tip, /null: no_sigma \(the median squared distance is 0/);
    assert.match(tip, /σ/);
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('full-batch compare() and CLI end to end', function () {
  this.timeout(300000);
  let dir;
  let model;
  const X = REF.demo.X;
  const Y = REF.demo.Y;
  before(async function () {
    model = await loadModel(MODEL);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-full-batch-'));
    writeNpy(path.join(dir, 'X.npy'), Float32Array.from(X.flat()), [100, 10]);
    writeNpy(path.join(dir, 'Y.npy'), Float32Array.from(Y.flat()), [100, 10]);
  });
  after(() => {
    model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('compares the first N samples over batches of another size, with progress, then refuses a second compare()', async () => {
    const { warnings, onWarning } = warningSink();
    const cka = identityCka(model, { fullBatch: 90, measures: ['cka', 'linear_cka_biased'], onWarning });
    const phases = new Set();
    const summary = await cka.compare(batchesOf(X, 32), batchesOf(Y, 32), {
      onProgress: (p) => p.fullBatch && phases.add(p.fullBatch.phase),
    });
    assert.equal(summary.samples, 90);
    assert.equal(summary.batches, 3);
    assert.ok(phases.has('reading'));
    const result = cka.export();
    assert.equal(result.fullBatch, 90);
    assert.equal(result.samples, 90);
    assert.equal(result.batches, 1);
    assert.deepEqual(Object.keys(result.measures), ['cka', 'linear_cka_biased']);
    assert.deepEqual(result.cka, result.measures.cka);
    const n = 90;
    const k = gram(X.slice(0, n));
    const l = gram(Y.slice(0, n));
    const debiased = hsic1(k, l, n) / Math.sqrt(hsic1(k, k, n) * hsic1(l, l, n));
    assert.ok(Math.abs(result.measures.cka[0][0] - debiased) < 1e-5, `${result.measures.cka[0][0]} vs ${debiased}`);
    const biased = biasedCka(k, l, n);
    assert.ok(Math.abs(result.measures.linear_cka_biased[0][0] - biased) < 1e-5);
    assert.deepEqual(result.fullBatchInfo.features, { model1: [10], model2: [10] });
    assert.equal(result.nullReasons, undefined);
    const stats = cka.fullBatchStats();
    assert.equal(stats.chunks, 3);
    assert.ok(stats.forwards >= 3);
    assert.ok(stats.estimateBytes > 0 && stats.budgetBytes > 0);
    assert.deepEqual(
      warnings.map((w) => w.code),
      [],
    );
    await assert.rejects(cka.compare(batchesOf(X, 32)), {
      code: 'ERR_INVALID_ARG',
      message: /one set per object/,
    });
  });

  it('compares what there is when the data is short (TORCH_CKA_FULL_BATCH_SHORT), and needs 4 samples', async () => {
    const { warnings, onWarning } = warningSink();
    const cka = identityCka(model, { fullBatch: 1000, onWarning });
    const summary = await cka.compare(batchesOf(X, 64));
    assert.equal(summary.samples, 100);
    assert.equal(cka.export().fullBatch, 100);
    const short = warnings.find((w) => w.code === 'TORCH_CKA_FULL_BATCH_SHORT');
    assert.match(short.message, /the data has only 100 samples; the full-batch set has 100, not 1000/);
    await assert.rejects(identityCka(model, { fullBatch: 10 }).compare(batchesOf(X.slice(0, 3), 3)), {
      code: 'ERR_NO_DATA',
    });
  });

  it('takes a user sigma per layer for the rbf measures (model1Sigmas, model2Sigmas)', async () => {
    const n = 100;
    // exp(-d²/(2σ²)) from the float64 Gram, then the biased CKA of the two kernels.
    const rbf = (k, sigma) =>
      k.map((_, p) => {
        const i = Math.floor(p / n);
        const j = p % n;
        return Math.exp(-Math.max(0, k[i * n + i] + k[j * n + j] - 2 * k[p]) / (2 * sigma * sigma));
      });
    const k = gram(X);
    const l = gram(Y);
    const cka = identityCka(model, {
      fullBatch: n,
      measures: ['rbf_cka_biased', 'rbf_cka'],
      model1Sigmas: { id: 1.5 },
      model2Sigmas: { id: 4 },
    });
    await cka.compare(batchesOf(X, 30), batchesOf(Y, 30));
    const result = cka.export();
    assert.deepEqual(result.rbf, { threshold: 0.5, sigma1: [1.5], sigma2: [4] });
    const [kr, lr] = [rbf(k, 1.5), rbf(l, 4)];
    const biased = biasedCka(kr, lr, n);
    assert.ok(
      Math.abs(result.measures.rbf_cka_biased[0][0] - biased) < 1e-6,
      `${result.measures.rbf_cka_biased[0][0]} vs ${biased}`,
    );
    const debiased = hsic1(kr, lr, n) / Math.sqrt(hsic1(kr, kr, n) * hsic1(lr, lr, n));
    assert.ok(
      Math.abs(result.measures.rbf_cka[0][0] - debiased) < 1e-6,
      `${result.measures.rbf_cka[0][0]} vs ${debiased}`,
    );
    // σ from the data on one side only: model 2's is 0.5 √(median d²), not the user's 4.
    const half = identityCka(model, { fullBatch: n, measures: ['rbf_cka_biased'], model1Sigmas: { id: 1.5 } });
    await half.compare(batchesOf(X, 30), batchesOf(Y, 30));
    const d2 = [];
    for (let p = 0; p < n * n; p += 1) {
      const i = Math.floor(p / n);
      const j = p % n;
      d2.push(Math.max(0, l[i * n + i] + l[j * n + j] - 2 * l[p]));
    }
    d2.sort((a, b) => a - b);
    const median = (d2[(n * n) / 2 - 1] + d2[(n * n) / 2]) / 2;
    const { sigma1, sigma2 } = half.export().rbf;
    assert.deepEqual(sigma1, [1.5]);
    assert.ok(Math.abs(sigma2[0] - 0.5 * Math.sqrt(median)) < 1e-5 * sigma2[0], `${sigma2[0]}`);
  });

  it('refuses batches of different sizes in the two sources', async () => {
    await assert.rejects(identityCka(model, { fullBatch: 100 }).compare(batchesOf(X, 10), batchesOf(Y, 20)), {
      code: 'ERR_BATCH_SIZE_MISMATCH',
      message: /Batch 0 of data1 has 10 samples but batch 0 of data2 has 20/,
    });
  });

  it('marks CCA cells of a layer that fills the sample space, warns once per model, and a ridge fills them', async () => {
    const { warnings, onWarning } = warningSink();
    // 8 samples of 10 features: d >= N - 1.
    const cka = identityCka(model, { fullBatch: 8, measures: ['cca_rho', 'cca_r2', 'procrustes'], onWarning });
    await cka.compare(batchesOf(X, 4), batchesOf(Y, 4));
    const result = cka.export();
    assert.equal(result.measures.cca_rho[0][0], null);
    assert.equal(result.measures.cca_r2[0][0], null);
    assert.equal(typeof result.measures.procrustes[0][0], 'number');
    assert.deepEqual(result.nullReasons, { cca_rho: [['rank_deficient']], cca_r2: [['rank_deficient']] });
    assert.deepEqual(result.fullBatchInfo.fills, { model1: [true], model2: [true] });
    const ranks = warnings.filter((w) => w.code === 'TORCH_CKA_RANK_DEFICIENT');
    assert.deepEqual(
      ranks.map((w) => w.model),
      ['model1', 'model2'],
    );
    assert.equal(ranks[0].layers[0].name, 'id');
    assert.match(ranks[0].message, /its cca_rho, cca_r2 cells are null; set ccaRidge \(--cca-ridge\) for ridge CCA/);

    const { warnings: none, onWarning: quiet } = warningSink();
    const ridge = identityCka(model, {
      fullBatch: { samples: 8, ccaRidge: 0.1 },
      measures: ['cca_rho', 'cca_r2'],
      onWarning: quiet,
    });
    await ridge.compare(batchesOf(X, 4), batchesOf(Y, 4));
    const filled = ridge.export();
    assert.equal(typeof filled.measures.cca_rho[0][0], 'number');
    assert.equal(filled.nullReasons, undefined);
    assert.equal(filled.fullBatchInfo.ccaRidge, 0.1);
    assert.equal(none.filter((w) => w.code === 'TORCH_CKA_RANK_DEFICIENT').length, 0);
  });

  it('rejects with an AbortError when the signal fires', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await assert.rejects(
      identityCka(model, { fullBatch: 100 }).compare(batchesOf(X, 10), undefined, { signal: controller.signal }),
      {
        name: 'AbortError',
        code: 'ABORT_ERR',
      },
    );
  });

  const cliBase = () => [
    'compare',
    MODEL,
    MODEL,
    '--data',
    path.join(dir, 'X.npy'),
    '--data2',
    path.join(dir, 'Y.npy'),
    '--batch-size',
    '32',
    '--layers1',
    'id',
    '--layers2',
    'id',
  ];

  it('writes JSON, one CSV and SVG per measure, and the HTML report; plot reads the file', () => {
    const out = path.join(dir, 'results.json');
    const csv = path.join(dir, 'm.csv');
    const svg = path.join(dir, 'm.svg');
    const html = path.join(dir, 'report.html');
    const { status, stderr, stdout } = run(
      ...cliBase(),
      '--full-batch',
      '100',
      '--measures',
      ALL.join(','),
      '--mknn-k',
      '5',
      '--memory-budget',
      '1G',
      '--out',
      out,
      '--csv',
      csv,
      '--plot',
      svg,
      '--report',
      html,
    );
    assert.equal(status, 0, stderr);
    assert.match(stdout, /full batch: the first 100 samples/);
    const results = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(results.fullBatch, 100);
    assert.equal(results.samples, 100);
    assert.deepEqual(Object.keys(results.measures), ALL);
    for (const id of ALL) {
      const value = results.measures[id][0][0];
      assert.ok(typeof value === 'number' && value >= -1 && value <= 1 + 1e-9, `${id}: ${value}`);
    }
    assert.equal(results.fullBatchInfo.mknnK, 5);
    assert.equal(results.fullBatchInfo.svccaVariance, 0.99);
    assert.deepEqual(results.fullBatchInfo.ranks, { model1: [10], model2: [10] });
    assert.equal(results.cli.fullBatch.chunks, 4);
    assert.equal(results.cli.fullBatch.budgetBytes, 2 ** 30);
    const k = gram(X);
    const l = gram(Y);
    assert.ok(Math.abs(results.measures.linear_cka_biased[0][0] - biasedCka(k, l, 100)) < 1e-5);
    for (const id of ALL) {
      const file = id === 'cka' ? csv : path.join(dir, `m.${id}.csv`);
      const lines = fs.readFileSync(file, 'utf8').trim().split('\r\n');
      assert.equal(lines.length, 2, id);
      assert.equal(Number(lines[1].split(',')[1]), results.measures[id][0][0], id);
      assert.ok(fs.existsSync(id === 'cka' ? svg : path.join(dir, `m.${id}.svg`)), id);
    }
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /Full-batch \(100 samples\)/);
    for (const id of ALL) assert.ok(page.includes(`"id":"${id}"`), id);

    const plotted = path.join(dir, 'svcca.svg');
    const plot = run('plot', out, '--out', plotted, '--measure', 'svcca');
    assert.equal(plot.status, 0, plot.stderr);
    assert.match(fs.readFileSync(plotted, 'utf8'), /^<\?xml[^>]*>\s*<svg/);
    const again = path.join(dir, 'again.html');
    assert.equal(run('plot', out, '--out', again).status, 0);
    assert.match(fs.readFileSync(again, 'utf8'), /Full-batch/);
  });

  it('leaves null cells empty in the CSV, gives their reason in the report and warns (CLI)', () => {
    const out = path.join(dir, 'deficient.json');
    const csv = path.join(dir, 'deficient.csv');
    const html = path.join(dir, 'deficient.html');
    const { status, stderr } = run(
      ...cliBase(),
      '--full-batch',
      '8',
      '--measures',
      'cca_rho,rsa',
      '--out',
      out,
      '--csv',
      csv,
      '--report',
      html,
    );
    assert.equal(status, 0, stderr);
    assert.match(stderr, /TORCH_CKA_RANK_DEFICIENT/);
    const results = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.deepEqual(results.nullReasons, { cca_rho: [['rank_deficient']] });
    const row = fs.readFileSync(csv, 'utf8').trim().split('\r\n')[1];
    assert.equal(row, 'id,');
    const page = fs.readFileSync(html, 'utf8');
    assert.ok(page.includes('"codes":["rank_deficient"]'));
    assert.ok(page.includes('layer fills the sample space: d >= N - 1'));
  });

  it('--limit comes before --full-batch: the set is the first samples of the limited data', () => {
    const out = path.join(dir, 'limited.json');
    const { status, stderr } = run(
      ...cliBase(),
      '--limit',
      '60',
      '--full-batch',
      '80',
      '--measures',
      'linear_cka_biased',
      '--out',
      out,
    );
    assert.equal(status, 0, stderr);
    assert.match(stderr, /TORCH_CKA_FULL_BATCH_SHORT/);
    const result = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(result.fullBatch, 60);
    const expected = biasedCka(gram(X.slice(0, 60)), gram(Y.slice(0, 60)), 60);
    assert.ok(Math.abs(result.measures.linear_cka_biased[0][0] - expected) < 1e-5);
  });

  it('fails with ERR_MEMORY_BUDGET naming the estimate when the budget is too small', () => {
    const { status, stderr } = run(...cliBase(), '--full-batch', '100', '--measures', 'svcca', '--memory-budget', '1K');
    assert.equal(status, 1, stderr);
    assert.match(lastLine(stderr), /The full-batch comparison of 100 samples needs about .* but the memory budget is/);
    assert.match(lastLine(stderr), /\[ERR_MEMORY_BUDGET\]$/);
  });
});

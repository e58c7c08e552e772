'use strict';
// Measures beyond linear CKA (rbf_cka, dcor) against float64 numpy references
// computed from the features (test/fixtures/generate/make-measure-fixtures.py).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel } = require('..');
const { spawnSync } = require('node:child_process');
const { fixture, randomBatches, warningSink, writeNpy } = require('./helpers');

const REF = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'measures', 'measures.json'), 'utf8'));
const featuresModel = (kind) => loadModel(path.join(__dirname, 'fixtures', 'measures', `features_${kind}.pt`));
const ALL = ['cka', 'rbf_cka', 'dcor'];
// float32 Grams and float32 inputs: the kernels see rounding of about 1e-6 relative.
const TOL = 2e-5;

function batchesOf(rows, sizes) {
  const out = [];
  let i = 0;
  for (const n of sizes) {
    const chunk = rows.slice(i, i + n);
    i += n;
    out.push({ data: Float32Array.from(chunk.flat()), shape: [n, chunk[0].length] });
  }
  return out;
}

function maxDiff(a, b) {
  let worst = 0;
  a.forEach((row, i) =>
    row.forEach((v, j) => {
      assert.notEqual(v, null, `cell ${i},${j} is null`);
      worst = Math.max(worst, Math.abs(v - b[i][j]));
    }),
  );
  return worst;
}

describe('measures: rbf_cka and dcor against float64 references', () => {
  const quiet = warningSink();

  it("Kornblith et al.'s demo data in 10 batches of 10: all three measures and the σ", async () => {
    const model = await featuresModel('scripted');
    const cka = new CKA(model, model, { measures: ALL, model1Layers: ['id'], model2Layers: ['id'], ...quiet });
    await cka.compare(batchesOf(REF.demo.X, Array(10).fill(10)), batchesOf(REF.demo.Y, Array(10).fill(10)));
    const r = cka.export();
    assert.deepEqual(Object.keys(r.measures), ALL);
    for (const id of ALL) {
      assert.ok(Math.abs(r.measures[id][0][0] - REF.demo[id].value) < TOL, `${id}: ${r.measures[id][0][0]}`);
    }
    assert.ok(Math.abs(r.measures.cka[0][0] - 0.54373) < 1e-5);
    assert.deepEqual(r.cka, r.measures.cka);
    assert.equal(r.rbf.threshold, 0.5);
    assert.ok(Math.abs(r.rbf.sigma1[0] - REF.demo.rbf_cka.sigma1) < 1e-5 * REF.demo.rbf_cka.sigma1);
    assert.ok(Math.abs(r.rbf.sigma2[0] - REF.demo.rbf_cka.sigma2) < 1e-5 * REF.demo.rbf_cka.sigma2);
  });

  for (const kind of ['scripted', 'traced']) {
    it(`${kind}: every layer pair over batches of 10, 7, 13 (offset 1e4, rotation + translation, scale)`, async () => {
      const model = await featuresModel(kind);
      const cka = new CKA(model, model, {
        measures: ALL,
        model1Layers: REF.layers,
        model2Layers: REF.layers,
        ...quiet,
      });
      const sizes = REF.uneven.sizes;
      await cka.compare(batchesOf(REF.uneven.A, sizes), batchesOf(REF.uneven.B, sizes));
      const r = cka.export();
      assert.deepEqual(r.model1Layers, REF.layers);
      for (const id of ALL) {
        const diff = maxDiff(r.measures[id], REF.uneven[id].matrix);
        assert.ok(diff < TOL, `${kind} ${id}: max difference ${diff}`);
      }
      REF.layers.forEach((name, k) => {
        const want = REF.uneven.rbf_cka.sigma1[k];
        assert.ok(Math.abs(r.rbf.sigma1[k] - want) < 1e-4 * want, `σ of ${name}: ${r.rbf.sigma1[k]} vs ${want}`);
      });
    });
  }

  it("precision: 'float32' keeps every measure within 1e-4 of the float64 reference", async () => {
    const model = await featuresModel('scripted');
    const cka = new CKA(model, model, {
      measures: ALL,
      precision: 'float32',
      model1Layers: REF.layers,
      model2Layers: REF.layers,
      ...quiet,
    });
    const sizes = REF.uneven.sizes;
    await cka.compare(batchesOf(REF.uneven.A, sizes), batchesOf(REF.uneven.B, sizes));
    const r = cka.export();
    for (const id of ALL) assert.ok(maxDiff(r.measures[id], REF.uneven[id].matrix) < 1e-4, id);
  });

  it('invariances: rotation + translation for all three, scale for cka and dcor, not rbf with a fixed σ', async () => {
    const model = await featuresModel('scripted');
    const sizes = REF.uneven.sizes;
    const base = { measures: ALL, model2Layers: ['id'], ...quiet };
    const run = async (opts) => {
      const cka = new CKA(model, model, { ...base, ...opts });
      await cka.compare(batchesOf(REF.uneven.A, sizes), batchesOf(REF.uneven.B, sizes));
      return cka.export();
    };
    const auto = await run({ model1Layers: ['id', 'rot', 'scale', 'offset'] });
    for (const id of ALL) {
      const [id0, rot, scale, offset] = auto.measures[id].map((row) => row[0]);
      assert.ok(Math.abs(rot - id0) < TOL, `${id} rotation`);
      // x + 1e4 in float32 rounds the features themselves by ~5e-4 (the reference test above sees the same).
      assert.ok(Math.abs(offset - id0) < 2e-3, `${id} offset 1e4: ${offset} vs ${id0}`);
      assert.ok(Math.abs(scale - id0) < TOL, `${id} scale (σ from the data scales too)`);
    }
    const fixed = await run({ model1Layers: ['id', 'scale'], model1Sigmas: { '*': 2.0 } });
    const [idFixed, scaleFixed] = fixed.measures.rbf_cka.map((row) => row[0]);
    assert.ok(
      Math.abs(idFixed - scaleFixed) > 1e-3,
      `rbf with a fixed σ is not scale-invariant: ${idFixed} ${scaleFixed}`,
    );
    assert.deepEqual(fixed.rbf.sigma1, [2, 2]);
    const [cId, cScale] = fixed.measures.cka.map((row) => row[0]);
    const [dId, dScale] = fixed.measures.dcor.map((row) => row[0]);
    assert.ok(Math.abs(cId - cScale) < TOL && Math.abs(dId - dScale) < TOL);
  });

  it('user σ by pattern (first match wins) and another threshold match the reference', async () => {
    const model = await featuresModel('scripted');
    const sizes = REF.uneven.sizes;
    const ref = REF.uneven.rbf_fixed;
    const cka = new CKA(model, model, {
      measures: ['rbf_cka'],
      rbfThreshold: ref.threshold,
      model1Sigmas: { id: 2.0, 's*': 6.0, scale: 99 },
      model1Layers: REF.layers,
      model2Layers: REF.layers,
      ...quiet,
    });
    await cka.compare(batchesOf(REF.uneven.A, sizes), batchesOf(REF.uneven.B, sizes));
    const r = cka.export();
    assert.equal(r.cka, undefined, 'no cka without the measure');
    assert.deepEqual(Object.keys(r.measures), ['rbf_cka']);
    assert.ok(maxDiff(r.measures.rbf_cka, ref.matrix) < TOL);
    assert.equal(r.rbf.sigma1[0], 2);
    assert.equal(r.rbf.sigma1[3], 6);
  });

  it("measures: ['cka'] is bit-identical to the default, and the order of measures does not matter", async () => {
    const [m1, m2] = await Promise.all([loadModel(fixture('mlp_scripted.pt')), loadModel(fixture('mlp_traced.pt'))]);
    const batches = randomBatches(3, [9, 6, 11], [12]);
    const plain = new CKA(m1, m2, quiet);
    await plain.compare(batches);
    const withAll = new CKA(m1, m2, { measures: ['dcor', 'cka', 'rbf_cka'], ...quiet });
    await withAll.compare(batches);
    const a = plain.export();
    const b = withAll.export();
    assert.deepEqual(b.cka, a.cka);
    assert.deepEqual(a.measures, { cka: a.cka });
    assert.equal(a.rbf, undefined);
    const dcorOnly = new CKA(m1, m2, { measures: ['dcor'], ...quiet });
    await dcorOnly.compare(batches);
    assert.deepEqual(dcorOnly.export().measures.dcor, b.measures.dcor);
  });

  it('a constant layer gives null for every measure, with a warning; never NaN', async () => {
    const model = await featuresModel('scripted');
    const sink = warningSink();
    const cka = new CKA(model, model, { measures: ALL, model1Layers: ['id'], model2Layers: ['id'], ...sink });
    const constant = [4, 6].map((n) => ({ data: new Float32Array(n * 10).fill(3), shape: [n, 10] }));
    await cka.compare(constant, batchesOf(REF.uneven.B.slice(0, 10), [4, 6]));
    const r = cka.export();
    for (const id of ALL) assert.equal(r.measures[id][0][0], null, id);
    assert.equal(r.rbf.sigma1[0], null);
    assert.ok(sink.warnings.some((w) => w.code === 'TORCH_CKA_CONSTANT_LAYER' && /'id'/.test(w.message)));
  });

  it('checkpoint: a resumed run gives the uninterrupted numbers; other measures or σ are refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-measures-'));
    try {
      const model = await featuresModel('scripted');
      const batches = batchesOf(REF.uneven.A, REF.uneven.sizes);
      const other = batchesOf(REF.uneven.B, REF.uneven.sizes);
      const opts = { measures: ALL, ...quiet };
      const whole = new CKA(model, model, opts);
      await whole.compare(batches, other);
      const expected = whole.export();

      const file = path.join(dir, 'run.json');
      const first = new CKA(model, model, opts);
      await first.compare(batches.slice(0, 1), other.slice(0, 1), { checkpoint: { path: file } });
      const second = new CKA(model, model, opts);
      const summary = await second.compare(batches, other, { checkpoint: { path: file } });
      assert.equal(summary.resumed, 1);
      const resumed = second.export();
      for (const id of ALL) {
        resumed.measures[id].forEach((row, i) =>
          row.forEach((v, j) => assert.ok(Math.abs(v - expected.measures[id][i][j]) < 1e-12, `${id} ${i},${j}`)),
        );
      }
      assert.deepEqual(resumed.rbf, expected.rbf, 'σ restored from the checkpoint, not from batch 1');

      for (const changed of [
        { measures: ['cka', 'dcor'] },
        { measures: ALL, rbfThreshold: 0.7 },
        { measures: ALL, model1Sigmas: { id: 1.5 } },
        { measures: ['cka'] },
      ]) {
        const third = new CKA(model, model, { ...quiet, ...changed });
        await assert.rejects(third.compare(batches, other, { checkpoint: { path: file } }), (error) => {
          assert.equal(error.code, 'ERR_CHECKPOINT_MISMATCH', JSON.stringify(changed));
          assert.match(error.message, /measures/);
          return true;
        });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bad options fail with ERR_INVALID_ARG naming the option', async () => {
    const model = await featuresModel('scripted');
    for (const [opts, pattern] of [
      [{ measures: ['cka', 'linear'] }, /options\.measures.*"linear"/],
      [{ measures: ['dcor', 'dcor'] }, /options\.measures names 'dcor' twice/],
      [{ measures: [] }, /options\.measures is an empty list/],
      [{ measures: 'cka' }, /options\.measures to be an array/],
      [{ rbfThreshold: 0 }, /options\.rbfThreshold/],
      [{ rbfThreshold: Number.NaN }, /options\.rbfThreshold/],
      [{ rbfThreshold: Infinity }, /options\.rbfThreshold/],
      [{ model1Sigmas: { id: -1 } }, /options\.model1Sigmas\['id'\]/],
      [{ model2Sigmas: { '*': 0 } }, /options\.model2Sigmas\['\*'\]/],
      [{ model2Sigmas: [1] }, /options\.model2Sigmas/],
    ]) {
      assert.throws(
        () => new CKA(model, model, opts),
        (error) => error.code === 'ERR_INVALID_ARG' && pattern.test(error.message),
        JSON.stringify(opts),
      );
    }
    // A σ entry that matches no layer would leave its layer on the data's σ without a word.
    for (const opts of [{ model1Sigmas: { nosuch: 2 } }, { model2Sigmas: { id: 1, 'x*': 2 } }]) {
      const option = Object.keys(opts)[0];
      assert.throws(() => new CKA(model, model, { measures: ALL, ...opts }), {
        code: 'ERR_UNKNOWN_LAYER',
        message: new RegExp(`options\\.${option} entry '(nosuch|x\\*)' matches no layer of model 'features_scripted'`),
      });
    }
  });

  describe('CLI', () => {
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
    const model = path.join(__dirname, 'fixtures', 'measures', 'features_scripted.pt');
    let dir;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-measures-cli-'));
      writeNpy(path.join(dir, 'X.npy'), Float32Array.from(REF.demo.X.flat()), [100, 10]);
      writeNpy(path.join(dir, 'Y.npy'), Float32Array.from(REF.demo.Y.flat()), [100, 10]);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    const base = () => [
      'compare',
      model,
      model,
      '--data',
      path.join(dir, 'X.npy'),
      '--data2',
      path.join(dir, 'Y.npy'),
      '--batch-size',
      '10',
      '--layers1',
      'id',
      '--layers2',
      'id',
    ];

    it('--measures: the demo numbers, one CSV and one heatmap per measure, a summary per measure', () => {
      const out = path.join(dir, 'r.json');
      const csv = path.join(dir, 'r.csv');
      const svg = path.join(dir, 'h.svg');
      const r = run(...base(), '--measures', 'cka,rbf_cka,dcor', '--out', out, '--csv', csv, '--plot', svg);
      assert.equal(r.status, 0, r.stderr);
      const json = JSON.parse(fs.readFileSync(out, 'utf8'));
      for (const id of ALL) assert.ok(Math.abs(json.measures[id][0][0] - REF.demo[id].value) < TOL, id);
      assert.deepEqual(json.cka, json.measures.cka);
      for (const [id, file] of [
        ['cka', 'r.csv'],
        ['rbf_cka', 'r.rbf_cka.csv'],
        ['dcor', 'r.dcor.csv'],
      ]) {
        const lines = fs.readFileSync(path.join(dir, file), 'utf8').trimEnd().split('\r\n');
        assert.equal(Number(lines[1].split(',')[1]), json.measures[id][0][0], file);
      }
      for (const file of ['h.svg', 'h.rbf_cka.svg', 'h.dcor.svg']) assert.ok(fs.existsSync(path.join(dir, file)), file);
      assert.match(fs.readFileSync(path.join(dir, 'h.dcor.svg'), 'utf8'), /distance correlation/);
      for (const name of ['linear CKA (cka)', 'RBF CKA (rbf_cka)', 'distance correlation (dcor)']) {
        assert.ok(r.stdout.includes(name), name);
      }
      const plotted = path.join(dir, 'p.svg');
      const p = run('plot', out, '--out', plotted, '--measure', 'rbf_cka');
      assert.equal(p.status, 0, p.stderr);
      assert.ok(fs.existsSync(plotted));
      const missing = run('plot', out, '--out', plotted, '--measure', 'nope');
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /no measure 'nope'.*ERR_USAGE/);
      // torch-cka plot to .html draws every measure of the file (tabs), or only --measure's, with their values.
      const html = path.join(dir, 'p.html');
      assert.equal(run('plot', out, '--out', html).status, 0);
      const sections = (file) =>
        [...fs.readFileSync(file, 'utf8').matchAll(/data-measure-section="([a-z_]+)"/g)].map((m) => m[1]);
      assert.deepEqual(sections(html).sort(), ['cka', 'dcor', 'rbf_cka']);
      assert.equal(run('plot', out, '--out', html, '--measure', 'dcor').status, 0);
      assert.deepEqual(sections(html), ['dcor']);
    });

    it('--rbf-threshold and --sigma1 reach the comparison; a results file of dcor alone still plots', () => {
      const out = path.join(dir, 's.json');
      const r = run(
        ...base(),
        '--measures',
        'rbf_cka,dcor',
        '--sigma1',
        'i*=2', // repeatable: the first match wins, so id keeps 2
        '--sigma1',
        'id=7',
        '--rbf-threshold',
        '0.8',
        '--out',
        out,
      );
      assert.equal(r.status, 0, r.stderr);
      const json = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.equal(json.cka, undefined);
      assert.deepEqual(json.rbf.sigma1, [2]);
      assert.equal(json.rbf.threshold, 0.8);
      const p = run('plot', out, '--out', path.join(dir, 's.png'));
      assert.equal(p.status, 0, p.stderr);
    });

    for (const [args, pattern] of [
      [['--measures', 'cka,linear'], /--measures.*'linear'/],
      [['--measures', 'dcor,dcor'], /'dcor' twice/],
      [['--rbf-threshold', '-1'], /--rbf-threshold/],
      [['--rbf-threshold', 'x'], /--rbf-threshold/],
      [['--sigma', 'id'], /--sigma PATTERN=SIGMA/],
      [['--sigma2', 'id=0'], /--sigma2 PATTERN=SIGMA/],
      [['--sigma1', '=3'], /--sigma1 PATTERN=SIGMA/],
    ]) {
      it(`${args.join(' ')}: ERR_USAGE`, () => {
        const r = run(...base(), ...args);
        assert.equal(r.status, 2);
        assert.match(r.stderr, pattern);
        assert.match(r.stderr, /ERR_USAGE/);
      });
    }

    it('--sigma1 naming no layer of model 1, or --sigma naming no layer of either model: ERR_UNKNOWN_LAYER', () => {
      for (const [args, pattern] of [
        [['--sigma1', 'nosuch=2'], /options\.model1Sigmas entry 'nosuch' matches no layer/],
        [['--sigma', 'x*=2'], /--sigma entry 'x\*' matches no layer of either model/],
      ]) {
        const r = run(...base(), '--measures', 'rbf_cka', ...args);
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, pattern);
        assert.match(r.stderr, /\[ERR_UNKNOWN_LAYER\]$/m);
      }
    });
  });
});

'use strict';
// The full-batch mode (issue 16): every measure on one evaluation set, against float64 references
// computed with numpy and scipy from the features of eager forward hooks
// (test/fixtures/generate/make-fullbatch-fixtures.py writes test/fixtures/fullbatch/reference.json),
// or against values computed here in float64 from the inputs; never against our own output.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { CKA, loadModel } = require('..');
const { warningSink } = require('./helpers');

const DIR = path.join(__dirname, 'fixtures', 'fullbatch');
const REF = JSON.parse(fs.readFileSync(path.join(DIR, 'reference.json'), 'utf8'));
const ALL = REF.measures;
// The engine's Grams are float32, its eigendecompositions float64: a float32-Gram rendering of the
// eigen measures moves them by < 3e-6 on these fixtures (checked while making them), so 1e-5 holds.
const TOL = 1e-5;
const LOWDIM = REF.lowdim.rows1;
const CONV = REF.convnet.rows1;

const identityModel = () => loadModel(path.join(__dirname, 'fixtures', 'measures', 'features_scripted.pt'));
const fixtureModel = (name) => loadModel(path.join(DIR, `${name}_scripted.pt`));

/** A float32 little-endian C-order .npy file, read here (not by the package's reader). */
function readNpy(name) {
  const buf = fs.readFileSync(path.join(DIR, name));
  assert.equal(buf.toString('latin1', 1, 6), 'NUMPY');
  const major = buf[6];
  const headerLength = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLength;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  assert.match(header, /'descr': '<f4'/);
  assert.match(header, /'fortran_order': False/);
  const shape = header
    .match(/'shape': \(([^)]*)\)/)[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length));
  assert.equal(
    data.length,
    shape.reduce((a, b) => a * b, 1),
  );
  return { data, shape };
}

/** The array cut into batches of the given sizes (along the first axis). */
function batchesOf(array, sizes) {
  const row = array.data.length / array.shape[0];
  const out = [];
  let i = 0;
  for (const n of sizes) {
    out.push({ data: array.data.slice(i * row, (i + n) * row), shape: [n, ...array.shape.slice(1)] });
    i += n;
  }
  assert.ok(i <= array.shape[0]);
  return out;
}

/** Batches of `size` covering `total` samples (the last one shorter). */
function sizes(total, size) {
  const out = [];
  for (let left = total; left > 0; left -= size) out.push(Math.min(size, left));
  return out;
}

/** The array's rows transformed in float64 (row -> f(row)), rounded to float32. */
function mapRows(array, f) {
  const d = array.data.length / array.shape[0];
  const out = new Float32Array(array.data.length);
  for (let i = 0; i < array.shape[0]; i += 1) {
    const row = Array.from(array.data.subarray(i * d, (i + 1) * d), Number);
    f(row).forEach((v, j) => {
      out[i * d + j] = v;
    });
  }
  return { data: out, shape: array.shape.slice() };
}

const demoX = readNpy('demo_X.npy');
const demoY = readNpy('demo_Y.npy');
const lowX = readNpy('lowdim_x.npy');
const convX = readNpy('convnet_x.npy');

/**
 * Checks one measure's matrix against its reference: equal null pattern, values within `tol`.
 * mknn is a mean of counts over n samples: float32 Grams can swap a sample's k-th and (k+1)-th
 * neighbour only where their cosines lie within 1e-5 (the generator counts those samples per cell,
 * `mknnTies`); each swap moves the score by at most 1/(n k), so mknn must be exact up to that.
 */
function checkMatrix(label, got, want, { tol = TOL, ties = null, n = 0, k = REF.mknnK } = {}) {
  assert.equal(got.length, want.length, `${label}: rows`);
  want.forEach((row, i) => {
    assert.equal(got[i].length, row.length, `${label}: columns of row ${i}`);
    row.forEach((w, j) => {
      const v = got[i][j];
      if (w === null) {
        assert.equal(v, null, `${label}[${i}][${j}]: ${v}, the reference is null`);
        return;
      }
      assert.equal(typeof v, 'number', `${label}[${i}][${j}] is ${v}, the reference ${w}`);
      assert.ok(Number.isFinite(v), `${label}[${i}][${j}] is ${v}`);
      const slack = ties ? ties[i][j] / (n * k) + 1e-12 : tol;
      assert.ok(
        Math.abs(v - w) <= slack,
        `${label}[${i}][${j}]: ${v} vs the reference ${w} (${Math.abs(v - w)} > ${slack})`,
      );
    });
  });
}

/** Every measure of an export against one reference case. */
function checkCase(label, r, ref) {
  assert.deepEqual(Object.keys(r.measures), ALL);
  for (const id of ALL) {
    const opts = id === 'mknn' ? { ties: ref.mknnTies, n: ref.samples } : {};
    checkMatrix(`${label} ${id}`, r.measures[id], ref.measures[id], opts);
  }
  for (const id of ALL) {
    const nulls = ref.reasons[id].some((row) => row.some((why) => why !== null));
    if (!nulls) {
      assert.ok(!r.nullReasons || !(id in r.nullReasons), `${label}: nullReasons.${id} without a null cell`);
      continue;
    }
    assert.ok(r.nullReasons && r.nullReasons[id], `${label}: nullReasons.${id} missing`);
    assert.deepEqual(r.nullReasons[id], ref.reasons[id], `${label}: nullReasons.${id}`);
  }
  assert.equal(r.fullBatch, ref.samples);
  assert.equal(r.samples, ref.samples);
  const info = r.fullBatchInfo;
  assert.ok(info, 'fullBatchInfo');
  assert.deepEqual(info.ranks, { model1: ref.rank1, model2: ref.rank2 }, `${label}: ranks`);
  assert.deepEqual(info.fills, { model1: ref.fills1, model2: ref.fills2 }, `${label}: fills`);
  assert.deepEqual(info.features, { model1: ref.features1, model2: ref.features2 }, `${label}: features`);
  assert.deepEqual(info.svccaDims, { model1: ref.svccaDims1, model2: ref.svccaDims2 }, `${label}: svccaDims`);
  assert.equal(info.svccaVariance, REF.svccaVariance);
  assert.equal(info.mknnK, REF.mknnK);
  assert.equal(info.ccaRidge, 0);
  assert.deepEqual(r.cka, r.measures.cka);
  assert.equal(r.rbf.threshold, REF.rbfThreshold);
  ref.sigma1.forEach((s, i) =>
    assert.ok(Math.abs(r.rbf.sigma1[i] - s) < 1e-5 * s, `σ1[${i}] ${r.rbf.sigma1[i]} vs ${s}`),
  );
  ref.sigma2.forEach((s, i) =>
    assert.ok(Math.abs(r.rbf.sigma2[i] - s) < 1e-5 * s, `σ2[${i}] ${r.rbf.sigma2[i]} vs ${s}`),
  );
}

const rankWarnings = (sink) => sink.warnings.filter((w) => w.code === 'TORCH_CKA_RANK_DEFICIENT');

describe('full-batch: every measure against float64 references', function () {
  this.timeout(120000);

  it("Kornblith et al.'s demo data through the identity layer: every measure, their published values", async () => {
    const sink = warningSink();
    const model = await identityModel();
    const cka = new CKA(model, model, {
      measures: ALL,
      fullBatch: 100,
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: sink.onWarning,
    });
    const summary = await cka.compare(batchesOf(demoX, [100]), batchesOf(demoY, [100]));
    assert.equal(summary.samples, 100);
    assert.equal(summary.batches, 1);
    const r = cka.export();
    checkCase('demo', r, REF.demo);
    // Kornblith et al.'s published numbers (their demo notebook), on the float32 data to 1e-5.
    assert.ok(Math.abs(r.measures.cka[0][0] - 0.51346) < 1e-5, `cka ${r.measures.cka[0][0]}`);
    assert.ok(Math.abs(r.measures.linear_cka_biased[0][0] - 0.55761) < 1e-5, `${r.measures.linear_cka_biased[0][0]}`);
    assert.ok(Math.abs(r.measures.rbf_cka_biased[0][0] - 0.65483) < 1e-5, `${r.measures.rbf_cka_biased[0][0]}`);
    assert.equal(r.batches, 1);
    assert.deepEqual(rankWarnings(sink), [], 'd = 10 < n - 1: no rank warning');
  });

  it('lowdim vs lowdim_b (d < n, fc2 8 features of rank 5): every measure, ranks, fills, svcca dims', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('lowdim'), fixtureModel('lowdim_b')]);
    const sink = warningSink();
    const cka = new CKA(m1, m2, {
      measures: ALL,
      fullBatch: REF.lowdim.samples,
      model1Layers: LOWDIM,
      model2Layers: LOWDIM,
      onWarning: sink.onWarning,
    });
    // 91 samples in one batch: the first 80 form the set
    const summary = await cka.compare(batchesOf(lowX, [91]));
    assert.equal(summary.samples, 80);
    const r = cka.export();
    assert.deepEqual(r.model1Layers, LOWDIM);
    assert.deepEqual(r.model2Layers, LOWDIM);
    checkCase('lowdim', r, REF.lowdim);
    assert.deepEqual(rankWarnings(sink), []);
  });

  it('convnet vs convnet_b (conv layers d = 512 >> n = 40): every measure, CCA null and warned', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
    const sink = warningSink();
    const cka = new CKA(m1, m2, {
      measures: ALL,
      fullBatch: REF.convnet.samples,
      model1Layers: CONV,
      model2Layers: CONV,
      onWarning: sink.onWarning,
    });
    await cka.compare(batchesOf(convX, [47]));
    const r = cka.export();
    checkCase('convnet', r, REF.convnet);
    // every cell with a conv layer on either side is rank-deficient
    const filling = CONV.filter((_, i) => REF.convnet.fills1[i]);
    assert.deepEqual(filling, ['conv1', 'relu1', 'conv2', 'relu2']);
    for (const id of ['cca_rho', 'cca_r2']) {
      CONV.forEach((a, i) =>
        CONV.forEach((b, j) => {
          const deficient = REF.convnet.fills1[i] || REF.convnet.fills2[j];
          assert.equal(r.measures[id][i][j] === null, deficient, `${id} ${a} x ${b}`);
          assert.equal(r.nullReasons[id][i][j], deficient ? 'rank_deficient' : null);
        }),
      );
    }
    const warned = rankWarnings(sink);
    assert.equal(warned.length, 2, JSON.stringify(warned));
    assert.deepEqual(warned.map((w) => w.model).sort(), ['model1', 'model2']);
    for (const w of warned) {
      assert.deepEqual(
        w.layers.map((l) => l.name),
        filling,
      );
      for (const l of w.layers) assert.equal(l.features, 512);
      for (const name of filling) assert.ok(w.message.includes(name), w.message);
      assert.match(w.message, /cca_rho/);
      assert.match(w.message, /ccaRidge|--cca-ridge/);
    }
  });

  it('convnet with spatial-mean views on model 1 (model1Views) vs convnet_b flattened', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
    const sink = warningSink();
    const cka = new CKA(m1, m2, {
      measures: ALL,
      fullBatch: REF.convnetViews.samples,
      model1Layers: CONV,
      model2Layers: CONV,
      model1Views: REF.convnetViews.model1Views,
      onWarning: sink.onWarning,
    });
    await cka.compare(batchesOf(convX, sizes(47, 16)));
    const r = cka.export();
    checkCase('convnet views', r, REF.convnetViews);
    assert.deepEqual(r.fullBatchInfo.features.model1, [512, 8, 8, 8, 8, 4]);
    const w1 = rankWarnings(sink).filter((w) => w.model === 'model1');
    assert.equal(w1.length, 1);
    assert.deepEqual(
      w1[0].layers.map((l) => l.name),
      ['conv1'],
    );
  });
});

describe('full-batch: N larger than the batch size', function () {
  this.timeout(120000);

  async function lowdimMatrices(batchSizes) {
    const [m1, m2] = await Promise.all([fixtureModel('lowdim'), fixtureModel('lowdim_b')]);
    const cka = new CKA(m1, m2, {
      measures: ALL,
      fullBatch: 80,
      model1Layers: LOWDIM,
      model2Layers: LOWDIM,
      onWarning: () => undefined,
    });
    const summary = await cka.compare(batchesOf(lowX, batchSizes));
    return { summary, r: cka.export() };
  }

  it('lowdim: batches of 7 and of 13 (91 samples, the set the first 80) equal one batch of 80', async () => {
    const one = await lowdimMatrices([80]);
    checkCase('one batch', one.r, REF.lowdim);
    for (const size of [7, 13]) {
      const { summary, r } = await lowdimMatrices(sizes(91, size));
      assert.equal(summary.samples, 80);
      assert.equal(summary.batches, Math.ceil(80 / size), `chunks read with batches of ${size}`);
      assert.equal(r.fullBatch, 80);
      for (const id of ALL) {
        checkMatrix(`batches of ${size}: ${id}`, r.measures[id], one.r.measures[id], { tol: 1e-6 });
        // ... and against the reference, not only against the one-batch run
        const opts = id === 'mknn' ? { ties: REF.lowdim.mknnTies, n: 80 } : {};
        checkMatrix(`batches of ${size} vs reference: ${id}`, r.measures[id], REF.lowdim.measures[id], opts);
      }
      assert.deepEqual(r.fullBatchInfo.ranks, one.r.fullBatchInfo.ranks);
    }
  });

  it('convnet (d >> n): batches of 7 give the reference and the one-batch result', async () => {
    const run = async (batchSizes) => {
      const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
      const cka = new CKA(m1, m2, {
        measures: ALL,
        fullBatch: 40,
        model1Layers: CONV,
        model2Layers: CONV,
        onWarning: () => undefined,
      });
      await cka.compare(batchesOf(convX, batchSizes));
      return cka.export();
    };
    const one = await run([40]);
    const seven = await run(sizes(47, 7));
    checkCase('convnet batches of 7', seven, REF.convnet);
    for (const id of ALL) checkMatrix(`convnet 7 vs 40: ${id}`, seven.measures[id], one.measures[id], { tol: 1e-6 });
  });
});

describe('full-batch: invariances (identity layer, transformed inputs)', function () {
  this.timeout(120000);

  async function demoRun(x, y, measures = ALL) {
    const model = await identityModel();
    const cka = new CKA(model, model, {
      measures,
      fullBatch: 100,
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: () => undefined,
    });
    await cka.compare(batchesOf(x, sizes(100, 25)), batchesOf(y, sizes(100, 25)));
    return cka.export();
  }

  // The generator saved each transformed Y (float32) and checked the invariance in its own float64
  // references; here the engine's value on the transformed data must equal the reference of the
  // untransformed pair, and every other measure the reference of the transformed pair.
  for (const [name, file] of [
    ['linear', 'demo_Y_linear.npy'],
    ['rotscale', 'demo_Y_rotscale.npy'],
    ['rotshiftscale', 'demo_Y_rotshiftscale.npy'],
    ['scale', 'demo_Y_scale.npy'],
  ]) {
    const inv = REF.invariance[name];
    it(`${name}: ${inv.measures.join(', ')} unchanged, every measure as its reference`, async () => {
      const r = await demoRun(demoX, readNpy(file));
      for (const id of inv.measures) {
        const v = r.measures[id][0][0];
        const want = REF.demo.measures[id][0][0];
        // the cosines do not move under scaling: the same neighbours (no near tie: mknnTies 0)
        const tol = id === 'mknn' ? 1e-12 : TOL;
        assert.ok(Math.abs(v - want) <= tol, `${name} ${id}: ${v} vs the untransformed ${want}`);
      }
      for (const id of ALL) {
        const v = r.measures[id][0][0];
        const want = inv.values[id];
        assert.ok(Math.abs(v - want) <= TOL, `${name} ${id}: ${v} vs the reference ${want}`);
      }
    });
  }

  it('transforms made here in float64: CCA under an invertible map, procrustes and rsa under rotation', async () => {
    // a shear plus a scale per axis (invertible, not orthogonal) and a rotation in the (0, 1) plane
    // with a translation, applied to the float32 Y in float64
    const shear = (row) => row.map((v, j) => (j + 1) * v + (j > 0 ? 0.7 * row[j - 1] : 0));
    const c = Math.cos(0.9);
    const s = Math.sin(0.9);
    const rotShift = (row) =>
      row.map((v, j) => (j === 0 ? c * row[0] - s * row[1] : j === 1 ? s * row[0] + c * row[1] : v) * 1.7 + 4);
    const sheared = await demoRun(demoX, mapRows(demoY, shear), ['cca_rho', 'cca_r2']);
    for (const id of ['cca_rho', 'cca_r2']) {
      assert.ok(
        Math.abs(sheared.measures[id][0][0] - REF.demo.measures[id][0][0]) < TOL,
        `${id}: ${sheared.measures[id][0][0]}`,
      );
    }
    const rotated = await demoRun(demoX, mapRows(demoY, rotShift), ['procrustes', 'rsa', 'cka']);
    for (const id of ['procrustes', 'rsa', 'cka']) {
      assert.ok(
        Math.abs(rotated.measures[id][0][0] - REF.demo.measures[id][0][0]) < TOL,
        `${id}: ${rotated.measures[id][0][0]}`,
      );
    }
  });

  it('every measure is 1 for a representation with itself (demo X, and lowdim vs itself)', async () => {
    const r = await demoRun(demoX, demoX);
    for (const id of ALL) {
      const v = r.measures[id][0][0];
      assert.ok(Math.abs(v - 1) < TOL, `${id}: ${v}`);
    }
    assert.ok(Math.abs(r.measures.mknn[0][0] - 1) < 1e-12);
    const m = await fixtureModel('lowdim');
    const cka = new CKA(m, m, {
      measures: ALL,
      fullBatch: 80,
      model1Layers: LOWDIM,
      model2Layers: LOWDIM,
      onWarning: () => undefined,
    });
    await cka.compare(batchesOf(lowX, sizes(80, 13)));
    const self = cka.export();
    for (const id of ALL) {
      LOWDIM.forEach((name, i) => {
        const v = self.measures[id][i][i];
        assert.ok(Math.abs(v - 1) < TOL, `${id} ${name} with itself: ${v}`);
      });
    }
    LOWDIM.forEach((_, i) => assert.ok(Math.abs(self.measures.mknn[i][i] - 1) < 1e-12));
  });
});

describe('full-batch: ridge CCA, the memory budget, options', function () {
  this.timeout(120000);

  it('ccaRidge 0.1: the rank-deficient cells become numbers, equal to the ridge reference', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
    const sink = warningSink();
    const cka = new CKA(m1, m2, {
      measures: ['cka', 'cca_rho', 'cca_r2', 'svcca'],
      fullBatch: { samples: 40, ccaRidge: REF.ccaRidge },
      model1Layers: CONV,
      model2Layers: CONV,
      onWarning: sink.onWarning,
    });
    await cka.compare(batchesOf(convX, sizes(40, 9)));
    const r = cka.export();
    assert.deepEqual(Object.keys(r.measures), ['cka', 'cca_rho', 'cca_r2', 'svcca']);
    for (const id of ['cca_rho', 'cca_r2', 'svcca']) {
      checkMatrix(`ridge ${id}`, r.measures[id], REF.convnet.ridge[id]);
      assert.ok(!r.nullReasons || !r.nullReasons[id], `no null ${id} cell with a ridge`);
    }
    checkMatrix('ridge run cka', r.measures.cka, REF.convnet.measures.cka);
    assert.equal(r.fullBatchInfo.ccaRidge, REF.ccaRidge);
    assert.deepEqual(rankWarnings(sink), [], 'no rank warning with a ridge');
    // the ridge shrinks every canonical correlation: below the unregularised one where that exists
    for (const id of ['cca_rho', 'svcca'])
      CONV.forEach((_, i) =>
        CONV.forEach((__, j) => {
          const plain = REF.convnet.measures[id][i][j];
          if (plain !== null) assert.ok(r.measures[id][i][j] < plain, `${id} ${i},${j}`);
        }),
      );
  });

  it('ccaRidge on lowdim and on the demo data (cca_rho, cca_r2, svcca)', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('lowdim'), fixtureModel('lowdim_b')]);
    const cka = new CKA(m1, m2, {
      measures: ['cca_rho', 'cca_r2', 'svcca'],
      fullBatch: { samples: 80, ccaRidge: REF.ccaRidge },
      model1Layers: LOWDIM,
      model2Layers: LOWDIM,
      onWarning: () => undefined,
    });
    await cka.compare(batchesOf(lowX, [80]));
    const r = cka.export();
    for (const id of ['cca_rho', 'cca_r2', 'svcca'])
      checkMatrix(`lowdim ridge ${id}`, r.measures[id], REF.lowdim.ridge[id]);
    const model = await identityModel();
    const demo = new CKA(model, model, {
      measures: ['cca_rho', 'cca_r2', 'svcca'],
      fullBatch: { samples: 100, ccaRidge: REF.ccaRidge },
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: () => undefined,
    });
    await demo.compare(batchesOf(demoX, [100]), batchesOf(demoY, [100]));
    for (const id of ['cca_rho', 'cca_r2', 'svcca'])
      checkMatrix(`demo ridge ${id}`, demo.export().measures[id], REF.demo.ridge[id]);
  });

  it('memoryBudget 1000 bytes: ERR_MEMORY_BUDGET with the estimate and the budget', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
    const cka = new CKA(m1, m2, {
      measures: ALL,
      fullBatch: { samples: 40, memoryBudget: 1000 },
      model1Layers: CONV,
      model2Layers: CONV,
      onWarning: () => undefined,
    });
    await assert.rejects(cka.compare(batchesOf(convX, sizes(40, 8))), (err) => {
      assert.equal(err.code, 'ERR_MEMORY_BUDGET');
      assert.ok(err instanceof RangeError, `a RangeError: ${err.constructor.name}`);
      // the contract's form: "The full-batch comparison of 40 samples needs about X (Grams X, features X,
      // measures X, inputs X) but the memory budget is X (fullBatch.memoryBudget, --memory-budget): ..."
      const size = String.raw`[\d.,]+ ?[A-Za-z]+`;
      assert.match(err.message, new RegExp(`full-batch comparison of 40 samples needs about ${size}`));
      assert.match(err.message, new RegExp(`\\(Grams ${size}, features ${size}, measures ${size}, inputs ${size}\\)`));
      assert.match(err.message, new RegExp(`but the memory budget is ${size}`));
      assert.match(err.message, /fullBatch\.memoryBudget/);
      return true;
    });
  });

  it('export(): fullBatch N, samples N, batches 1, measures with every id asked (in that order)', async () => {
    const asked = ['procrustes', 'cka', 'mknn', 'rsa'];
    const model = await identityModel();
    const cka = new CKA(model, model, {
      measures: asked,
      fullBatch: { samples: 60, mknnK: 5 },
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: () => undefined,
    });
    const summary = await cka.compare(batchesOf(demoX, sizes(100, 32)), batchesOf(demoY, sizes(100, 32)));
    assert.equal(summary.samples, 60);
    const r = cka.export();
    assert.equal(r.fullBatch, 60);
    assert.equal(r.samples, 60);
    assert.equal(r.batches, 1);
    assert.deepEqual(Object.keys(r.measures), asked);
    assert.deepEqual(r.cka, r.measures.cka);
    assert.equal(r.rbf, undefined, 'no rbf measure, no rbf field');
    assert.equal(r.fullBatchInfo.mknnK, 5);
    assert.ok(!r.fullBatchInfo.svccaDims, 'svccaDims only with svcca');
    // mknn with k = 5 on the first 60 samples, computed here from the inputs in float64 (the closest
    // k-th / (k+1)-th cosine gap there is 5.7e-4: no tie for float32 to break)
    const want = mutualKnn(demoX, demoY, 60, 5);
    assert.ok(Math.abs(r.measures.mknn[0][0] - want) < 1e-12, `mknn ${r.measures.mknn[0][0]} vs ${want}`);
    assert.ok(Math.abs(want - 0.29333333333333333) < 1e-12, 'the JS mutual k-NN agrees with numpy');
  });

  it('fewer samples than fullBatch: compares what there is and warns TORCH_CKA_FULL_BATCH_SHORT', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('lowdim'), fixtureModel('lowdim_b')]);
    const sink = warningSink();
    const cka = new CKA(m1, m2, {
      measures: ['cka'],
      fullBatch: 100,
      model1Layers: LOWDIM,
      model2Layers: LOWDIM,
      onWarning: sink.onWarning,
    });
    const summary = await cka.compare(batchesOf(lowX, sizes(91, 20)));
    assert.equal(summary.samples, 91);
    assert.equal(cka.export().fullBatch, 91);
    const short = sink.warnings.filter((w) => w.code === 'TORCH_CKA_FULL_BATCH_SHORT');
    assert.equal(short.length, 1);
    assert.match(short[0].message, /91/);
    assert.match(short[0].message, /100/);
  });

  it('onProgress gives the phases in order (reading, forward, measures); an abort rejects: ABORT_ERR', async () => {
    const [m1, m2] = await Promise.all([fixtureModel('convnet'), fixtureModel('convnet_b')]);
    const options = {
      measures: ALL,
      fullBatch: 40,
      model1Layers: CONV,
      model2Layers: CONV,
      onWarning: () => undefined,
    };
    const seen = [];
    const cka = new CKA(m1, m2, options);
    await cka.compare(batchesOf(convX, sizes(47, 7)), undefined, {
      onProgress: (p) => p.fullBatch && seen.push({ ...p.fullBatch }),
    });
    assert.ok(seen.length > 0, 'onProgress gave fullBatch');
    const order = ['reading', 'forward', 'measures'];
    let last = 0;
    for (const p of seen) {
      assert.ok(order.includes(p.phase), p.phase);
      assert.ok(order.indexOf(p.phase) >= last, `phase ${p.phase} after ${order[last]}`);
      last = order.indexOf(p.phase);
      assert.ok(
        Number.isInteger(p.done) && Number.isInteger(p.total) && p.done >= 0 && p.done <= p.total,
        JSON.stringify(p),
      );
    }
    const controller = new AbortController();
    const aborted = new CKA(m1, m2, options);
    await assert.rejects(
      aborted.compare(batchesOf(convX, sizes(47, 7)), undefined, {
        signal: controller.signal,
        onProgress: () => controller.abort(),
      }),
      (err) => err.code === 'ABORT_ERR',
    );
  });

  it('fullBatch with a checkpoint: ERR_INVALID_ARG, and no checkpoint file written', async () => {
    const model = await identityModel();
    const file = path.join(require('node:os').tmpdir(), `torch-cka-fb-${process.pid}.ckpt`);
    fs.rmSync(file, { force: true });
    const cka = new CKA(model, model, {
      measures: ['cka'],
      fullBatch: 20,
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: () => undefined,
    });
    await assert.rejects(
      cka.compare(batchesOf(demoX, [20]), batchesOf(demoY, [20]), { checkpoint: { path: file } }),
      (err) => err.code === 'ERR_INVALID_ARG' && /checkpoint/.test(err.message),
    );
    assert.equal(fs.existsSync(file), false);
  });

  it('bad options: mknnK >= N, a full-batch measure without fullBatch, a second compare()', async () => {
    const model = await identityModel();
    await assert.rejects(
      // the constructor may refuse it already (k >= samples); otherwise compare() does
      async () => {
        const small = new CKA(model, model, {
          measures: ['mknn'],
          fullBatch: { samples: 20, mknnK: 25 },
          model1Layers: ['id'],
          model2Layers: ['id'],
          onWarning: () => undefined,
        });
        await small.compare(batchesOf(demoX, [20]), batchesOf(demoY, [20]));
      },
      (err) => err.code === 'ERR_INVALID_ARG' && /25/.test(err.message) && /20/.test(err.message),
    );
    assert.throws(
      () => new CKA(model, model, { measures: ['cka', 'svcca'], model1Layers: ['id'], model2Layers: ['id'] }),
      (err) => err.code === 'ERR_INVALID_ARG' && /svcca/.test(err.message) && /fullBatch/.test(err.message),
    );
    const once = new CKA(model, model, {
      measures: ['cka'],
      fullBatch: 10,
      model1Layers: ['id'],
      model2Layers: ['id'],
      onWarning: () => undefined,
    });
    await once.compare(batchesOf(demoX, [10]), batchesOf(demoY, [10]));
    await assert.rejects(
      once.compare(batchesOf(demoX, [10]), batchesOf(demoY, [10])),
      (err) => err.code === 'ERR_INVALID_ARG',
    );
  });
});

/** Mutual k-NN of the first n rows, cosine of the raw rows, self excluded, in float64. */
function mutualKnn(x, y, n, k) {
  const neighbours = (a) => {
    const d = a.data.length / a.shape[0];
    const rows = [];
    for (let i = 0; i < n; i += 1) rows.push(Array.from(a.data.subarray(i * d, (i + 1) * d), Number));
    const norms = rows.map((r) => Math.sqrt(r.reduce((s, v) => s + v * v, 0)));
    return rows.map((ri, i) => {
      const cos = rows.map((rj, j) =>
        i === j ? -Infinity : ri.reduce((s, v, f) => s + v * rj[f], 0) / (norms[i] * norms[j]),
      );
      return new Set(
        cos
          .map((c, j) => [c, j])
          .sort((p, q) => q[0] - p[0] || p[1] - q[1])
          .slice(0, k)
          .map((p) => p[1]),
      );
    });
  };
  const nx = neighbours(x);
  const ny = neighbours(y);
  let total = 0;
  for (let i = 0; i < n; i += 1) {
    let both = 0;
    for (const j of nx[i]) if (ny[i].has(j)) both += 1;
    total += both / k;
  }
  return total / n;
}

describe('full-batch fixtures: the streaming mode with one batch agrees with the references', function () {
  this.timeout(120000);
  // cka, rbf_cka and dcor of the full-batch mode are the streaming ones with the set as its one batch
  // (σ from batch 0 = the whole set): a check of the fixtures (models, layer names, views, data, σ)
  // that runs without the full-batch engine.
  for (const [a, b, x, key] of [
    ['lowdim', 'lowdim_b', lowX, 'lowdim'],
    ['convnet', 'convnet_b', convX, 'convnet'],
    ['convnet', 'convnet_b', convX, 'convnetViews'],
  ]) {
    it(`${key}: streaming cka, rbf_cka, dcor on one batch of ${REF[key].samples}`, async () => {
      const ref = REF[key];
      const [m1, m2] = await Promise.all([fixtureModel(a), fixtureModel(b)]);
      const cka = new CKA(m1, m2, {
        measures: ['cka', 'rbf_cka', 'dcor'],
        model1Layers: ref.rows1,
        model2Layers: ref.rows2,
        ...(ref.model1Views ? { model1Views: ref.model1Views } : {}),
        onWarning: () => undefined,
      });
      await cka.compare(batchesOf(x, [ref.samples]));
      const r = cka.export();
      for (const id of ['cka', 'rbf_cka', 'dcor'])
        checkMatrix(`${key} streaming ${id}`, r.measures[id], ref.measures[id]);
      ref.sigma1.forEach((s, i) => assert.ok(Math.abs(r.rbf.sigma1[i] - s) < 1e-5 * s));
    });
  }
});

describe('full-batch: the CLI (--full-batch, --cca-ridge, --memory-budget)', function () {
  this.timeout(120000);
  const { spawnSync } = require('node:child_process');
  const os = require('node:os');
  const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-full-batch-cli-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // rows conv1 (d = 512, fills the 40-sample space) and fc (d = 4) of both convnets
  const pick = [0, CONV.indexOf('fc')];
  const sub = (matrix) => pick.map((i) => pick.map((j) => matrix[i][j]));
  const base = (...extra) => [
    'compare',
    path.join(DIR, 'convnet_scripted.pt'),
    path.join(DIR, 'convnet_b_scripted.pt'),
    '--data',
    path.join(DIR, 'convnet_x.npy'),
    '--batch-size',
    '7',
    '--full-batch',
    '40',
    '--layers1',
    'conv1,fc',
    '--layers2',
    'conv1,fc',
    ...extra,
  ];

  it('--full-batch 40 with batches of 7: the reference values, null CCA cells empty in the CSV', () => {
    const out = path.join(dir, 'r.json');
    const csv = path.join(dir, 'r.csv');
    const r = run(...base('--measures', 'cka,cca_rho,procrustes,mknn', '--out', out, '--csv', csv));
    assert.equal(r.status, 0, r.stderr);
    const json = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(json.fullBatch, 40);
    assert.equal(json.samples, 40);
    assert.deepEqual(Object.keys(json.measures), ['cka', 'cca_rho', 'procrustes', 'mknn']);
    for (const id of ['cka', 'cca_rho', 'procrustes', 'mknn']) {
      checkMatrix(`cli ${id}`, json.measures[id], sub(REF.convnet.measures[id]), {
        ...(id === 'mknn' ? { ties: sub(REF.convnet.mknnTies), n: 40 } : {}),
      });
    }
    assert.deepEqual(json.nullReasons.cca_rho, sub(REF.convnet.reasons.cca_rho));
    const lines = fs.readFileSync(path.join(dir, 'r.cca_rho.csv'), 'utf8').trimEnd().split(/\r?\n/);
    assert.equal(lines.length, 3);
    const cells = lines.slice(1).map((line) => line.split(',').slice(1));
    sub(REF.convnet.measures.cca_rho).forEach((row, i) =>
      row.forEach((want, j) => {
        if (want === null) assert.equal(cells[i][j], '', `CSV cell ${i},${j} of a null value`);
        else assert.ok(Math.abs(Number(cells[i][j]) - want) < TOL, `CSV cell ${i},${j}: ${cells[i][j]}`);
      }),
    );
    // one rank warning per model on stderr, naming conv1 (the CLI writes "warning: ... (CODE)")
    const warned = r.stderr.split('\n').filter((line) => line.includes('TORCH_CKA_RANK_DEFICIENT'));
    assert.equal(warned.length, 2, r.stderr);
    for (const line of warned) assert.match(line, /conv1/);
  });

  it('--cca-ridge 0.1 gives the ridge reference; --memory-budget 1K fails with ERR_MEMORY_BUDGET', () => {
    const out = path.join(dir, 'ridge.json');
    const r = run(...base('--measures', 'cca_rho,cca_r2,svcca', '--cca-ridge', String(REF.ccaRidge), '--out', out));
    assert.equal(r.status, 0, r.stderr);
    const json = JSON.parse(fs.readFileSync(out, 'utf8'));
    for (const id of ['cca_rho', 'cca_r2', 'svcca'])
      checkMatrix(`cli ridge ${id}`, json.measures[id], sub(REF.convnet.ridge[id]));
    const small = run(...base('--measures', 'cka', '--memory-budget', '1K', '--out', path.join(dir, 'no.json')));
    assert.notEqual(small.status, 0);
    assert.match(small.stderr, /ERR_MEMORY_BUDGET/);
    assert.match(small.stderr, /memory budget is/);
    assert.equal(fs.existsSync(path.join(dir, 'no.json')), false);
  });
});

'use strict';
// The full-batch engine (native/core/full_run.cc) through the raw binding:
// chunks of any size give the Grams of one pass over all N samples, a budget
// that holds only some chunks' features gives the same values in groups, a
// budget that holds none fails with ERR_MEMORY_BUDGET, cancel() aborts, and
// features far from the origin (+1e4) lose nothing. Values are checked
// against plain float64 CKA computed here from the features (the inputs, or
// the layer outputs extract() returns), never against the engine's own Grams.
const assert = require('node:assert/strict');

const { binding } = require('../dist/native/binding');
const { fixture, hsic1, randomBatches } = require('./helpers');

const OPTIONS = {
  measures: ['cka', 'linear_cka_biased'],
  rbfThreshold: 0.5,
  svccaVariance: 0.99,
  mknnK: 3,
  ccaRidge: 0,
  memoryBudget: 0,
};

/** Rows of a { data, shape } tensor as float64 arrays of d features. */
function rows(tensor) {
  const n = tensor.shape[0];
  const d = tensor.data.length / n;
  return Array.from({ length: n }, (_, i) => Float64Array.from(tensor.data.subarray(i * d, (i + 1) * d), Number));
}

/** The centred Gram Xc Xcᵀ (n x n, float64) of feature rows. */
function centredGram(x) {
  const n = x.length;
  const d = x[0].length;
  const mean = new Float64Array(d);
  for (const row of x) for (let f = 0; f < d; f += 1) mean[f] += row[f] / n;
  const xc = x.map((row) => row.map((v, f) => v - mean[f]));
  const k = new Float64Array(n * n);
  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j <= i; j += 1) {
      let sum = 0;
      for (let f = 0; f < d; f += 1) sum += xc[i][f] * xc[j][f];
      k[i * n + j] = sum;
      k[j * n + i] = sum;
    }
  }
  return k;
}

const debiasedCka = (k, l, n) => hsic1(k, l, n) / Math.sqrt(hsic1(k, k, n) * hsic1(l, l, n));

function biasedCka(k, l, n) {
  // k and l are already centred (H K H = K for a centred Gram).
  let kl = 0;
  let kk = 0;
  let ll = 0;
  for (let i = 0; i < n * n; i += 1) {
    kl += k[i] * l[i];
    kk += k[i] * k[i];
    ll += l[i] * l[i];
  }
  return kl / Math.sqrt(kk * ll);
}

/** Both references for every pair of feature lists (rows1 x rows2). */
function references(features1, features2) {
  const n = features1[0].length;
  const k = features1.map(centredGram);
  const l = features2.map(centredGram);
  return {
    cka: k.map((ka) => l.map((lb) => debiasedCka(ka, lb, n))),
    linear_cka_biased: k.map((ka) => l.map((lb) => biasedCka(ka, lb, n))),
  };
}

function maxError(actual, expected) {
  let worst = 0;
  actual.forEach((row, a) =>
    row.forEach((v, b) => {
      assert.notEqual(v, null, `cell ${a},${b} is null`);
      worst = Math.max(worst, Math.abs(v - expected[a][b]));
    }),
  );
  return worst;
}

/** One tensor of n samples from a list of same-shaped batches. */
function concat(batches) {
  const shape = [batches.reduce((s, b) => s + b.shape[0], 0), ...batches[0].shape.slice(1)];
  const data = new Float32Array(batches.reduce((s, b) => s + b.data.length, 0));
  let at = 0;
  for (const b of batches) {
    data.set(b.data, at);
    at += b.data.length;
  }
  return { data, shape };
}

/** The first `count` samples of a tensor. */
function head(tensor, count) {
  const per = tensor.data.length / tensor.shape[0];
  return { data: tensor.data.slice(0, count * per), shape: [count, ...tensor.shape.slice(1)] };
}

/** Appends `set` in chunks of `size` (the last one a full-size batch trimmed by its count). */
function appendChunks(native, set, size, set2 = null) {
  const n = set.shape[0];
  const per = set.data.length / n;
  const slice = (t, o) => {
    const data = new Float32Array(size * per);
    data.set(t.data.subarray(o * per, Math.min(n, o + size) * per));
    return { data, shape: [size, ...t.shape.slice(1)] };
  };
  for (let o = 0; o < n; o += size) {
    native.fullAppend(slice(set, o), set2 ? slice(set2, o) : null, Math.min(size, n - o));
  }
}

describe('full-batch engine', function () {
  this.timeout(120000);
  const models = [];
  const load = async (name) => {
    const model = await binding().loadModel(fixture(name), 'cpu');
    models.push(model);
    return model;
  };
  after(() => models.forEach((m) => m.dispose()));

  const LAYERS = ['id', 'offset', 'rot', 'scale'];
  const engine = (m1, m2, layers1 = LAYERS, layers2 = LAYERS) =>
    new (binding().NativeCKA)(m1, m2, { layers1, layers2, label1: 'a', label2: 'b' });

  describe('the identity layer (features = inputs)', () => {
    const [x, y] = randomBatches(1601, [30, 30], [10]);

    it('gives the float64 cka and linear_cka_biased, chunks of 7 the same as one chunk of 30', async () => {
      const m = await load('measures/features_scripted.pt');
      const chunked = engine(m, m, ['id'], ['id', 'scale']);
      appendChunks(chunked, x, 7);
      const one = engine(m, m, ['id'], ['id', 'scale']);
      appendChunks(one, x, 30);
      const a = await chunked.fullRun(OPTIONS);
      const b = await one.fullRun(OPTIONS);
      assert.deepEqual(a.rows1, ['id']);
      assert.deepEqual(a.rows2, ['id', 'scale']);
      assert.deepEqual(a.measures, OPTIONS.measures);
      assert.equal(a.samples, 30);
      assert.deepEqual(a.features1, [10]);
      assert.equal(a.stats.chunks, 5);
      assert.equal(b.stats.chunks, 1);
      // One model on one data: one forward pass per chunk, plus chunk 0's discovery pass.
      assert.equal(a.stats.forwards, 6);
      assert.equal(a.stats.groups, 1);
      for (let i = 0; i < 2; i += 1) assert.ok(maxError(a.matrices[i], b.matrices[i]) < 1e-6);
      // Same model, different data: every cell against its float64 reference.
      const two = engine(m, m, ['id'], ['id']);
      appendChunks(two, x, 7, y);
      const c = await two.fullRun(OPTIONS);
      assert.equal(c.stats.forwards, 2 * 6);
      const ref = references([rows(x)], [rows(y)]);
      assert.ok(Math.abs(ref.cka[0][0]) < 0.5, 'independent data: a small CKA to check against');
      assert.ok(maxError(c.matrices[0], ref.cka) < 1e-6, `cka ${c.matrices[0][0][0]} vs ${ref.cka[0][0]}`);
      assert.ok(maxError(c.matrices[1], ref.linear_cka_biased) < 1e-6);
      assert.ok(maxError(a.matrices[0], [[1, 1]]) < 1e-6);
    });

    it('keeps the precision of features 1e4 away from the origin (shifted by chunk 0’s mean)', async () => {
      const m = await load('measures/features_scripted.pt');
      const far = { data: y.data.map((v) => v + 1e4), shape: y.shape };
      const native = engine(m, m, ['id'], ['id']);
      appendChunks(native, x, 7, far);
      const r = await native.fullRun(OPTIONS);
      // The reference from the very float32 values fed in, centred in float64.
      const ref = references([rows(x)], [rows(far)]);
      const plain = references([rows(x)], [rows(y)]);
      assert.ok(maxError(r.matrices[0], ref.cka) < 1e-6, `cka ${r.matrices[0][0][0]} vs ${ref.cka[0][0]}`);
      assert.ok(maxError(r.matrices[1], ref.linear_cka_biased) < 1e-6);
      // And the offset costs only the float32 rounding of the inputs themselves.
      assert.ok(maxError(r.matrices[0], plain.cka) < 1e-3);
    });

    it('holds a group of chunks at a time when the budget is short, with the same values', async () => {
      const m = await load('measures/features_scripted.pt');
      const whole = engine(m, m);
      appendChunks(whole, x, 7);
      const a = await whole.fullRun(OPTIONS);
      assert.equal(a.stats.groups, 1);
      assert.equal(
        a.stats.estimateBytes,
        a.stats.inputBytes + a.stats.gramBytes + a.stats.featureBytes + a.stats.measureBytes,
      );
      // Four layers of 10 features: 30 x 40 x 4 bytes held in one group.
      const allFeatures = 30 * 40 * 4;
      assert.ok(a.stats.featureBytes >= allFeatures);
      const short = engine(m, m);
      appendChunks(short, x, 7);
      // Room for two chunks' features (7 x 40 x 4 each) but not all five.
      const budget = a.stats.estimateBytes - allFeatures + 2 * 7 * 40 * 4 + 100;
      const b = await short.fullRun({ ...OPTIONS, memoryBudget: budget });
      assert.equal(b.stats.budgetBytes, budget);
      assert.equal(b.stats.groups, 3);
      // Groups {0,1}, {2,3}, {4}: 5 + 3 + 1 chunk passes, plus discovery.
      assert.equal(b.stats.forwards, 10);
      assert.ok(b.stats.estimateBytes <= budget);
      for (let i = 0; i < 2; i += 1) assert.ok(maxError(b.matrices[i], a.matrices[i]) < 1e-9);
    });

    it('runs two models apart: one pass each per chunk, the scripted and traced files agreeing', async () => {
      const m1 = await load('measures/features_scripted.pt');
      const m2 = await load('measures/features_traced.pt');
      const native = engine(m1, m2, ['id', 'scale'], ['rot']);
      appendChunks(native, x, 8);
      const r = await native.fullRun(OPTIONS);
      assert.deepEqual(r.rows2, ['rot']);
      assert.equal(r.stats.chunks, 4);
      assert.equal(r.stats.forwards, 2 * 5);
      // id, scale and rot are the input up to scaling and an orthogonal map plus a translation.
      assert.ok(maxError(r.matrices[0], [[1], [1]]) < 1e-6);
      assert.ok(maxError(r.matrices[1], [[1], [1]]) < 1e-6);
      assert.deepEqual(r.warnings, []);
      assert.deepEqual(r.leftOut, []);
    });

    it('fails with ERR_MEMORY_BUDGET when not even one chunk fits', async () => {
      const m = await load('measures/features_scripted.pt');
      const native = engine(m, m);
      appendChunks(native, x, 7);
      await assert.rejects(native.fullRun({ ...OPTIONS, memoryBudget: 1000 }), (error) => {
        assert.equal(error.code, 'ERR_MEMORY_BUDGET');
        assert.ok(error instanceof RangeError);
        assert.match(
          error.message,
          /^The full-batch comparison of 30 samples needs about \d+\.\d GiB \(Grams \d+\.\d GiB, features \d+\.\d GiB, measures \d+\.\d GiB, inputs \d+\.\d GiB\) but the memory budget is 0\.0 GiB \(fullBatch\.memoryBudget, --memory-budget\): lower the sample count/,
        );
        return true;
      });
      assert.equal(native.busy, false);
    });
  });

  describe('a conv net (conv, batch norm, ReLU, shared block outputs)', () => {
    it('matches float64 CKA of the extracted features; chunks of 7 equal one chunk of 25', async () => {
      const m = await load('convnet_traced.pt');
      const batches = randomBatches(1602, [7, 7, 7, 7], [3, 8, 8]);
      const set = head(concat(batches), 25);
      const layers = ['stem', 'block1', 'block1.bn', 'block3', 'relu', 'fc'];
      const chunked = engine(m, m, layers, layers);
      appendChunks(chunked, set, 7);
      const one = engine(m, m, layers, layers);
      appendChunks(one, set, 25);
      const a = await chunked.fullRun(OPTIONS);
      const b = await one.fullRun(OPTIONS);
      // relu runs three times: rows relu, relu#2, relu#3.
      assert.deepEqual(a.rows1, ['stem', 'block1', 'block1.bn', 'block3', 'relu', 'relu#2', 'relu#3', 'fc']);
      for (let i = 0; i < 2; i += 1) assert.ok(maxError(a.matrices[i], b.matrices[i]) < 1e-6);
      const extracted = new Map(await m.extract(set, layers));
      const features = a.rows1.map((name) => rows(extracted.get(name)));
      assert.deepEqual(
        a.features1,
        features.map((f) => f[0].length),
      );
      const ref = references(features, features);
      assert.ok(maxError(a.matrices[0], ref.cka) < 1e-5, `cka error ${maxError(a.matrices[0], ref.cka)}`);
      assert.ok(maxError(a.matrices[1], ref.linear_cka_biased) < 1e-5);
      assert.ok(ref.cka[0][7] < 0.99, 'stem and fc differ');
    });

    it('stops with ABORT_ERR on cancel() and runs again afterwards', async () => {
      const m = await load('convnet_traced.pt');
      const native = engine(m, m, [], []);
      appendChunks(native, concat(randomBatches(1603, [8, 8, 8], [3, 8, 8])), 8);
      const run = native.fullRun(OPTIONS);
      assert.equal(native.busy, true);
      assert.throws(() => native.fullAppend(randomBatches(1, [8], [3, 8, 8])[0], null, 8), { code: 'ERR_BUSY' });
      native.cancel();
      await assert.rejects(run, {
        code: 'ABORT_ERR',
        message: /aborted during the full-batch comparison \(chunk \d+\)/,
      });
      assert.equal(native.busy, false);
      assert.equal(native.fullProgress().phase, 'idle');
      const r = await native.fullRun(OPTIONS);
      assert.equal(r.samples, 24);
      assert.ok(r.rows1.length > 3);
      for (let i = 0; i < r.rows1.length; i += 1) assert.ok(Math.abs(r.matrices[0][i][i] - 1) < 1e-6);
    });
  });

  describe('errors', () => {
    it('refuses no chunks, N < 4, mknnK >= N, unknown measures and bad counts', async () => {
      const m = await load('measures/features_scripted.pt');
      const native = engine(m, m, ['id'], ['id']);
      await assert.rejects(native.fullRun(OPTIONS), { code: 'ERR_INVALID_ARG', message: /no samples/ });
      const [x] = randomBatches(1604, [8], [10]);
      assert.throws(() => native.fullAppend(x, null, 9), { code: 'ERR_INVALID_ARG', message: /from 1 to 8/ });
      assert.throws(() => native.fullAppend(x, null, 0), { code: 'ERR_INVALID_ARG' });
      assert.throws(() => native.fullAppend(x, head(x, 7), 7), { code: 'ERR_BATCH_SIZE_MISMATCH' });
      native.fullAppend(x, null, 3);
      await assert.rejects(native.fullRun(OPTIONS), { code: 'ERR_INVALID_ARG', message: /at least 4 samples/ });
      native.fullAppend(x, null, 3);
      await assert.rejects(native.fullRun({ ...OPTIONS, mknnK: 6 }), {
        code: 'ERR_INVALID_ARG',
        message: /mknnK .*1 to 5.* 6 samples.* received 6/,
      });
      assert.throws(() => native.fullRun({ ...OPTIONS, measures: ['cka', 'nope'] }), {
        code: 'ERR_INVALID_ARG',
        message: /linear_cka_biased/,
      });
      assert.throws(() => native.fullRun({ ...OPTIONS, svccaVariance: 0 }), { code: 'ERR_INVALID_ARG' });
      assert.throws(() => native.fullRun({ ...OPTIONS, mknnK: 2.5 }), { code: 'ERR_INVALID_ARG' });
      assert.throws(() => native.fullRun({ ...OPTIONS, ccaRidge: -1 }), { code: 'ERR_INVALID_ARG' });
      assert.throws(() => native.fullRun({ ...OPTIONS, memoryBudget: Number.NaN }), { code: 'ERR_INVALID_ARG' });
      const r = await native.fullRun(OPTIONS);
      assert.equal(r.samples, 6);
      native.fullClear();
      await assert.rejects(native.fullRun(OPTIONS), { code: 'ERR_INVALID_ARG', message: /no samples/ });
    });

    it('warns of a layer that does not vary over the set and leaves its cells null', async () => {
      const m = await load('measures/features_scripted.pt');
      const native = engine(m, m, ['id'], ['id']);
      const [a, b] = randomBatches(1606, [6, 6], [10]);
      // Model 1 sees one sample repeated; model 2 varied data.
      const same = { data: new Float32Array(60).map((_, i) => a.data[i % 10] + 5), shape: [6, 10] };
      native.fullAppend(same, a, 6);
      native.fullAppend(same, b, 6);
      const r = await native.fullRun(OPTIONS);
      assert.deepEqual(r.matrices[0], [[null]]);
      assert.deepEqual(r.reasons[0], [['constant']]);
      assert.equal(r.warnings.length, 1);
      assert.match(r.warnings[0], /^Layer 'id' of model 'a' does not vary over the full-batch set/);
    });

    it('names the layer and chunk of non-finite values', async () => {
      const m = await load('measures/features_scripted.pt');
      const native = engine(m, m, ['id'], ['id']);
      const [a, b] = randomBatches(1605, [6, 6], [10]);
      b.data[13] = Number.NaN;
      native.fullAppend(a, null, 6);
      native.fullAppend(b, null, 6);
      await assert.rejects(native.fullRun(OPTIONS), {
        code: 'ERR_NON_FINITE',
        message: /layer 'id' of model 'a' on chunk 1 of the full-batch set \(samples 6 to 11\).*no skipNonFinite/,
      });
    });
  });
});

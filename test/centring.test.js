'use strict';
// Where a layer's feature carries a large mean, the unbiased HSIC terms come
// from its centred Gram; the engine makes that Gram from the uncentred feature
// (and centres it in float64) only where the offset n·||mean||² is at most
// ||Xc||² (and the layer has at least 4n features), and centres the feature
// first elsewhere (docs/performance.md, "Centring"). Either way, CKA stays
// within 1e-7 of a float64 reference computed from the same float32 inputs.
const assert = require('node:assert/strict');
const path = require('node:path');

const { CKA, loadModel } = require('..');
const { normalRng, referenceCka, maxAbsoluteError, warningSink } = require('./helpers');

// identity_scripted.pt's layer 'id' returns its input (test/fixtures/generate/make-centring-fixture.py).
const MODEL = path.join(__dirname, 'fixtures', 'centring', 'identity_scripted.pt');

/**
 * Batches of n samples with d features: a rank-8 signal plus noise, plus a
 * fixed offset per feature with n·||offset||² = rho·||Xc||² (in expectation).
 */
function offsetBatches(seed, count, n, d, rho) {
  const rng = normalRng(seed);
  const basis = Array.from({ length: 8 }, () => Float64Array.from({ length: d }, rng));
  const offset = Float64Array.from({ length: d }, rng);
  const batches = [];
  for (let b = 0; b < count; b += 1) {
    const x = new Float64Array(n * d);
    for (let i = 0; i < n; i += 1) {
      const weights = Array.from({ length: 8 }, rng);
      for (let f = 0; f < d; f += 1) {
        let v = 0.3 * rng();
        for (let k = 0; k < 8; k += 1) v += weights[k] * basis[k][f];
        x[i * d + f] = v;
      }
    }
    // Scale the offset to the batch's own spread.
    let spread = 0;
    let norm = 0;
    for (let f = 0; f < d; f += 1) {
      let mean = 0;
      for (let i = 0; i < n; i += 1) mean += x[i * d + f] / n;
      for (let i = 0; i < n; i += 1) spread += (x[i * d + f] - mean) ** 2;
      norm += offset[f] ** 2;
    }
    const scale = rho > 0 ? Math.sqrt((rho * spread) / (n * norm)) : 0;
    const data = new Float32Array(n * d);
    for (let i = 0; i < n; i += 1) {
      for (let f = 0; f < d; f += 1) data[i * d + f] = x[i * d + f] + scale * offset[f];
    }
    batches.push({ data, shape: [n, d] });
  }
  return batches;
}

describe('centring: the uncentred Gram where the offset is small, the centred feature elsewhere', () => {
  let model;
  before(async () => {
    model = await loadModel(MODEL);
  });
  after(() => model.dispose());

  const N = 24;
  const D = 4 * N + 8; // enough features for the uncentred path
  // Model 2 always sees the same small-offset data: only model 1's offset changes.
  const other = offsetBatches(77, 3, N, D, 0.2);
  for (const rho of [0, 0.3, 1, 1.5, 10, 1e4]) {
    it(`offset ${rho} x the spread: within 1e-7 of float64`, async () => {
      const data = offsetBatches(1800 + Math.round(rho * 10), 3, N, D, rho);
      const cka = new CKA(model, model, {
        model1Layers: ['id'],
        model2Layers: ['id'],
        model1Name: 'a',
        model2Name: 'b',
        ...warningSink(),
      });
      await cka.compare(data, other);
      const expected = referenceCka(
        data.map((b) => ({ id: b })),
        other.map((b) => ({ id: b })),
        ['id'],
        ['id'],
      );
      const error = maxAbsoluteError(cka.export().cka, expected);
      assert.ok(error < 1e-7, `|CKA - float64| = ${error}`);
    });
  }
});

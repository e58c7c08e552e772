'use strict';
// Shared test helpers: fixture paths, seeded random batches, and an
// independent float64 reference of minibatch CKA written as plainly as
// possible (nothing here calls the addon).
const path = require('node:path');
const fs = require('node:fs');

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const fixture = (name) => path.join(FIXTURES, name);
const fixtureMeta = JSON.parse(fs.readFileSync(fixture('fixtures.json'), 'utf8'));
const pytorchReference = JSON.parse(fs.readFileSync(fixture('reference.json'), 'utf8'));

/**
 * Relative tolerance against the float64 reference. The engine's Gram matrices
 * are float32 (as are the features), so their entries carry rounding of order
 * eps·sqrt(d); how a BLAS orders its sums (gemm or syrk, blocking, threads)
 * moves results at the 1e-6 level.
 */
const GRAM_TOLERANCE = 1e-5;

/** A seeded standard-normal generator (mulberry32 + Box-Muller). */
function normalRng(seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => {
    const u = Math.max(uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** A float32 batch { data, shape } of n samples with the given feature shape. */
function randomBatch(rng, n, featureShape) {
  const size = featureShape.reduce((a, b) => a * b, n);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i += 1) data[i] = rng();
  return { data, shape: [n, ...featureShape] };
}

/** Batches of the given sizes. */
const randomBatches = (seed, sizes, featureShape) => {
  const rng = normalRng(seed);
  return sizes.map((n) => randomBatch(rng, n, featureShape));
};

/** The n x n Gram X Xᵀ of a tensor's rows, in float64. */
function gram(tensor) {
  const n = tensor.shape[0];
  const d = tensor.data.length / n;
  const x = Float64Array.from(tensor.data, Number);
  const k = new Float64Array(n * n);
  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j <= i; j += 1) {
      let sum = 0;
      for (let f = 0; f < d; f += 1) sum += x[i * d + f] * x[j * d + f];
      k[i * n + j] = sum;
      k[j * n + i] = sum;
    }
  }
  return k;
}

/** Unbiased HSIC of Song et al. (2012), eq. 3 of Nguyen et al. (2021), on two Grams. */
function hsic1(k, l, n) {
  let trace = 0;
  let sumK = 0;
  let sumL = 0;
  let rows = 0;
  for (let i = 0; i < n; i += 1) {
    let rowK = 0;
    let rowL = 0;
    for (let j = 0; j < n; j += 1) {
      if (i === j) continue;
      trace += k[i * n + j] * l[j * n + i];
      rowK += k[i * n + j];
      rowL += l[i * n + j];
    }
    sumK += rowK;
    sumL += rowL;
    rows += rowK * rowL;
  }
  return (trace + (sumK * sumL) / ((n - 1) * (n - 2)) - (2 / (n - 2)) * rows) / (n * (n - 3));
}

/**
 * Minibatch CKA from features: batches1[b][name] and batches2[b][name] are
 * tensors with the batch as first dimension. Returns rows1 x rows2 values,
 * null where a self-HSIC sum is not positive.
 */
function referenceCka(batches1, batches2, rows1, rows2) {
  const xy = rows1.map(() => rows2.map(() => 0));
  const xx = rows1.map(() => 0);
  const yy = rows2.map(() => 0);
  batches1.forEach((features1, b) => {
    const features2 = batches2[b];
    const n = features1[rows1[0]].shape[0];
    const k = rows1.map((name) => gram(features1[name]));
    const l = rows2.map((name) => gram(features2[name]));
    k.forEach((ka, a) => {
      xx[a] += hsic1(ka, ka, n);
      l.forEach((lb, c) => {
        xy[a][c] += hsic1(ka, lb, n);
      });
    });
    l.forEach((lb, c) => {
      yy[c] += hsic1(lb, lb, n);
    });
  });
  return xy.map((row, a) => row.map((v, c) => (xx[a] > 0 && yy[c] > 0 ? v / Math.sqrt(xx[a] * yy[c]) : null)));
}

/** Largest |a - b| / max(|b|, floor) over two matrices of equal shape; Infinity on shape or null mismatch. */
function maxRelativeError(actual, expected, floor = 1e-3) {
  if (actual.length !== expected.length) return Infinity;
  let worst = 0;
  actual.forEach((row, i) => {
    if (row.length !== expected[i].length) worst = Infinity;
    row.forEach((v, j) => {
      const e = expected[i][j];
      if ((v === null) !== (e === null)) worst = Infinity;
      else if (v !== null)
        worst = Math.max(worst, floor === Infinity ? Math.abs(v - e) : Math.abs(v - e) / Math.max(Math.abs(e), floor));
    });
  });
  return worst;
}

/** Largest |a - b| over two matrices of equal shape; Infinity on shape or null mismatch. */
const maxAbsoluteError = (actual, expected) => maxRelativeError(actual, expected, Infinity);

/** Collects warnings instead of printing them. */
function warningSink() {
  const warnings = [];
  return { warnings, onWarning: (w) => warnings.push(w) };
}

/** Writes a float32 C-order .npy file (format 1.0), independently of the package's reader. */
function writeNpy(file, data, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  Buffer.from([0x93]).copy(prefix, 0);
  prefix.write('NUMPY', 1, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]));
}

module.exports = {
  GRAM_TOLERANCE,
  fixture,
  hsic1,
  fixtureMeta,
  pytorchReference,
  normalRng,
  randomBatch,
  randomBatches,
  referenceCka,
  maxRelativeError,
  maxAbsoluteError,
  warningSink,
  writeNpy,
};

'use strict';
const assert = require('node:assert/strict');

const { CKA, loadModel } = require('..');
const {
  fixture,
  GRAM_TOLERANCE,
  pytorchReference,
  randomBatches,
  referenceCka,
  maxRelativeError,
  maxAbsoluteError,
  warningSink,
} = require('./helpers');

const load = (name) => loadModel(fixture(name));
const SIZES = [8, 5, 12, 7];

/** Features of every batch for the named layers, from Model.extract. */
async function featuresOf(model, batches, layers) {
  const out = [];
  for (const batch of batches) out.push(await model.extract(batch, layers));
  return out;
}

function assertIdentityLike(matrix, tolerance) {
  matrix.forEach((row, i) => {
    assert.ok(Math.abs(row[i] - 1) < tolerance, `diagonal ${i} is ${row[i]}`);
    row.forEach((v, j) => assert.ok(Math.abs(v - matrix[j][i]) < tolerance, `not symmetric at ${i},${j}`));
  });
}

describe('CKA against an independent float64 reference', () => {
  it('matches the TS reference from extracted features, all layers, batches of different sizes', async () => {
    const [m1, m2] = await Promise.all([load('mlp_scripted.pt'), load('mlp_traced.pt')]);
    const batches = randomBatches(11, SIZES, [12]);
    const cka = new CKA(m1, m2);
    await cka.compare(batches);
    const r = cka.export();
    const rows1 = m1.layers().map((l) => l.name);
    const rows2 = m2.layers().map((l) => l.name);
    assert.deepEqual(r.model1Layers, rows1);
    assert.deepEqual(r.model2Layers, rows2);
    assert.equal(r.samples, 32);
    assert.equal(r.batches, 4);
    const expected = referenceCka(
      await featuresOf(m1, batches, rows1),
      await featuresOf(m2, batches, rows2),
      rows1,
      rows2,
    );
    assert.ok(
      maxRelativeError(r.cka, expected) < GRAM_TOLERANCE,
      `relative error ${maxRelativeError(r.cka, expected)}`,
    );
  });

  it('matches the TS reference with repeated calls and picked calls (name#k rows)', async () => {
    const [m1, m2] = await Promise.all([load('convnet_traced.pt'), load('convnet_scripted.pt')]);
    const batches = randomBatches(12, SIZES, [3, 8, 8]);
    const cka = new CKA(m1, m2, {
      model1Layers: ['fc', 'relu', 'block1', 'stem'],
      model2Layers: ['relu#3', 'block2.bn', 'relu#1', 'pool'],
    });
    await cka.compare(batches);
    const r = cka.export();
    assert.deepEqual(r.model1Layers, ['fc', 'relu', 'relu#2', 'relu#3', 'block1', 'stem']);
    assert.deepEqual(r.model2Layers, ['relu#3', 'block2.bn', 'relu', 'pool']);
    const f1 = await featuresOf(m1, batches, ['fc', 'relu', 'block1', 'stem']);
    const f2 = await featuresOf(m2, batches, ['relu', 'block2.bn', 'pool']);
    const expected = referenceCka(f1, f2, r.model1Layers, r.model2Layers);
    assert.ok(
      maxRelativeError(r.cka, expected) < GRAM_TOLERANCE,
      `relative error ${maxRelativeError(r.cka, expected)}`,
    );
  });

  for (const [index, ref] of pytorchReference.comparisons.entries()) {
    it(`matches PyTorch's own float64 values (${ref.model1} vs ${ref.model2}, case ${index + 1})`, async () => {
      const m1 = await load(ref.model1);
      const m2 = ref.model2 === ref.model1 ? m1 : await load(ref.model2);
      const toBatches = (list) => list.map((b) => ({ data: Float32Array.from(b.data), shape: b.shape }));
      const cka = new CKA(m1, m2, { model1Layers: ref.request1, model2Layers: ref.request2, ...warningSink() });
      await cka.compare(toBatches(ref.batches1), ref.batches2 ? toBatches(ref.batches2) : undefined);
      const r = cka.export();
      assert.deepEqual(r.model1Layers, ref.layers1);
      assert.deepEqual(r.model2Layers, ref.layers2);
      // PyTorch's features come from the eager modules, whose float32 kernels
      // differ slightly from the TorchScript run: compare on CKA's own scale.
      assert.ok(maxAbsoluteError(r.cka, ref.cka) < 1e-6, `absolute error ${maxAbsoluteError(r.cka, ref.cka)}`);
    });
  }
});

describe('CKA properties', () => {
  it('a model against itself on the same data: diagonal 1, symmetric', async () => {
    const m = await load('convnet_scripted.pt');
    const cka = new CKA(m, m, { model1Name: 'a', model2Name: 'b' });
    await cka.compare(randomBatches(13, SIZES, [3, 8, 8]));
    const r = cka.export();
    assert.deepEqual(r.model1Layers, r.model2Layers);
    assertIdentityLike(r.cka, 1e-6);
  });

  it('is invariant to an orthogonal map, to scaling and to a large offset', async () => {
    // rotated_scripted: lin, rot = 2.5 Q (Q orthogonal), shift = +100, scale = -3.
    const m = await load('rotated_scripted.pt');
    const cka = new CKA(m, m, { model1Name: 'a', model2Name: 'b' });
    await cka.compare(randomBatches(14, [16, 16, 9], [12]));
    for (const row of cka.export().cka) for (const v of row) assert.ok(Math.abs(v - 1) < 1e-4, `CKA ${v} is not 1`);
  });

  it('the same model object on two data sets compares them, not data1 with itself', async () => {
    const m = await load('mlp_scripted.pt');
    const layers = ['fc1', 'act2', 'out'];
    const data1 = randomBatches(15, SIZES, [12]);
    const data2 = randomBatches(16, SIZES, [12]);
    const cka = new CKA(m, m, { model1Layers: layers, model2Layers: layers, ...warningSink() });
    await cka.compare(data1, data2);
    const r = cka.export();
    const expected = referenceCka(
      await featuresOf(m, data1, layers),
      await featuresOf(m, data2, layers),
      layers,
      layers,
    );
    assert.ok(maxRelativeError(r.cka, expected) < GRAM_TOLERANCE);
    assert.ok(
      r.cka.every((row, i) => Math.abs(row[i]) < 0.5),
      'unrelated data must not give a diagonal of 1',
    );
  });

  it('row order follows the order the layers were given in', async () => {
    const [m1, m2] = await Promise.all([load('mlp_scripted.pt'), load('mlp_traced.pt')]);
    const batches = randomBatches(17, SIZES, [12]);
    const forward = new CKA(m1, m2, { model1Layers: ['fc1', 'fc2', 'out'], model2Layers: ['act1', 'head'] });
    const reversed = new CKA(m1, m2, { model1Layers: ['out', 'fc2', 'fc1'], model2Layers: ['head', 'act1'] });
    await forward.compare(batches);
    await reversed.compare(batches);
    const a = forward.export();
    const b = reversed.export();
    assert.deepEqual(b.model1Layers, ['out', 'fc2', 'fc1']);
    assert.deepEqual(
      b.cka,
      [...a.cka].reverse().map((row) => [...row].reverse()),
    );
  });

  it('adds batches across compare() calls', async () => {
    const [m1, m2] = await Promise.all([load('mlp_scripted.pt'), load('mlp_traced.pt')]);
    const batches = randomBatches(18, SIZES, [12]);
    const once = new CKA(m1, m2);
    await once.compare(batches);
    const twice = new CKA(m1, m2);
    await twice.compare(batches.slice(0, 2));
    await twice.compare(batches.slice(2));
    assert.equal(twice.export().batches, 4);
    assert.ok(maxRelativeError(twice.export().cka, once.export().cka) < 1e-12);
  });

  it('precision float32 stays close to float64', async () => {
    const [m1, m2] = await Promise.all([load('convnet_traced.pt'), load('convnet_scripted.pt')]);
    const batches = randomBatches(19, SIZES, [3, 8, 8]);
    const exact = new CKA(m1, m2);
    const fast = new CKA(m1, m2, { precision: 'float32' });
    await exact.compare(batches);
    await fast.compare(batches);
    assert.ok(maxAbsoluteError(fast.export().cka, exact.export().cka) < 1e-5);
  });
});

describe('CKA data handling', () => {
  it('feeds models with several inputs (int64 token ids and float32 features)', async () => {
    const m = await load('two_inputs_scripted.pt');
    const { normalRng } = require('./helpers');
    const rng = normalRng(27);
    const batch = (n) => [
      {
        data: BigInt64Array.from({ length: n * 5 }, () => BigInt(Math.floor(Math.abs(rng()) * 16) % 50)),
        shape: [n, 5],
      },
      { data: Float32Array.from({ length: n * 4 }, rng), shape: [n, 4] },
    ];
    const data = [batch(7), batch(9)];
    const layers = ['embed', 'proj', 'sumdiff', 'mix'];
    const cka = new CKA(m, m, { model1Layers: layers, model2Layers: layers, model2Name: 'same' });
    await cka.compare(data);
    const r = cka.export();
    const features = await featuresOf(m, data, layers);
    assert.deepEqual(features[0].embed.shape, [7, 5, 8]);
    // sumdiff returns { sum, diff }: its first value is used.
    assert.deepEqual(features[0].sumdiff.shape, [7, 8]);
    const { embed, proj, sumdiff } = features[0];
    for (let i = 0; i < 7 * 8; i += 1) {
      const row = Math.floor(i / 8);
      const col = i % 8;
      let mean = 0;
      for (let t = 0; t < 5; t += 1) mean += embed.data[(row * 5 + t) * 8 + col] / 5;
      assert.ok(Math.abs(sumdiff.data[i] - (mean + proj.data[i])) < 1e-5, 'sumdiff must give its "sum" entry');
    }
    assert.ok(maxRelativeError(r.cka, referenceCka(features, features, layers, layers)) < GRAM_TOLERANCE);
    assertIdentityLike(r.cka, 1e-6);
  });

  it('accepts async iterables, counts skipped batches with n < 4 and warns', async () => {
    const [m1, m2] = await Promise.all([load('mlp_scripted.pt'), load('mlp_traced.pt')]);
    const batches = randomBatches(20, [6, 3, 6], [12]);
    async function* stream() {
      yield* batches;
    }
    const sink = warningSink();
    const cka = new CKA(m1, m2, sink);
    const progress = [];
    const summary = await cka.compare(stream(), undefined, { onProgress: (p) => progress.push(p) });
    assert.deepEqual(summary, { batches: 2, samples: 12, skipped: 1, position: 3, stoppedEarly: null, resumed: 0 });
    assert.equal(progress.length, 3);
    assert.deepEqual(
      sink.warnings.map((w) => w.code),
      ['TORCH_CKA_SKIPPED_BATCH'],
    );
    assert.match(sink.warnings[0].message, /batch 1.*3 samples.*at least 4/);
    assert.equal(cka.export().samples, 12);
  });

  it('stops at the shorter of two streams and says which', async () => {
    const m = await load('mlp_scripted.pt');
    const sink = warningSink();
    const cka = new CKA(m, m, { ...sink, model2Name: 'other' });
    const summary = await cka.compare(randomBatches(21, [5, 5, 5], [12]), randomBatches(22, [5, 5], [12]));
    assert.equal(summary.stoppedEarly, 'data2');
    assert.equal(summary.batches, 2);
    assert.ok(sink.warnings.some((w) => w.code === 'TORCH_CKA_UNEVEN_DATA' && /data2 ran out after 2/.test(w.message)));
  });

  it('gives null, and a warning naming the layer, for a constant layer', async () => {
    const m = await load('odd_scripted.pt');
    const sink = warningSink();
    const cka = new CKA(m, m, { model1Layers: ['const', 'final'], model2Layers: ['final', 'const'], ...sink });
    await cka.compare(randomBatches(23, [6, 6], [6]));
    const r = cka.export();
    assert.deepEqual(r.cka[0], [null, null]);
    assert.equal(r.cka[1][1], null);
    assert.ok(Math.abs(r.cka[1][0] - 1) < 1e-6);
    assert.ok(sink.warnings.some((w) => w.code === 'TORCH_CKA_CONSTANT_LAYER' && /'const'/.test(w.message)));
    assert.ok(!JSON.stringify(r).includes('NaN'));
  });

  it('by default takes every submodule that runs, leaving out and naming the ones that do not', async () => {
    const m = await load('odd_scripted.pt');
    const sink = warningSink();
    const cka = new CKA(m, m, { model2Name: 'odd2', ...sink });
    await cka.compare(randomBatches(24, [6], [6]));
    const r = cka.export();
    // count returns an int, items is a ModuleList (no forward), unused never runs.
    assert.deepEqual(r.model1Layers, ['pair', 'pair.lin', 'listy', 'const', 'items.0', 'items.1', 'final']);
    const leftOut = sink.warnings.filter((w) => w.code === 'TORCH_CKA_LAYER_LEFT_OUT');
    assert.deepEqual(
      leftOut.map((w) => [w.model, w.message]),
      [
        [
          'model1',
          "1 layer of model 'odd_scripted' is left out of the comparison; did not run during batch 0 (1): unused",
        ],
        ['model2', "1 layer of model 'odd2' is left out of the comparison; did not run during batch 0 (1): unused"],
      ],
    );
    for (const w of leftOut)
      assert.deepEqual(w.layers, [
        { name: 'unused', code: 'ERR_LAYER_NOT_RUN', reason: 'it did not run during batch 0' },
      ]);
  });

  describe('a model whose TransformerEncoderLayers run fused (eval mode, no autograd)', () => {
    const SUBMODULES = [
      'self_attn',
      'self_attn.out_proj',
      'linear1',
      'dropout',
      'linear2',
      'norm1',
      'norm2',
      'dropout1',
      'dropout2',
    ];
    const leftOutLayers = (batch) =>
      [0, 1].flatMap((i) =>
        SUBMODULES.map((s) => ({
          name: `encoder.layers.${i}.${s}`,
          code: 'ERR_LAYER_NOT_RUN',
          reason: `it did not run during batch ${batch}`,
        })),
      );
    const message = (name, batch) =>
      `18 layers of model '${name}' are left out of the comparison; did not run during batch ${batch} (18): ` +
      'encoder.layers.*.{self_attn,self_attn.out_proj,linear1,dropout,linear2,norm1,norm2,dropout1,dropout2} (2 each)';
    const ROWS = ['patch', 'encoder', 'encoder.layers.0', 'encoder.layers.1', 'norm', 'head'];

    it('gives one TORCH_CKA_LAYER_LEFT_OUT per model, counting the layers, with the full list on the warning', async () => {
      const [vit, conv] = await Promise.all([load('transformer_scripted.pt'), load('convnet_traced.pt')]);
      const sink = warningSink();
      const cka = new CKA(vit, conv, { model1Name: 'vit', ...sink });
      await cka.compare(randomBatches(31, [6, 5, 7], [3, 8, 8]));
      await cka.compare(randomBatches(32, [6], [3, 8, 8]));
      assert.deepEqual(cka.export().model1Layers, ROWS);
      // convnet_traced leaves nothing out: one warning in all, for model 1.
      assert.deepEqual(sink.warnings, [
        { code: 'TORCH_CKA_LAYER_LEFT_OUT', message: message('vit', 0), model: 'model1', layers: leftOutLayers(0) },
      ]);
    });

    it('tells the two models apart when they have the same name', async () => {
      const [a, b] = await Promise.all([load('transformer_scripted.pt'), load('transformer_scripted.pt')]);
      const sink = warningSink();
      const cka = new CKA(a, b, sink);
      await cka.compare(randomBatches(33, [5, 5], [3, 8, 8]));
      assert.deepEqual(cka.export().model2Layers, ROWS);
      assert.deepEqual(
        sink.warnings.map((w) => w.code),
        ['TORCH_CKA_SAME_NAMES', 'TORCH_CKA_LAYER_LEFT_OUT', 'TORCH_CKA_LAYER_LEFT_OUT'],
      );
      const [, first, second] = sink.warnings;
      assert.deepEqual([first.model, second.model], ['model1', 'model2']);
      for (const w of [first, second]) {
        assert.equal(w.message, message('transformer_scripted', 0));
        assert.deepEqual(w.layers, leftOutLayers(0));
      }
    });

    it('after a skipped first batch, says so once, for the batch that fixes the rows', async () => {
      const [vit, conv] = await Promise.all([load('transformer_scripted.pt'), load('convnet_traced.pt')]);
      const sink = warningSink();
      const cka = new CKA(vit, conv, { model1Name: 'vit', skipNonFinite: true, ...sink });
      const batches = randomBatches(34, [5, 5, 5], [3, 8, 8]);
      batches[0].data[3] = Number.NaN;
      const summary = await cka.compare(batches);
      assert.equal(summary.skipped, 1);
      assert.deepEqual(
        sink.warnings.map((w) => w.code),
        ['TORCH_CKA_SKIPPED_BATCH', 'TORCH_CKA_LAYER_LEFT_OUT'],
      );
      assert.match(sink.warnings[0].message, /^Skipped batch 0: non-finite values/);
      assert.equal(sink.warnings[1].message, message('vit', 1));
      assert.deepEqual(sink.warnings[1].layers, leftOutLayers(1));
    });
  });

  it('warns when both models have the same name', async () => {
    const m = await load('mlp_scripted.pt');
    const sink = warningSink();
    new CKA(m, m, sink); // eslint-disable-line no-new
    assert.deepEqual(
      sink.warnings.map((w) => w.code),
      ['TORCH_CKA_SAME_NAMES'],
    );
  });

  it('exports the names given and the counts', async () => {
    const [m1, m2] = await Promise.all([load('mlp_scripted.pt'), load('mlp_traced.pt')]);
    const cka = new CKA(m1, m2, { model1Name: 'A', model2Name: 'B', dataset1Name: 'train', dataset2Name: 'test' });
    await cka.compare(randomBatches(25, [5, 6], [12]), randomBatches(26, [5, 6], [12]));
    const r = cka.export();
    assert.equal(r.model1Name, 'A');
    assert.equal(r.model2Name, 'B');
    assert.equal(r.dataset1Name, 'train');
    assert.equal(r.dataset2Name, 'test');
    assert.equal(r.samples, 11);
    assert.equal(r.batches, 2);
    assert.deepEqual(Object.keys(r).sort(), [
      'batches',
      'cka',
      'dataset1Name',
      'dataset2Name',
      'measures',
      'model1Layers',
      'model1Name',
      'model1Views',
      'model2Layers',
      'model2Name',
      'model2Views',
      'samples',
    ]);
  });
});

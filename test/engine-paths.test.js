'use strict';
// The engine's shortcuts give the same numbers as the plain way: Grams reused
// for tensors that are the same object (and only then), one forward pass for
// a self-comparison, both models at once on two threads, thread settings, and
// the memory figures stats() reports.
const assert = require('node:assert/strict');

const { CKA, loadModel } = require('..');
const { fixture, pytorchReference, randomBatches, maxAbsoluteError, warningSink } = require('./helpers');

const inplaceRef = pytorchReference.comparisons.find((c) => c.model1 === 'inplace_scripted.pt');
const toBatches = (list) => list.map((b) => ({ data: Float32Array.from(b.data), shape: b.shape }));

describe('engine paths', () => {
  const models = [];
  const load = async (name) => {
    const model = await loadModel(fixture(name));
    models.push(model);
    return model;
  };
  after(() => models.forEach((m) => m.dispose()));

  describe('tensors shared between layers', () => {
    it('reuses a Gram only for the same tensor unchanged: Sequential = its last child, not ReLU(inplace) or x.mul_(x)', async () => {
      // Two loads: two forward passes, each collecting its own Grams.
      const m1 = await load('inplace_scripted.pt');
      const m2 = await load('inplace_scripted.pt');
      const cka = new CKA(m1, m2, { model1Name: 'a', model2Name: 'b', concurrent: false, ...warningSink() });
      await cka.compare(toBatches(inplaceRef.batches1));
      const r = cka.export();
      assert.deepEqual(r.model1Layers, inplaceRef.layers1);
      // PyTorch copied each output as its hook ran, so in-place changes made
      // later (act on lin's output, square on square.inner's) are not in it.
      assert.ok(
        maxAbsoluteError(r.cka, inplaceRef.cka) < 1e-6,
        `absolute error ${maxAbsoluteError(r.cka, inplaceRef.cka)}`,
      );
      const lin = r.model1Layers.indexOf('lin');
      const act = r.model1Layers.indexOf('act');
      assert.ok(r.cka[lin][act] < 0.99, 'lin and act must differ: act changed lin’s tensor in place');
      // seq's output is seq.1's tensor: one reuse per forward pass, and no other.
      const batches = inplaceRef.batches1.length;
      assert.equal(cka.stats().reusedGrams, 2 * batches);
      assert.equal(cka.stats().forwards, 2 * batches);
    });
  });

  describe('the same model on the same data', () => {
    it('runs one forward pass per batch and shares the Grams', async () => {
      const m = await load('convnet_traced.pt');
      const batches = randomBatches(21, [8, 8, 8], [3, 8, 8]);
      const once = new CKA(m, m, { model1Name: 'a', model2Name: 'b', ...warningSink() });
      await once.compare(batches);
      assert.equal(once.stats().forwards, 3);
      const r = once.export();
      const rows = r.model1Layers.length;
      assert.equal(once.stats().gramBytes, rows * 8 * 8 * 4); // one set, shared

      // Two loads of the file: two passes per batch, the same matrix.
      const other = await load('convnet_traced.pt');
      const twice = new CKA(m, other, { model1Name: 'a', model2Name: 'b', ...warningSink() });
      await twice.compare(batches);
      assert.equal(twice.stats().forwards, 6);
      assert.ok(maxAbsoluteError(twice.export().cka, r.cka) < 1e-12);
      for (let i = 0; i < rows; i += 1) assert.ok(Math.abs(r.cka[i][i] - 1) < 1e-6, `diagonal ${i}: ${r.cka[i][i]}`);
    });

    it('runs one pass for two different layer lists, and two for two data sets', async () => {
      const m = await load('convnet_traced.pt');
      const batches = randomBatches(22, [8, 8], [3, 8, 8]);
      const lists = { model1Layers: ['stem', 'relu'], model2Layers: ['block2', 'fc'] };
      const one = new CKA(m, m, { model1Name: 'a', model2Name: 'b', ...lists, ...warningSink() });
      await one.compare(batches);
      assert.equal(one.stats().forwards, 2);
      const other = await load('convnet_traced.pt');
      const ref = new CKA(m, other, { model1Name: 'a', model2Name: 'b', ...lists, ...warningSink() });
      await ref.compare(batches);
      assert.ok(maxAbsoluteError(one.export().cka, ref.export().cka) < 1e-12);

      const two = new CKA(m, m, { model1Name: 'a', model2Name: 'b', ...warningSink() });
      await two.compare(batches, randomBatches(23, [8, 8], [3, 8, 8]));
      assert.equal(two.stats().forwards, 4);
    });
  });

  describe('both models at once', () => {
    it('gives exactly the sequential result, and reports the mode and threads', async () => {
      const [m1, m2] = [await load('convnet_traced.pt'), await load('convnet_scripted.pt')];
      const batches = randomBatches(24, [16, 16, 9], [3, 8, 8]);
      const results = [];
      for (const concurrent of [false, true]) {
        const cka = new CKA(m1, m2, { concurrent, threads: 1, ...warningSink() });
        await cka.compare(batches);
        assert.equal(cka.stats().concurrent, concurrent);
        assert.equal(cka.stats().threads, 1);
        results.push(cka.export());
      }
      assert.deepEqual(results[1].cka, results[0].cka);
      assert.deepEqual(results[1].model2Layers, results[0].model2Layers);
    });

    it('reports errors from the second model’s thread', async () => {
      const [m1, m2] = [await load('convnet_traced.pt'), await load('mlp_scripted.pt')];
      const cka = new CKA(m1, m2, { concurrent: true, ...warningSink() });
      await assert.rejects(cka.compare(randomBatches(25, [8], [3, 8, 8])), {
        code: 'ERR_FORWARD_FAILED',
        message: /mlp_scripted/,
      });
      // The object stays usable.
      await assert.rejects(cka.compare(randomBatches(26, [8], [3, 8, 8])), { code: 'ERR_FORWARD_FAILED' });
    });
  });

  describe('options and stats', () => {
    it('rejects bad threads and concurrent values', async () => {
      const m = await load('mlp_scripted.pt');
      assert.throws(() => new CKA(m, m, { threads: 0 }), {
        code: 'ERR_INVALID_ARG',
        message: /integer >= 1 for options\.threads/,
      });
      assert.throws(() => new CKA(m, m, { threads: 1.5 }), { code: 'ERR_INVALID_ARG' });
      assert.throws(() => new CKA(m, m, { concurrent: 'yes' }), { code: 'ERR_INVALID_ARG', message: /boolean/ });
    });

    it('reports the bytes of the sums and of the last batch’s Grams', async () => {
      const [m1, m2] = [await load('mlp_scripted.pt'), await load('mlp_traced.pt')];
      const cka = new CKA(m1, m2, {
        model1Layers: ['fc1', 'act1', 'out'],
        model2Layers: ['fc2', 'out'],
        ...warningSink(),
      });
      await cka.compare(randomBatches(27, [10, 6], [12]));
      const s = cka.stats();
      assert.equal(s.accumulatorBytes, (3 * 2 + 3 + 2) * 8);
      assert.equal(s.gramBytes, (3 + 2) * 6 * 6 * 4);
      assert.ok(s.blockBytes > 0 && s.blockBytes <= 32 * 2 ** 20);
      assert.equal(s.forwards, 4);
    });
  });
});

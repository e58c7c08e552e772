'use strict';
// Several batches in flight (options.workers): each worker runs both models
// on its own batch, and the sums are added in batch order, so the matrices do
// not depend on the number of workers, bit for bit, whatever the batches do
// (too small, non-finite, rows fixed by the first one, σ fixed by the first one).
const assert = require('node:assert/strict');

const { CKA, loadModel, runtimeInfo } = require('..');
const { fixture, randomBatches, warningSink } = require('./helpers');

describe('batches in flight', () => {
  let m1;
  let m2;
  before(async () => {
    [m1, m2] = await Promise.all([loadModel(fixture('convnet_traced.pt')), loadModel(fixture('convnet_scripted.pt'))]);
  });
  after(() => [m1, m2].forEach((m) => m.dispose()));

  // Batch 3 has 3 samples (skipped), batch 5 a NaN (skipped with skipNonFinite).
  const batches = randomBatches(1701, [8, 9, 8, 3, 10, 8, 7, 9], [3, 8, 8]);
  batches[5].data[17] = NaN;

  async function run(workers) {
    const cka = new CKA(m1, m2, {
      workers,
      measures: ['cka', 'rbf_cka', 'dcor'],
      skipNonFinite: true,
      model1Name: 'a',
      model2Name: 'b',
      ...warningSink(),
    });
    const summary = await cka.compare(batches);
    return { summary, result: cka.export(), stats: cka.stats() };
  }

  it('gives the same matrices, bit for bit, with 1, 2, 3 and 8 workers', async () => {
    const one = await run(1);
    assert.equal(one.stats.workers, 1);
    assert.equal(one.summary.batches, 6);
    assert.equal(one.summary.skipped, 2);
    for (const workers of [2, 3, 8]) {
      const many = await run(workers);
      assert.ok(many.stats.workers > 1, `${workers} workers ran ${many.stats.workers} batches at once`);
      assert.deepEqual(many.result.model1Layers, one.result.model1Layers);
      assert.deepEqual(many.result.model2Layers, one.result.model2Layers);
      for (const id of ['cka', 'rbf_cka', 'dcor']) {
        assert.deepStrictEqual(many.result.measures[id], one.result.measures[id], `${id} with ${workers} workers`);
      }
      assert.deepStrictEqual(many.result.rbf, one.result.rbf);
      assert.equal(many.summary.batches, one.summary.batches);
      assert.equal(many.summary.skipped, one.summary.skipped);
      assert.equal(many.summary.position, one.summary.position);
    }
  });

  it('the default is one worker per usable core (runtimeInfo().cores), one thread each', async () => {
    const cka = new CKA(m1, m2, { model1Name: 'a', model2Name: 'b', ...warningSink() });
    await cka.compare(batches.slice(0, 3));
    const stats = cka.stats();
    assert.equal(stats.threads, 1);
    assert.equal(stats.workers, Math.min(3, runtimeInfo().cores));
    const times = stats.times;
    assert.equal(times.batches, 3);
    for (const key of ['forwardMs', 'tapMs', 'gramMs', 'pairMs', 'waitMs', 'wallMs']) {
      assert.ok(Number.isFinite(times[key]) && times[key] >= 0, `${key} = ${times[key]}`);
    }
    assert.ok(times.forwardMs > 0 && times.gramMs > 0 && times.pairMs > 0);
  });

  it('a failing batch among those in flight: the ones before it are added, none after', async () => {
    const bad = randomBatches(1702, [8, 8, 8, 8], [3, 8, 8]);
    bad[2].data[5] = Infinity;
    const cka = new CKA(m1, m2, { workers: 4, model1Name: 'a', model2Name: 'b', ...warningSink() });
    await assert.rejects(cka.compare(bad), { code: 'ERR_NON_FINITE', message: /batch 2/ });
    assert.equal(cka.export().batches, 2);
    const alone = new CKA(m1, m2, { workers: 1, model1Name: 'a', model2Name: 'b', ...warningSink() });
    await alone.compare(bad.slice(0, 2));
    assert.deepStrictEqual(cka.export().cka, alone.export().cka);
  });

  it('rejects a workers value that is not a positive integer', () => {
    assert.throws(() => new CKA(m1, m2, { workers: 0 }), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => new CKA(m1, m2, { workers: 1.5 }), { code: 'ERR_INVALID_ARG' });
  });
});

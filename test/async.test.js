'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const { CKA, loadModel } = require('..');
const { fixture, randomBatches } = require('./helpers');

describe('async behaviour', () => {
  it('keeps the event loop turning while a long native batch runs', async () => {
    const [m1, m2] = await Promise.all([
      loadModel(fixture('convnet_traced.pt')),
      loadModel(fixture('convnet_scripted.pt')),
    ]);
    // One large batch: a single native step that takes a while.
    const cka = new CKA(m1, m2);
    let ticks = 0;
    let running = true;
    const spin = () => {
      if (!running) return;
      ticks += 1;
      setImmediate(spin);
    };
    setImmediate(spin);
    const done = cka.compare(randomBatches(30, [1024], [3, 8, 8]));
    await done;
    running = false;
    // Blocking the loop for the whole step would leave ticks at 0 or 1.
    assert.ok(ticks > 20, `only ${ticks} event-loop turns during compare()`);
  });

  it("loads and runs in a worker_threads Worker, giving the main thread's result", async () => {
    const batches = randomBatches(31, [6, 7], [12]);
    const [m1, m2] = await Promise.all([loadModel(fixture('mlp_scripted.pt')), loadModel(fixture('mlp_traced.pt'))]);
    const cka = new CKA(m1, m2);
    await cka.compare(batches);
    const expected = cka.export().cka;

    const root = path.join(__dirname, '..');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { CKA, loadModel } = require(workerData.root);
      (async () => {
        const m1 = await loadModel(workerData.a);
        const m2 = await loadModel(workerData.b);
        const cka = new CKA(m1, m2);
        await cka.compare(workerData.batches);
        parentPort.postMessage(cka.export().cka);
      })().catch((error) => parentPort.postMessage({ error: error.message }));`;
    const worker = new Worker(code, {
      eval: true,
      workerData: { root, a: fixture('mlp_scripted.pt'), b: fixture('mlp_traced.pt'), batches },
    });
    const result = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.deepEqual(result, expected);
  });
});

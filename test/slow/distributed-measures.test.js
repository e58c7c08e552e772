'use strict';
// rbf_cka and dcor in a distributed compare (c10d, Gloo on 127.0.0.1): every
// rank fixes the RBF σ from the stream's batch 0 (ranks other than 0 run it
// once, adding nothing), so that the summed matrices equal one process's.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel, openDataset, runtimeInfo } = require('../..');
const { fixture, normalRng, writeNpy } = require('../helpers');
const { runRanks } = require('../helpers/ranks');

const MODEL1 = fixture('mlp_scripted.pt');
const MODEL2 = fixture('mlp_traced.pt');
const MEASURES = ['cka', 'rbf_cka', 'dcor'];

describe('distributed compare with rbf_cka and dcor (c10d, loopback)', function () {
  this.timeout(120000);
  let dir;
  let npy;

  before(function () {
    if (!runtimeInfo().distributedBackends.includes('gloo')) {
      throw new Error('this build has no Gloo backend: install libgloo-dev and rebuild (npm rebuild)');
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-dist-measures-'));
    const rng = normalRng(11);
    npy = path.join(dir, 'x70.npy');
    writeNpy(
      npy,
      Float32Array.from({ length: 70 * 12 }, () => rng()),
      [70, 12],
    );
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const world of [2, 3]) {
    it(`${world} ranks: every measure and σ equal the single-process run`, async () => {
      const [m1, m2] = await Promise.all([loadModel(MODEL1), loadModel(MODEL2)]);
      const cka = new CKA(m1, m2, { measures: MEASURES, onWarning: () => undefined });
      await cka.compare(await openDataset(npy, { batchSize: 8 }));
      const single = cka.export();
      const ranks = await runRanks(
        dir,
        Array.from({ length: world }, () => ({ data: npy, source: 'dataset', measures: MEASURES })),
      );
      for (const [rank, r] of ranks.entries()) {
        assert.equal(r.code, 0, `rank ${rank}: ${r.stderr} ${JSON.stringify(r.output?.error)}`);
        const got = r.output.result;
        assert.deepEqual(got.rbf, single.rbf, `rank ${rank}: σ from batch 0 of the stream`);
        for (const id of MEASURES) {
          got.measures[id].forEach((row, i) =>
            row.forEach((v, j) => {
              const want = single.measures[id][i][j];
              if (want === null) assert.equal(v, null);
              else assert.ok(Math.abs(v - want) < 1e-10, `rank ${rank} ${id} ${i},${j}: ${v} vs ${want}`);
            }),
          );
        }
        assert.equal(got.batches, single.batches);
      }
    });
  }

  it('a one-shot generator as data: the calibrating rank fails with ERR_INVALID_ARG saying why, and so does the job', async () => {
    const ranks = await runRanks(
      dir,
      Array.from({ length: 2 }, () => ({ data: npy, source: 'generator', measures: MEASURES })),
    );
    const failed = ranks[1].output?.error;
    assert.equal(failed?.code, 'ERR_INVALID_ARG', `${ranks[1].stderr} ${JSON.stringify(ranks[1].output)}`);
    assert.match(failed.message, /rbf_cka in a distributed run .* data1 is an iterator that can be read only once/);
    assert.ok(ranks[0].output?.error, `rank 0 must fail too: ${JSON.stringify(ranks[0].output)}`);
  });
});

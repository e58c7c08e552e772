'use strict';
// Sharded compare() over several processes on c10d (TCPStore + Gloo), on
// 127.0.0.1: every rank holds the single-process matrix, counts add up, and
// dead, stalled, missing or mismatched ranks end in coded errors within the
// timeout, never a hang.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { CKA, ErrorCodes, loadModel, openDataset, runtimeInfo } = require('../..');
const { fixture, normalRng, writeNpy } = require('../helpers');
const { freePort, runRanks } = require('../helpers/ranks');

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const MODEL1 = fixture('mlp_scripted.pt');
const MODEL2 = fixture('mlp_traced.pt');

function maxDifference(a, b) {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i += 1) {
    assert.equal(a[i].length, b[i].length);
    for (let j = 0; j < a[i].length; j += 1) {
      if (a[i][j] === null || b[i][j] === null) assert.equal(a[i][j], b[i][j]);
      else max = Math.max(max, Math.abs(a[i][j] - b[i][j]));
    }
  }
  return max;
}

describe('distributed compare (c10d, loopback)', function () {
  this.timeout(120000);
  let dir;
  let npy9; // 70 samples: 9 batches of 8 (the last has 6)
  let npy10; // 80 samples: 10 batches
  const single = new Map();

  /** The same comparison in this process, without distribution. */
  async function singleProcess(data, batchSize = 8) {
    const key = `${data}:${batchSize}`;
    if (!single.has(key)) {
      const [m1, m2] = await Promise.all([loadModel(MODEL1), loadModel(MODEL2)]);
      const cka = new CKA(m1, m2, { onWarning: () => undefined });
      await cka.compare(await openDataset(data, { batchSize }));
      single.set(key, cka.export());
    }
    return single.get(key);
  }

  before(function () {
    if (!runtimeInfo().distributedBackends.includes('gloo')) {
      throw new Error('this build has no Gloo backend: install libgloo-dev and rebuild (npm rebuild)');
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-dist-'));
    const rng = normalRng(7);
    const make = (n) => Float32Array.from({ length: n * 12 }, () => rng());
    npy9 = path.join(dir, 'x70.npy');
    writeNpy(npy9, make(70), [70, 12]);
    npy10 = path.join(dir, 'x80.npy');
    writeNpy(npy10, make(80), [80, 12]);
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases = [
    { world: 2, data: () => npy9, batches: 9, source: 'dataset', what: '2 ranks, 9 batches (uneven: 5 + 4)' },
    { world: 2, data: () => npy10, batches: 10, source: 'dataset', what: '2 ranks, 10 batches (even)' },
    { world: 3, data: () => npy10, batches: 10, source: 'dataset', what: '3 ranks, 10 batches (uneven: 4 + 3 + 3)' },
    { world: 3, data: () => npy9, batches: 9, source: 'array', what: '3 ranks, 9 batches from a plain array' },
  ];
  for (const c of cases) {
    it(`${c.what}: every rank holds the single-process matrix (1e-9); counts add up`, async () => {
      const data = c.data();
      const ranks = await runRanks(
        dir,
        Array.from({ length: c.world }, () => ({ data, source: c.source })),
      );
      const reference = await singleProcess(data);
      let localBatches = 0;
      let localSamples = 0;
      for (const [r, rank] of ranks.entries()) {
        assert.equal(rank.code, 0, `rank ${r}: ${JSON.stringify(rank.output?.error)} ${rank.stderr}`);
        const { result, summary } = rank.output;
        assert.ok(maxDifference(result.cka, reference.cka) <= 1e-9, `rank ${r} differs`);
        assert.deepEqual(result.model1Layers, reference.model1Layers);
        assert.equal(result.batches, c.batches);
        assert.equal(result.samples, reference.samples);
        assert.equal(summary.batches, c.batches);
        assert.equal(summary.samples, reference.samples);
        assert.equal(summary.distributed.rank, r);
        assert.equal(summary.distributed.worldSize, c.world);
        assert.equal(summary.distributed.backend, 'gloo');
        // Rank r takes batches r, r + W, ...
        const own = Math.ceil((c.batches - r) / c.world);
        assert.equal(summary.distributed.local.batches, own, `rank ${r}'s share`);
        localBatches += summary.distributed.local.batches;
        localSamples += summary.distributed.local.samples;
      }
      assert.equal(localBatches, c.batches);
      assert.equal(localSamples, reference.samples);
    });
  }

  it('more ranks than batches: a rank with no batch still joins the all-reduce', async () => {
    const ranks = await runRanks(dir, [
      { data: npy9, limit: 16 },
      { data: npy9, limit: 16 },
      { data: npy9, limit: 16 },
    ]);
    const reference = await (async () => {
      const [m1, m2] = await Promise.all([loadModel(MODEL1), loadModel(MODEL2)]);
      const cka = new CKA(m1, m2, { onWarning: () => undefined });
      await cka.compare(await openDataset(npy9, { batchSize: 8, limit: 16 }));
      return cka.export();
    })();
    assert.deepEqual(
      ranks.map((r) => r.output?.summary?.distributed?.local?.batches),
      [1, 1, 0],
    );
    for (const rank of ranks) {
      assert.equal(rank.code, 0, rank.stderr);
      assert.ok(maxDifference(rank.output.result.cka, reference.cka) <= 1e-9);
      assert.equal(rank.output.result.batches, 2);
    }
  });

  it("rank 0's progress shows the whole job", async () => {
    const ranks = await runRanks(dir, [{ data: npy10 }, { data: npy10 }]);
    assert.deepEqual(
      ranks.map((r) => r.code),
      [0, 0],
    );
    const lines = fs.readFileSync(ranks[0].progressFile, 'utf8').trim().split('\n').map(JSON.parse);
    const last = lines[lines.length - 1];
    assert.equal(last.distributed.job.batches, 10);
    assert.equal(last.distributed.job.samples, 80);
    assert.equal(last.distributed.job.ranksDone, 2);
    assert.ok(!fs.existsSync(ranks[1].progressFile), 'rank 1 reports no job progress');
  });

  it('checkpoints are per rank; the same job run again resumes every share and ends with the same matrix', async () => {
    const checkpoint = path.join(dir, 'ck.json');
    const job = { data: npy9, checkpoint };
    const first = await runRanks(dir, [job, job]);
    assert.deepEqual(
      first.map((r) => r.code),
      [0, 0],
    );
    assert.ok(fs.existsSync(`${checkpoint}.rank0-of-2`) && fs.existsSync(`${checkpoint}.rank1-of-2`));
    assert.ok(!fs.existsSync(checkpoint));
    const again = await runRanks(dir, [job, job]);
    const reference = await singleProcess(npy9);
    for (const [r, rank] of again.entries()) {
      assert.equal(rank.code, 0, rank.stderr);
      // Everything was restored: nothing compared in this run, the same result.
      assert.equal(rank.output.summary.resumed, r === 0 ? 5 : 4);
      assert.equal(rank.output.summary.distributed.local.batches, 0);
      assert.equal(rank.output.result.batches, 9);
      assert.ok(maxDifference(rank.output.result.cka, reference.cka) <= 1e-9);
    }
  });

  describe('faults', () => {
    it('a rank killed mid-run: the survivors fail with ERR_DIST_TIMEOUT within the timeout', async () => {
      const timeout = 4000;
      const job = { data: npy10, batchSize: 4, distributed: { timeout }, delayMs: 150 };
      const ranks = await runRanks(dir, [job, { ...job, dieAfter: 1 }, job]);
      assert.equal(ranks[1].signal, 'SIGKILL');
      const killedAt = Number(fs.readFileSync(`${ranks[1].out}.killed`, 'utf8'));
      for (const r of [0, 2]) {
        assert.equal(ranks[r].code, 1, ranks[r].stderr);
        assert.equal(ranks[r].output.error.code, ErrorCodes.DIST_TIMEOUT, ranks[r].output.error.message);
        assert.match(ranks[r].output.error.message, /Rank 1 has not been heard from for \d/);
        // One timeout after the kill, plus the heartbeat polling (1 s) and a batch.
        const after = ranks[r].output.at - killedAt;
        assert.ok(after >= timeout && after < timeout + 2500, `rank ${r} gave up ${after} ms after the kill`);
      }
    });

    it('rank 0 (the store) killed: the others fail with ERR_DIST_TIMEOUT at once', async () => {
      const job = { data: npy10, batchSize: 4, distributed: { timeout: 60000 }, delayMs: 150 };
      const started = Date.now();
      const ranks = await runRanks(dir, [{ ...job, dieAfter: 1 }, job]);
      assert.equal(ranks[0].signal, 'SIGKILL');
      assert.equal(ranks[1].output.error.code, ErrorCodes.DIST_TIMEOUT, ranks[1].output.error.message);
      assert.match(ranks[1].output.error.message, /lost its connection/);
      assert.ok(Date.now() - started < 30000, 'did not wait for the 60 s timeout');
    });

    it('a stalled rank (SIGSTOP) makes the others fail with ERR_DIST_TIMEOUT', async () => {
      const timeout = 3000;
      const job = { data: npy10, batchSize: 8, distributed: { timeout } };
      const started = Date.now();
      const ranks = await runRanks(dir, [job, { ...job, stallAfter: 1 }], { reap: true });
      assert.equal(ranks[0].output.error.code, ErrorCodes.DIST_TIMEOUT, ranks[0].output.error.message);
      assert.match(ranks[0].output.error.message, /Rank 1 has not been heard from/);
      assert.ok(Date.now() - started < timeout + 8000);
    });

    it('a rank that never arrives: ERR_DIST_TIMEOUT naming it, within the timeout', async () => {
      const started = Date.now();
      const ranks = await runRanks(dir, [{ data: npy9, distributed: { timeout: 2000 } }], { worldSize: 2 });
      const elapsed = Date.now() - started;
      assert.equal(ranks[0].output.error.code, ErrorCodes.DIST_TIMEOUT);
      assert.match(ranks[0].output.error.message, /waited 2 s for all 2 ranks .* 1 arrived; missing: rank 1\b/);
      assert.ok(elapsed < 2000 + 8000, `took ${elapsed} ms`);
    });

    it('rank 0 never starts: the others cannot reach the store (ERR_DIST_TIMEOUT)', async () => {
      const ranks = await runRanks(dir, [{ rank: 1, data: npy9, distributed: { timeout: 2000 } }], { worldSize: 2 });
      assert.equal(ranks[0].output.error.code, ErrorCodes.DIST_TIMEOUT, ranks[0].output.error.message);
      assert.match(ranks[0].output.error.message, /could not reach the rendezvous store of rank 0 at 127\.0\.0\.1:\d+/);
    });

    it('ranks started with different layers are refused at start-up on every rank (ERR_DIST_MISMATCH)', async () => {
      const ranks = await runRanks(dir, [
        { data: npy9, distributed: { timeout: 20000 } },
        { data: npy9, layers1: ['fc1', 'fc2'], distributed: { timeout: 20000 } },
      ]);
      for (const rank of ranks) {
        assert.equal(rank.output.error.code, ErrorCodes.DIST_MISMATCH, rank.output.error.message);
        assert.match(rank.output.error.message, /Rank 1 was started with layers1 \["fc1","fc2"\], but rank 0 with/);
      }
    });

    it('ranks with different data are refused (ERR_DIST_MISMATCH)', async () => {
      const ranks = await runRanks(dir, [
        { data: npy9, distributed: { timeout: 20000 } },
        { data: npy10, distributed: { timeout: 20000 } },
      ]);
      for (const rank of ranks) {
        assert.equal(rank.output.error.code, ErrorCodes.DIST_MISMATCH, rank.output.error.message);
        assert.match(rank.output.error.message, /data1/);
      }
    });

    it('two processes claiming one rank: refused, and the others stop (no hang)', async () => {
      const job = { data: npy9, distributed: { timeout: 20000 } };
      const ranks = await runRanks(dir, [job, { ...job, rank: 1 }, { ...job, rank: 1 }]);
      const codes = ranks.map((r) => r.output.error?.code).sort();
      assert.deepEqual(codes, [ErrorCodes.DIST_MISMATCH, ErrorCodes.DIST_RANK_FAILED, ErrorCodes.DIST_RANK_FAILED]);
      const refused = ranks.find((r) => r.output.error.code === ErrorCodes.DIST_MISMATCH);
      assert.match(refused.output.error.message, /Two processes claim rank 1 of 3/);
    });

    it('a rank failing on its data stops the others with ERR_DIST_RANK_FAILED naming it', async () => {
      const bad = path.join(dir, 'wide.npy');
      writeNpy(bad, new Float32Array(70 * 13), [70, 13]); // 13 features: model 1's fc1 wants 12
      // Plain arrays carry no data identity, so rank 1 passes the start-up
      // check and fails in its first batch.
      const ranks = await runRanks(dir, [
        { data: npy9, source: 'array', distributed: { timeout: 20000 } },
        { data: npy9, source: 'array', distributed: { timeout: 20000 }, badData: bad },
      ]);
      assert.equal(ranks[1].output.error.code, ErrorCodes.FORWARD_FAILED, ranks[1].output.error.message);
      assert.equal(ranks[0].output.error.code, ErrorCodes.DIST_RANK_FAILED, ranks[0].output.error.message);
      assert.match(ranks[0].output.error.message, /^Rank 1 failed, so rank 0 stopped too: .* \[ERR_FORWARD_FAILED\]$/s);
    });
  });

  describe('settings', () => {
    const models = async () => Promise.all([loadModel(MODEL1), loadModel(MODEL2)]);

    it('distributed: true without RANK / WORLD_SIZE is ERR_DIST_CONFIG', async () => {
      const [m1, m2] = await models();
      const cka = new CKA(m1, m2);
      const saved = { ...process.env };
      delete process.env.WORLD_SIZE;
      delete process.env.RANK;
      try {
        await assert.rejects(cka.compare([], undefined, { distributed: true }), {
          code: ErrorCodes.DIST_CONFIG,
          message: /needs WORLD_SIZE: run it under `torch-cka launch --nproc N -- \.\.\.` or torchrun/,
        });
      } finally {
        Object.assign(process.env, saved);
      }
    });

    it('bad values name the setting (ERR_DIST_CONFIG, ERR_INVALID_ARG)', async () => {
      const [m1, m2] = await models();
      const cka = new CKA(m1, m2);
      await assert.rejects(cka.compare([], undefined, { distributed: { rank: 2, worldSize: 2 } }), {
        code: ErrorCodes.DIST_CONFIG,
        message: 'distributed.rank must be an integer from 0 to 1, got 2',
      });
      await assert.rejects(cka.compare([], undefined, { distributed: { rank: 0, worldSize: 1, masterPort: 70000 } }), {
        code: ErrorCodes.DIST_CONFIG,
        message: /distributed.masterPort must be an integer from 1 to 65535/,
      });
      await assert.rejects(cka.compare([], undefined, { distributed: { rank: 0, worldSize: 1, nodes: 2 } }), {
        code: ErrorCodes.INVALID_ARG,
        message: /Unknown option distributed.nodes/,
      });
      await assert.rejects(cka.compare([], undefined, { distributed: 'yes' }), { code: ErrorCodes.INVALID_ARG });
    });

    it('a port in use on rank 0 is ERR_DIST_CONNECT naming it', async () => {
      const server = net.createServer();
      await new Promise((resolve) => server.listen(0, '0.0.0.0', resolve));
      const { port } = server.address();
      try {
        const [m1, m2] = await models();
        const cka = new CKA(m1, m2);
        await assert.rejects(cka.compare([], undefined, { distributed: { rank: 0, worldSize: 1, masterPort: port } }), {
          code: ErrorCodes.DIST_CONNECT,
          message: new RegExp(`Rank 0 could not serve the rendezvous store on port ${port}: it is in use`),
        });
      } finally {
        server.close();
      }
    });

    it('a world of one equals the plain run; what the object held before is kept and added to', async () => {
      const [m1, m2] = await models();
      const plain = new CKA(m1, m2, { onWarning: () => undefined });
      const data = await openDataset(npy10, { batchSize: 8 });
      await plain.compare(data);
      await plain.compare(data);
      const dist = new CKA(m1, m2, { onWarning: () => undefined });
      await dist.compare(data);
      const summary = await dist.compare(data, undefined, {
        distributed: { rank: 0, worldSize: 1, masterPort: await freePort() },
      });
      assert.equal(summary.batches, 10);
      assert.equal(summary.distributed.worldSize, 1);
      const a = plain.export();
      const b = dist.export();
      assert.equal(b.batches, 20);
      assert.ok(maxDifference(a.cka, b.cka) <= 1e-12);
    });
  });

  describe('CLI', () => {
    it('torch-cka launch --nproc 2 -- compare: rank 0 writes the single-process results; rank 1 nothing', async () => {
      const out = path.join(dir, 'launch-results.json');
      const csv = path.join(dir, 'launch-results.csv');
      const args = [MODEL1, MODEL2, '--data', npy9, '--batch-size', '8', '--out', out, '--csv', csv];
      const { status, stdout, stderr } = await new Promise((resolve) =>
        execFile(
          process.execPath,
          [CLI, 'launch', '--nproc', '2', '--', 'compare', ...args],
          { maxBuffer: 1 << 24 },
          (error, stdout, stderr) => resolve({ status: error ? error.code : 0, stdout, stderr }),
        ),
      );
      assert.equal(status, 0, stderr);
      const results = JSON.parse(fs.readFileSync(out, 'utf8'));
      const reference = await singleProcess(npy9);
      assert.ok(maxDifference(results.cka, reference.cka) <= 1e-9);
      assert.equal(results.batches, 9);
      assert.deepEqual(results.cli.distributed, { worldSize: 2, backend: 'gloo' });
      assert.ok(fs.existsSync(csv));
      // One summary: rank 1 printed nothing.
      assert.equal(stdout.match(/CKA of 8 x 8 layers over 70 samples in 9 batches/g)?.length, 1, stdout);
      assert.match(stdout, /distributed: 2 ranks \(gloo\); rank 0 compared 5 batches/);
    });
  });
});

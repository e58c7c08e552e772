'use strict';
// Checkpoints: a run stopped at any point (an error, an abort, kill -9) and
// resumed gives the matrix of an uninterrupted run; checkpoints of anything
// else are refused; writes are atomic.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel, readNpy } = require('..');
const { fixture, randomBatches, writeNpy } = require('./helpers');

const CLI = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const quiet = { onWarning: () => {} };

function maxDifference(a, b) {
  assert.equal(a.length, b.length);
  let worst = 0;
  a.forEach((row, i) =>
    row.forEach((value, j) => {
      assert.equal(value === null, b[i][j] === null, `null at [${i}][${j}]`);
      if (value !== null) worst = Math.max(worst, Math.abs(value - b[i][j]));
    }),
  );
  return worst;
}

/** Yields the batches, then fails at `failAt` like a disk or network error would. */
function* failingAfter(batches, failAt) {
  for (let i = 0; i < batches.length; i += 1) {
    if (i === failAt) throw new Error('network share went away');
    yield batches[i];
  }
}

describe('checkpoints', () => {
  let dir;
  let mlp;
  let mlp2;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-checkpoint-'));
    [mlp, mlp2] = await Promise.all([loadModel(fixture('mlp_scripted.pt')), loadModel(fixture('mlp_traced.pt'))]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const batches = randomBatches(60, [6, 7, 6, 5, 6, 8, 6, 3, 6, 6, 7], [12]); // one batch under 4: skipped

  async function uninterrupted(options = {}) {
    const cka = new CKA(mlp, mlp2, { ...quiet, ...options });
    await cka.compare(batches);
    return cka.export();
  }

  it('a run that fails mid-way resumes from its checkpoint to the uninterrupted matrix (1e-12)', async () => {
    const file = path.join(dir, 'fail.json');
    const first = new CKA(mlp, mlp2, quiet);
    await assert.rejects(
      first.compare(failingAfter(batches, 9), undefined, { checkpoint: { path: file, every: 4 } }),
      /network share went away/,
    );
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(saved.body.position, 9, 'the checkpoint written when compare() failed holds every batch used');
    assert.equal(saved.body.state.skipped, 1);

    const second = new CKA(mlp, mlp2, quiet);
    const summary = await second.compare(batches, undefined, { checkpoint: { path: file } });
    assert.equal(summary.resumed, 8);
    assert.equal(summary.batches, 2, 'only the batches after the checkpoint ran');
    assert.equal(summary.position, 11);
    const resumed = second.export();
    const expected = await uninterrupted();
    assert.equal(resumed.batches, expected.batches);
    assert.equal(resumed.samples, expected.samples);
    assert.ok(maxDifference(resumed.cka, expected.cka) <= 1e-12);
  });

  it('an abort keeps the batches before it in the checkpoint', async () => {
    const file = path.join(dir, 'abort.json');
    const controller = new AbortController();
    const first = new CKA(mlp, mlp2, { ...quiet, workers: 1 });
    await assert.rejects(
      first.compare(batches, undefined, {
        checkpoint: { path: file, every: 100 },
        signal: controller.signal,
        onProgress: ({ position }) => position === 5 && controller.abort(),
      }),
      { name: 'AbortError' },
    );
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).body.position, 5);
    const second = new CKA(mlp, mlp2, quiet);
    await second.compare(batches, undefined, { checkpoint: { path: file } });
    assert.ok(maxDifference(second.export().cka, (await uninterrupted()).cka) <= 1e-12);
  });

  it('with batches in flight, an abort keeps whole ones: the checkpoint names as many as it holds', async () => {
    const file = path.join(dir, 'abort-workers.json');
    const controller = new AbortController();
    const first = new CKA(mlp, mlp2, { ...quiet, workers: 3 });
    await assert.rejects(
      first.compare(batches, undefined, {
        checkpoint: { path: file, every: 100 },
        signal: controller.signal,
        onProgress: ({ position }) => position === 4 && controller.abort(),
      }),
      { name: 'AbortError' },
    );
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')).body;
    // Batches 3, 4 and 5 ran together: all three are in the sums and in the position.
    assert.equal(saved.position, 6);
    assert.equal(saved.state.batches + saved.state.skipped, 6);
    const second = new CKA(mlp, mlp2, quiet);
    await second.compare(batches, undefined, { checkpoint: { path: file } });
    assert.ok(maxDifference(second.export().cka, (await uninterrupted()).cka) <= 1e-12);
  });

  it('a finished run resumed again adds nothing; a torch-cka Dataset is not read before the resume point', async () => {
    const npy = path.join(dir, 'data.npy');
    const values = new Float32Array(40 * 12).map((_, i) => Math.sin(i * 0.37) + (i % 7) * 0.1);
    writeNpy(npy, values, [40, 12]);
    const data = await readNpy(npy, { batchSize: 8, shuffle: true, seed: 3 });
    const file = path.join(dir, 'dataset.json');
    const stop = new AbortController();
    await assert.rejects(
      new CKA(mlp, mlp2, quiet).compare(data, undefined, {
        checkpoint: { path: file, every: 1 },
        signal: stop.signal,
        onProgress: ({ position }) => position === 2 && stop.abort(),
      }),
      { name: 'AbortError' },
    );
    // Resuming must not ask the Dataset for the first 2 batches.
    let full = 0;
    const watched = Object.create(data);
    watched[Symbol.asyncIterator] = () => {
      full += 1;
      return data[Symbol.asyncIterator]();
    };
    const resumed = new CKA(mlp, mlp2, quiet);
    const summary = await resumed.compare(data, undefined, { checkpoint: { path: file } });
    assert.deepEqual([summary.resumed, summary.batches], [2, 3]);
    assert.equal(full, 0);
    const expected = new CKA(mlp, mlp2, quiet);
    await expected.compare(data);
    assert.ok(maxDifference(resumed.export().cka, expected.export().cka) <= 1e-12);

    const again = new CKA(mlp, mlp2, quiet);
    const rerun = await again.compare(data, undefined, { checkpoint: { path: file } });
    assert.deepEqual([rerun.resumed, rerun.batches], [5, 0]);
    assert.deepEqual(again.export().cka, resumed.export().cka);
  });

  describe('refused checkpoints', () => {
    let file;
    before(async () => {
      file = path.join(dir, 'base.json');
      await new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1', 'fc2'] }).compare(batches.slice(0, 3), undefined, {
        checkpoint: { path: file, key: 'train-split' },
      });
    });

    const refused = async (cka, message, options = {}) => {
      await assert.rejects(
        cka.compare(batches, undefined, { checkpoint: { path: file, key: 'train-split', ...options } }),
        { code: 'ERR_CHECKPOINT_MISMATCH', message },
      );
    };

    it('other layers, models, settings, data or key', async () => {
      await refused(
        new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1'] }),
        /made with model 1's layers \["fc1","fc2"\], but this comparison has \["fc1"\]/,
      );
      const conv = await loadModel(fixture('convnet_traced.pt'));
      await refused(
        new CKA(mlp, conv, { ...quiet, model1Layers: ['fc1', 'fc2'] }),
        /made with model 2 mlp_traced\.pt \(\d+ bytes, sha256 [0-9a-f]{12}…\), but this comparison has convnet_traced\.pt/,
      );
      await refused(
        new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1', 'fc2'], precision: 'float32' }),
        /made with precision "float64", but this comparison has "float32"/,
      );
      await refused(
        new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1', 'fc2'] }),
        /made with checkpoint key "train-split", but this comparison has "test-split"/,
        {
          key: 'test-split',
        },
      );
      await assert.rejects(
        new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1', 'fc2'] }).compare(batches, batches, {
          checkpoint: { path: file, key: 'train-split' },
        }),
        { code: 'ERR_CHECKPOINT_MISMATCH', message: /made with data 2 "same", but this comparison has null/ },
      );
    });

    it('into an object that has already compared batches', async () => {
      const used = new CKA(mlp, mlp2, { ...quiet, model1Layers: ['fc1', 'fc2'] });
      await used.compare(batches.slice(0, 1));
      await refused(used, /exists, but this CKA object has already compared batches/);
      assert.equal(used.export().batches, 1, 'the object is unchanged');
    });

    it('damaged or foreign files are ERR_CHECKPOINT_FORMAT, and are left alone', async () => {
      const text = fs.readFileSync(file, 'utf8');
      const cases = [
        [text.replace(/"samples":(\d+)/, (_, n) => `"samples":${Number(n) + 1}`), /does not match its checksum/],
        [text.slice(0, text.length / 2), /is not JSON/],
        ['{"hello":"world"}', /is not a torch-cka checkpoint/],
        [text.replace('"version":1', '"version":99'), /has checkpoint version 99; this torch-cka reads version 1/],
      ];
      for (const [content, message] of cases) {
        const other = path.join(dir, 'damaged.json');
        fs.writeFileSync(other, content);
        await assert.rejects(new CKA(mlp, mlp2, quiet).compare(batches, undefined, { checkpoint: { path: other } }), {
          code: 'ERR_CHECKPOINT_FORMAT',
          message,
        });
        assert.equal(fs.readFileSync(other, 'utf8'), content);
      }
    });

    it('bad options are ERR_INVALID_ARG', async () => {
      const cka = new CKA(mlp, mlp2, quiet);
      await assert.rejects(cka.compare(batches, undefined, { checkpoint: 'ck.json' }), {
        code: 'ERR_INVALID_ARG',
        message: /\{ path, every\?, key\? \}/,
      });
      await assert.rejects(cka.compare(batches, undefined, { checkpoint: { path: 'x', every: 0 } }), {
        code: 'ERR_INVALID_ARG',
        message: /positive integer for options\.checkpoint\.every/,
      });
    });
  });

  it('writes atomically: the file is always a whole checkpoint, and no temporary files stay', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const file = path.join(sub, 'ck.json');
    const seen = [];
    const cka = new CKA(mlp, mlp2, quiet);
    const many = randomBatches(61, new Array(30).fill(6), [12]);
    const reading = setInterval(() => {
      if (fs.existsSync(file)) seen.push(JSON.parse(fs.readFileSync(file, 'utf8')).body.position);
    }, 1);
    try {
      await cka.compare(many, undefined, { checkpoint: { path: file, every: 1 } });
    } finally {
      clearInterval(reading);
    }
    assert.deepEqual(fs.readdirSync(sub), ['ck.json']);
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).body.position, 30);
    assert.ok(seen.every((p) => p >= 1 && p <= 30));
  });

  it('CLI: kill -9 mid-run, then the same command resumes to the uninterrupted results (1e-12)', async function () {
    this.timeout(180000);
    const npy = path.join(dir, 'cli.npy');
    const count = 64 * 120;
    const values = new Float32Array(count * 3 * 8 * 8);
    for (let i = 0; i < values.length; i += 1) values[i] = Math.sin(i * 0.013) * Math.cos(i * 0.0007);
    writeNpy(npy, values, [count, 3, 8, 8]);
    const common = [
      'compare',
      fixture('convnet_traced.pt'),
      fixture('convnet_scripted.pt'),
      '--data',
      npy,
      '--batch-size',
      '64',
      '--shuffle',
      '--seed',
      '5',
      '--threads',
      '1',
    ];
    const reference = path.join(dir, 'reference.json');
    const whole = spawn(process.execPath, [CLI, ...common, '--out', reference, '--quiet']);
    assert.equal(await new Promise((resolve) => whole.on('exit', resolve)), 0);

    const checkpoint = path.join(dir, 'cli-checkpoint.json');
    const out = path.join(dir, 'resumed.json');
    const args = [CLI, ...common, '--checkpoint', checkpoint, '--checkpoint-every', '1', '--out', out, '--quiet'];
    const victim = spawn(process.execPath, args, { stdio: 'ignore' });
    let killedAt = -1;
    await new Promise((resolve, reject) => {
      const poll = setInterval(() => {
        try {
          const position = JSON.parse(fs.readFileSync(checkpoint, 'utf8')).body.position;
          if (position >= 10) {
            clearInterval(poll);
            killedAt = position;
            victim.kill('SIGKILL');
          }
        } catch {
          // not written yet
        }
      }, 5);
      victim.on('exit', (code, signal) => {
        clearInterval(poll);
        if (signal === 'SIGKILL') resolve();
        else reject(new Error(`the run ended (code ${code}) before it was killed`));
      });
    });
    assert.ok(killedAt >= 10 && killedAt < 120, `killed at batch ${killedAt}`);
    assert.ok(!fs.existsSync(out), 'the killed run wrote no results');

    const resumed = spawn(process.execPath, [...args.slice(0, -1)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    resumed.stdout.on('data', (chunk) => (stdout += chunk));
    assert.equal(await new Promise((resolve) => resumed.on('exit', resolve)), 0);
    assert.match(stdout, /resumed from .*cli-checkpoint\.json: \d+ batches restored/);
    const a = JSON.parse(fs.readFileSync(out, 'utf8'));
    const b = JSON.parse(fs.readFileSync(reference, 'utf8'));
    assert.equal(a.batches, b.batches);
    assert.equal(a.samples, b.samples);
    assert.ok(maxDifference(a.cka, b.cka) <= 1e-12, `differs by ${maxDifference(a.cka, b.cka)}`);

    // The same command with other data options is refused.
    const other = spawn(
      process.execPath,
      [CLI, ...common.slice(0, -4), '--seed', '6', '--checkpoint', checkpoint, '--out', out],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    other.stderr.on('data', (chunk) => (stderr += chunk));
    assert.equal(await new Promise((resolve) => other.on('exit', resolve)), 1);
    assert.match(stderr, /made with data 1's seed 5, but this comparison has 6; .*\[ERR_CHECKPOINT_MISMATCH\]/);
  });
});

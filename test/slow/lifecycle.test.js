'use strict';
// Lifecycle: the addon in several threads at once, and a process or Worker that
// goes away while a batch is running in native code. Every case runs in a child
// process of its own (a small script in a temporary folder that requires the
// package by absolute path), so that a crash fails the test instead of killing
// mocha.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
const HELPERS = path.join(__dirname, '..', 'helpers');

// What a native crash or a failed check in libtorch or Node leaves on stderr.
const CRASH =
  /terminate called|Segmentation fault|Aborted|core dumped|FATAL ERROR|Assertion failed|Check failed|double free|corrupted|munmap_chunk|free\(\): invalid|pure virtual method|Bus error|Illegal instruction/i;

// A large batch: one native step of this size takes well over a second here
// (its Gram matrices are 1024 x 1024), so it is still running when the
// process or Worker is told to go away.
const LARGE = 2048; // a batch that runs for a second or more in native code, even on a fast machine

let dir;
let scripts = 0;

/**
 * Writes `body` to a script in the temporary folder and runs it with this
 * Node. Resolves with its exit code, signal, output and duration; a child
 * still running after `timeoutMs` is killed (SIGKILL) and reported as hung.
 */
function runScript(body, { timeoutMs = 40000 } = {}) {
  scripts += 1;
  const file = path.join(dir, `case-${scripts}.js`);
  const prelude = `'use strict';
const ROOT = ${JSON.stringify(ROOT)};
const HELPERS = ${JSON.stringify(HELPERS)};
const { CKA, loadModel } = require(ROOT);
const { fixture, randomBatches } = require(HELPERS);
const now = () => performance.timeOrigin + performance.now();
const report = (value) => process.stdout.write('RESULT ' + JSON.stringify(value) + '\\n');
`;
  fs.writeFileSync(file, `${prelude}${body}\n`);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [file], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const results = stdout
        .split('\n')
        .filter((line) => line.startsWith('RESULT '))
        .map((line) => JSON.parse(line.slice('RESULT '.length)));
      resolve({ code, signal, stdout, stderr, hung, results, ms: Date.now() - started, file });
    });
  });
}

/** A readable account of a child's end, for assertion messages. */
const account = (run) =>
  `${path.basename(run.file)}: exit code ${run.code}, signal ${run.signal}${run.hung ? ' (hung, killed)' : ''}, ` +
  `${run.ms} ms\n--- stdout\n${run.stdout.slice(-2000)}\n--- stderr\n${run.stderr.slice(-2000)}`;

/** The child ended by itself, with this exit code, without a signal or a crash message. */
function assertCleanExit(run, code) {
  assert.equal(run.hung, false, `the child hung\n${account(run)}`);
  assert.equal(run.signal, null, `the child was killed by a signal\n${account(run)}`);
  assert.doesNotMatch(run.stderr, CRASH, `crash output on stderr\n${account(run)}`);
  assert.equal(run.code, code, `unexpected exit code\n${account(run)}`);
}

describe('lifecycle', function () {
  this.timeout(60000);
  this.slow(10000);

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-lifecycle-'));
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("runs compare() in two Workers at once, each giving the main thread's matrix", async () => {
    const run = await runScript(`
const { Worker } = require('node:worker_threads');
const a = fixture('convnet_traced.pt');
const b = fixture('convnet_scripted.pt');
const batches = randomBatches(41, [192, 192, 192, 192, 192, 192], [3, 8, 8]);
const workerCode = \`
  const { parentPort, workerData } = require('node:worker_threads');
  const { CKA, loadModel } = require(workerData.root);
  const now = () => performance.timeOrigin + performance.now();
  (async () => {
    const [m1, m2] = await Promise.all([loadModel(workerData.a), loadModel(workerData.b)]);
    const cka = new CKA(m1, m2, { threads: 1 });
    parentPort.postMessage({ ready: true });
    await new Promise((resolve) => parentPort.once('message', resolve));
    const steps = [];
    const start = now();
    await cka.compare(workerData.batches, undefined, { onProgress: () => steps.push(now()) });
    const end = now();
    parentPort.postMessage({ start, end, steps, cka: cka.export().cka });
  })().catch((error) => parentPort.postMessage({ error: String(error && error.stack) }));\`;
(async () => {
  const [m1, m2] = await Promise.all([loadModel(a), loadModel(b)]);
  const cka = new CKA(m1, m2, { threads: 1 });
  await cka.compare(batches);
  const expected = cka.export().cka;
  const workers = [0, 1].map(() => new Worker(workerCode, { eval: true, workerData: { root: ROOT, a, b, batches } }));
  const next = (worker) =>
    new Promise((resolve, reject) => {
      worker.once('message', (message) => (message.error ? reject(new Error(message.error)) : resolve(message)));
      worker.once('error', reject);
    });
  await Promise.all(workers.map(next));
  const results = workers.map(next);
  for (const worker of workers) worker.postMessage('go');
  const [r1, r2] = await Promise.all(results);
  const codes = await Promise.all(workers.map((worker) => worker.terminate()));
  report({ expected, results: [r1, r2], codes });
})().catch((error) => {
  process.stderr.write(String(error && error.stack) + '\\n');
  process.exit(3);
});`);
    assertCleanExit(run, 0);
    assert.equal(run.results.length, 1, account(run));
    const [{ expected, results }] = run.results;
    const [r1, r2] = results;
    // Overlap: each started before the other ended, and their batches interleave.
    const overlap = Math.min(r1.end, r2.end) - Math.max(r1.start, r2.start);
    assert.ok(
      overlap > 0,
      `the two compare() calls did not overlap: [${r1.start}, ${r1.end}] and [${r2.start}, ${r2.end}]`,
    );
    const during = (steps, other) => steps.filter((t) => t > other.start && t < other.end).length;
    assert.ok(
      during(r1.steps, r2) > 0 || during(r2.steps, r1) > 0,
      `no batch of one Worker finished while the other's compare() ran: ${JSON.stringify([r1.steps, r2.steps])}`,
    );
    assert.deepEqual(r1.cka, expected);
    assert.deepEqual(r2.cka, expected);
  });

  for (const delay of [0, 150, 400]) {
    it(`exits cleanly on process.exit(0) ${delay} ms into a long native batch`, async () => {
      const run = await runScript(`
(async () => {
  const [m1, m2] = await Promise.all([loadModel(fixture('convnet_traced.pt')), loadModel(fixture('convnet_scripted.pt'))]);
  const cka = new CKA(m1, m2, { threads: 1 });
  const data = randomBatches(7, [${LARGE}], [3, 8, 8]);
  const start = now();
  let finished = false;
  cka.compare(data).then(() => (finished = true));
  setTimeout(() => {
    // cka.native is the addon's object: busy while its batch runs in native code.
    report({ busy: cka.native.busy, finished, elapsed: now() - start });
    process.exit(0);
  }, ${delay});
})();`);
      assertCleanExit(run, 0);
      assert.equal(run.results.length, 1, account(run));
      const [{ busy, finished }] = run.results;
      assert.equal(finished, false, 'compare() had finished before the exit; the batch is too small for this machine');
      assert.equal(busy, true, 'no batch was running in native code at the exit');
    });
  }

  it('exits with 1, not a crash, on an uncaught exception while a native batch runs', async () => {
    const run = await runScript(`
(async () => {
  const [m1, m2] = await Promise.all([loadModel(fixture('convnet_traced.pt')), loadModel(fixture('convnet_scripted.pt'))]);
  const cka = new CKA(m1, m2, { threads: 1 });
  let finished = false;
  cka.compare(randomBatches(8, [${LARGE}], [3, 8, 8])).then(() => (finished = true));
  setTimeout(() => {
    report({ busy: cka.native.busy, finished });
    throw new Error('thrown while compare() runs');
  }, 200);
})();`);
    assertCleanExit(run, 1);
    assert.match(run.stderr, /thrown while compare\(\) runs/);
    assert.equal(run.results.length, 1, account(run));
    const [{ busy, finished }] = run.results;
    assert.equal(finished, false);
    assert.equal(busy, true);
  });

  it('survives terminating a Worker in the middle of a batch, and runs a new Worker after', async () => {
    const run = await runScript(`
const { Worker } = require('node:worker_threads');
const workerCode = \`
  const { parentPort, workerData } = require('node:worker_threads');
  const { CKA, loadModel } = require(workerData.root);
  (async () => {
    const [m1, m2] = await Promise.all([loadModel(workerData.a), loadModel(workerData.b)]);
    const cka = new CKA(m1, m2, { threads: 1 });
    const done = cka.compare(workerData.batches);
    // compare() starts its first batch once the data source has given it one.
    const deadline = Date.now() + 5000;
    while (!cka.native.busy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    parentPort.postMessage({ started: true, busy: cka.native.busy });
    await done;
    parentPort.postMessage({ cka: cka.export().cka });
  })().catch((error) => parentPort.postMessage({ error: String(error && error.stack) }));\`;
const next = (worker) =>
  new Promise((resolve, reject) => {
    worker.once('message', (message) => (message.error ? reject(new Error(message.error)) : resolve(message)));
    worker.once('error', reject);
  });
(async () => {
  const large = randomBatches(9, [${LARGE}], [3, 8, 8]);
  const first = new Worker(workerCode, {
    eval: true,
    workerData: { root: ROOT, a: fixture('convnet_traced.pt'), b: fixture('convnet_scripted.pt'), batches: large },
  });
  const started = await next(first);
  let finished = false;
  first.on('message', (message) => { if (message.cka) finished = true; });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const t = now();
  const exitCode = await first.terminate();
  const terminateMs = now() - t;

  const small = randomBatches(10, [6, 7, 8], [12]);
  const second = new Worker(workerCode, {
    eval: true,
    workerData: { root: ROOT, a: fixture('mlp_scripted.pt'), b: fixture('mlp_traced.pt'), batches: small },
  });
  await next(second);
  const { cka: fromWorker } = await next(second);
  await second.terminate();

  const [m1, m2] = await Promise.all([loadModel(fixture('mlp_scripted.pt')), loadModel(fixture('mlp_traced.pt'))]);
  const cka = new CKA(m1, m2, { threads: 1 });
  await cka.compare(small);
  report({ started, finished, exitCode, terminateMs, fromWorker, expected: cka.export().cka });
})().catch((error) => {
  process.stderr.write(String(error && error.stack) + '\\n');
  process.exit(3);
});`);
    assertCleanExit(run, 0);
    assert.equal(run.results.length, 1, account(run));
    const [{ started, finished, exitCode, fromWorker, expected }] = run.results;
    assert.equal(started.busy, true, 'the first Worker had no batch running');
    assert.equal(finished, false, "the first Worker's compare() finished before terminate(); the batch is too small");
    assert.equal(typeof exitCode, 'number');
    assert.deepEqual(fromWorker, expected);
  });
});

'use strict';
// The fuzzing harness (test/fuzz/fuzz.js) in a short run with a fixed seed: a
// few thousand damaged .npy, .npz, IDX, CIFAR-10 and TorchScript files, each of
// which must end in a result or an error carrying one of the package's codes,
// with no crash, hang, runaway memory or file left open. Then the harness
// itself: a child that aborts, hangs, or throws an error without a code or with
// ERR_INTERNAL is reported as a finding, and the run goes on after each.
// `npm run fuzz -- --cases 20000` is the long run.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
const FUZZ = path.join(ROOT, 'test', 'fuzz', 'fuzz.js');
const CHILD = path.join(ROOT, 'test', 'fuzz', 'child.js');
const { crc32, generateCase, readZip, walkPickle, writeZip } = require('../fuzz/inputs');

const SEED = 20261130;

/** Runs a node script; resolves with its exit and output (killed after `timeoutMs`). */
function run(script, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** Runs test/fuzz/fuzz.js with `args`, its findings saved to `out`; returns the exit and the JSON summary. */
async function fuzz(args, out, timeoutMs) {
  fs.rmSync(out, { recursive: true, force: true });
  const json = path.join(out, 'summary.json');
  fs.mkdirSync(out, { recursive: true });
  const result = await run(FUZZ, [...args, '--out', out, '--json', json, '--quiet'], timeoutMs);
  const summary = fs.existsSync(json) ? JSON.parse(fs.readFileSync(json, 'utf8')) : null;
  return { ...result, summary };
}

/** The findings, written out for a person: what, where, the saved input and the repro command. */
const report = (findings) =>
  findings
    .map((f) =>
      [
        `[${f.kind}] ${f.target} case ${f.index} (seed ${f.seed}), from ${f.from}: ${f.mutations.join('; ')}`,
        `  ${f.detail.split('\n').slice(0, 12).join('\n  ')}`,
        `  input: ${f.file}`,
        `  repro: ${f.repro.direct}`,
      ].join('\n'),
    )
    .join('\n\n');

describe('fuzz: damaged files never crash the process', () => {
  it(`a fixed-seed run (seed ${SEED}): every case ends in a result or an error with a package code`, async function () {
    this.timeout(300000);
    // Kept for reading after a failure: the message names the saved inputs.
    const out = path.join(os.tmpdir(), 'torch-cka-fuzz-test');
    const cases = { npy: 800, npz: 800, idx: 800, cifar: 400, model: 400 };
    const args = [
      '--cases',
      Object.entries(cases)
        .map(([t, n]) => `${t}=${n}`)
        .join(','),
    ];
    args.push('--seed', String(SEED), '--jobs', '2', '--memory-limit', '1024', '--case-timeout', '20');
    const { status, stdout, stderr, summary } = await fuzz(args, out, 280000);
    assert.ok(summary, `no summary from test/fuzz/fuzz.js (exit ${status}):\n${stdout}\n${stderr}`);
    if (summary.findings.length > 0) {
      assert.fail(
        `${summary.findings.length} finding(s) in ${summary.cases} cases; the inputs are in ${out}\n\n` +
          `${report(summary.findings)}\n\n${stdout}`,
      );
    }
    assert.equal(status, 0, stdout + stderr);
    assert.equal(summary.cases, 3200);
    for (const [target, n] of Object.entries(cases)) assert.equal(summary.targets[target].cases, n, target);
    // The run reaches past the first check: some cases open and read whole
    // passes (and resume them), some models load and are compared.
    const reached = (target, step) => summary.targets[target].reached[step] ?? 0;
    for (const target of ['npy', 'npz', 'idx', 'cifar']) {
      assert.ok(reached(target, 'full pass') >= 50, `${target}: ${reached(target, 'full pass')} full passes`);
      assert.ok(reached(target, 'resumed') >= 10, `${target}: ${reached(target, 'resumed')} resumed passes`);
      assert.ok(reached(target, 'shrunk') >= 3, `${target}: ${reached(target, 'shrunk')} files cut mid-pass`);
    }
    assert.ok(reached('model', 'loaded') >= 60, `${reached('model', 'loaded')} models loaded`);
    assert.ok(reached('model', 'compared') >= 40, `${reached('model', 'compared')} models compared`);
  });
});

describe('fuzz: the harness', () => {
  const out = path.join(os.tmpdir(), `tcka-fuzz-selftest-${process.pid}`);
  after(() => fs.rmSync(out, { recursive: true, force: true }));

  it('a child that aborts is a crash finding, reproduced in a fresh child, its input saved; the run goes on', async function () {
    this.timeout(120000);
    const { status, stdout, summary } = await fuzz(
      ['--target', 'selftest-crash', '--cases', '3', '--seed', '7'],
      out,
      100000,
    );
    assert.equal(status, 1, stdout);
    assert.equal(summary.cases, 3);
    assert.equal(summary.findings.length, 3, stdout);
    summary.findings.forEach((f, i) => {
      assert.equal(f.kind, 'crash');
      assert.equal(f.index, i);
      assert.match(f.detail, /the child died \(signal SIGABRT\)/);
      assert.equal(f.reproduced, true);
      assert.equal(f.file, path.join(out, `selftest-crash-7-${i}.bin`));
      assert.deepEqual(fs.readFileSync(f.file), generateCase('selftest-crash', 7, i).files[0].bytes);
      assert.equal(
        f.repro.direct,
        `node test/fuzz/child.js --target selftest-crash --seed 7 --case ${i} --input ${f.file}`,
      );
    });
    assert.match(stdout, /findings: 3 \(1 distinct\)\n {2}3 x crash: signal SIGABRT/);
  });

  it('hangs, errors without a code and ERR_INTERNAL are findings; cases around them still run', async function () {
    this.timeout(120000);
    const cases = 'npy=40,selftest-hang=1,selftest-uncoded=2,selftest-internal=1,selftest-crash=1';
    const args = ['--cases', cases, '--seed', '3', '--case-timeout', '2', '--no-confirm'];
    const { status, stdout, summary } = await fuzz(args, out, 100000);
    assert.equal(status, 1, stdout);
    assert.equal(summary.cases, 45);
    assert.equal(summary.targets.npy.cases, 40);
    const kinds = summary.findings.map((f) => `${f.target}:${f.kind}`).sort();
    assert.deepEqual(kinds, [
      'selftest-crash:crash',
      'selftest-hang:hang',
      'selftest-internal:internal',
      'selftest-uncoded:uncoded',
      'selftest-uncoded:uncoded',
    ]);
    const uncoded = summary.findings.find((f) => f.kind === 'uncoded');
    assert.match(uncoded.detail, /a plain Error, as a bug would throw/);
    assert.match(summary.findings.find((f) => f.kind === 'hang').detail, /no outcome after 2 s; the child was killed/);
    assert.match(stdout, /findings: 5 \(4 distinct\)/);
  });

  it('the repro command runs one case in-process and says whether it is a finding', async function () {
    this.timeout(60000);
    const bad = await run(CHILD, ['--target', 'selftest-uncoded', '--seed', '1', '--case', '0'], 30000);
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /FINDING \(uncoded\)/);
    // A saved input replaces the generated one: a valid .npy file passes.
    const input = path.join(__dirname, '..', 'fixtures', 'data', 'npy', 'values_float32.npy');
    const fine = await run(CHILD, ['--target', 'npy', '--seed', '1', '--case', '0', '--input', input], 30000);
    assert.equal(fine.status, 0, fine.stdout + fine.stderr);
    assert.match(fine.stdout, /fine \(ok\)/);
  });

  it('cases follow from (target, seed, index) alone', () => {
    for (const target of ['npy', 'npz', 'idx', 'cifar', 'model']) {
      const a = generateCase(target, 11, 5);
      const b = generateCase(target, 11, 5);
      assert.deepEqual(a.files, b.files);
      assert.deepEqual(a.options, b.options);
      assert.notDeepEqual(generateCase(target, 11, 6).files, a.files);
      assert.notDeepEqual(generateCase(target, 12, 5).files, a.files);
    }
  });

  it('the zip writer gives archives libtorch reads: CRC-32, entries, pickles walked to STOP', async () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    const { loadModel } = require('../..');
    const seed = path.join(__dirname, '..', 'fixtures', 'mlp_scripted.pt');
    const entries = readZip(fs.readFileSync(seed));
    assert.ok(entries.some((e) => e.method === 8) && entries.some((e) => e.method === 0));
    const pickle = entries.find((e) => e.name.endsWith('/data.pkl')).data;
    const ops = walkPickle(pickle);
    assert.equal(ops[ops.length - 1].end, pickle.length);
    assert.equal(pickle[ops[ops.length - 1].at], 0x2e);
    const copy = path.join(out, 'rezipped.pt');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(copy, writeZip(entries));
    assert.deepEqual(
      readZip(fs.readFileSync(copy)).map((e) => [e.name, e.data.length]),
      entries.map((e) => [e.name, e.data.length]),
    );
    const [model, original] = [await loadModel(copy), await loadModel(seed)];
    assert.deepEqual(
      model.layers().map((l) => l.name),
      original.layers().map((l) => l.name),
    );
    model.dispose();
    original.dispose();
  });
});

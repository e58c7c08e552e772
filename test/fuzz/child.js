#!/usr/bin/env node
'use strict';
// The child process of the fuzzing harness (test/fuzz/fuzz.js): runs cases of
// test/fuzz/inputs.js against the package and reports each outcome,
// so that a crash of the native code ends this process, not the harness.
//
//   node test/fuzz/child.js --serve --work DIR [--alloc-limit MB]
//       reads cases as JSON lines ({ target, seed, index }) on stdin and writes
//       one "@@fuzz {...}" line per case on stdout (the parent's protocol).
//   node test/fuzz/child.js --target T --seed S --case I [--input FILE]
//       runs one case here and prints its outcome (a repro: run it under gdb,
//       or with FILE, a saved input, in place of the generated one). Model
//       cases first load a valid model, as the harness's children do. Exits 1
//       when the outcome is a finding.
//
// An outcome is { outcome: 'ok' | 'error', code, name, message, stack,
// violations, leaks, allocation, warnings, ms, summary, reached (the steps
// the case got through) }; classify() says
// whether it is a finding.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const { generateCase } = require('./inputs');

const PREFIX = '@@fuzz ';

// ---------------------------------------------------------------------------
// What is a finding

/**
 * `{ finding: false, label }` for a result or an error with one of the
 * package's codes (label: 'ok' or the code); `{ finding: true, kind, label }`
 * otherwise. Crashes, hangs and memory kills are classified by the parent.
 */
function classify(result, codes) {
  if (result.allocation) return { finding: true, kind: 'big-alloc', label: 'big-alloc' };
  if (result.violations?.length > 0) return { finding: true, kind: 'violation', label: 'violation' };
  if (result.leaks?.length > 0) return { finding: true, kind: 'leak', label: 'leak' };
  if (result.outcome === 'ok') return { finding: false, label: 'ok' };
  if (result.code === undefined || result.code === null) return { finding: true, kind: 'uncoded', label: 'no code' };
  if (result.code === 'ERR_INTERNAL') return { finding: true, kind: 'internal', label: result.code };
  if (!codes.has(result.code)) return { finding: true, kind: 'unknown-code', label: String(result.code) };
  return { finding: false, label: result.code };
}

// ---------------------------------------------------------------------------
// Guards: absurd allocations from JavaScript, file descriptors left open

/**
 * Makes every typed-array, ArrayBuffer and Buffer allocation above `limit`
 * bytes throw, and remembers the first one of a case (with its stack).
 */
function installAllocationGuard(limit) {
  const state = { hit: null };
  const check = (bytes, what) => {
    if (typeof bytes === 'number' && bytes > limit) {
      const error = new Error(`fuzz allocation guard: ${what} asks for ${bytes} bytes (limit ${limit})`);
      if (state.hit === null) state.hit = { bytes, what, stack: error.stack };
      throw error;
    }
  };
  const typed = {
    ArrayBuffer: 1,
    SharedArrayBuffer: 1,
    Uint8Array: 1,
    Int8Array: 1,
    Uint8ClampedArray: 1,
    Int16Array: 2,
    Uint16Array: 2,
    Int32Array: 4,
    Uint32Array: 4,
    Float32Array: 4,
    Float64Array: 8,
    BigInt64Array: 8,
    BigUint64Array: 8,
  };
  for (const [name, size] of Object.entries(typed)) {
    const Real = globalThis[name];
    globalThis[name] = new Proxy(Real, {
      construct(target, args, newTarget) {
        if (typeof args[0] === 'number') check(args[0] * size, `new ${name}(${args[0]})`);
        return Reflect.construct(target, args, newTarget);
      },
    });
  }
  for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow']) {
    const real = Buffer[name];
    Buffer[name] = function guarded(size, ...rest) {
      check(size, `Buffer.${name}(${size})`);
      return real.call(this, size, ...rest);
    };
  }
  return state;
}

/** The open file descriptors that point into `dir`: fd -> target. */
function fdsInto(dir) {
  const found = new Map();
  let names;
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return found; // not Linux: no check
  }
  for (const fd of names) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) found.set(fd, target);
    } catch {
      // closed meanwhile
    }
  }
  return found;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Runners

let api;
const torchCka = () => (api ??= require('torch-cka'));

const product = (shape) => shape.reduce((a, b) => a * b, 1);

class Violation extends Error {}

function violate(message) {
  throw new Violation(message);
}

function checkDataset(ds) {
  const { Dataset } = torchCka();
  if (!(ds instanceof Dataset)) violate(`the reader returned ${ds?.constructor?.name ?? typeof ds}, not a Dataset`);
  if (!Number.isSafeInteger(ds.length) || ds.length < 0) violate(`dataset length ${ds.length}`);
  if (!Number.isSafeInteger(ds.batchCount) || ds.batchCount < 0) violate(`dataset batchCount ${ds.batchCount}`);
  const expected = ds.dropLast ? Math.floor(ds.length / ds.batchSize) : Math.ceil(ds.length / ds.batchSize);
  if (ds.batchCount !== expected) violate(`batchCount ${ds.batchCount}, expected ${expected}`);
  if (!Array.isArray(ds.sampleShape) || !ds.sampleShape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    violate(`sampleShape ${JSON.stringify(ds.sampleShape)}`);
  }
}

function checkBatch(ds, batch, b) {
  const { Tensor } = torchCka();
  const want = Math.min(ds.batchSize, ds.length - b * ds.batchSize);
  // An .npz data set (NpzDataset) gives one tensor per input.
  const parts = ds.inputs === undefined ? [[batch, ds.sampleShape, ds.dtype]] : null;
  if (parts === null) {
    if (!Array.isArray(batch) || batch.length !== ds.inputs.length) {
      violate(`batch ${b} is not an array of ${ds.inputs.length} tensors`);
    }
  }
  const list = parts ?? ds.inputs.map((input, i) => [batch[i], input.sampleShape, input.dtype]);
  for (const [tensor, sampleShape, dtype] of list) {
    if (!(tensor instanceof Tensor)) violate(`batch ${b} is not a Tensor`);
    const shape = [...tensor.shape];
    if (shape[0] !== want) violate(`batch ${b} has ${shape[0]} samples, expected ${want}`);
    if (JSON.stringify(shape.slice(1)) !== JSON.stringify([...sampleShape])) {
      violate(`batch ${b} has shape [${shape}] for samples [${sampleShape}]`);
    }
    if (tensor.data.length !== product(shape)) violate(`batch ${b}: ${tensor.data.length} values for shape [${shape}]`);
    if (tensor.dtype !== dtype) violate(`batch ${b} is ${tensor.dtype}, the dataset ${dtype}`);
  }
}

const sameTensor = (a, b) =>
  JSON.stringify([...a.shape]) === JSON.stringify([...b.shape]) &&
  a.dtype === b.dtype &&
  Buffer.compare(
    Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength),
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
  ) === 0;

const sameBatch = (a, b) =>
  Array.isArray(a)
    ? Array.isArray(b) && a.length === b.length && a.every((t, i) => sameTensor(t, b[i]))
    : !Array.isArray(b) && sameTensor(a, b);

const copyTensor = (batch) => ({ shape: [...batch.shape], dtype: batch.dtype, data: batch.data.slice() });
const copyBatch = (batch) => (Array.isArray(batch) ? batch.map(copyTensor) : copyTensor(batch));
const batchSamples = (batch) => (Array.isArray(batch) ? batch[0].shape[0] : batch.shape[0]);

async function runReader(dir, generated, reached) {
  const { options } = generated;
  const lib = torchCka();
  const target = path.join(dir, options.path ?? generated.files[0].name);
  const ds = await lib[options.reader](target, options.data);
  reached.push('opened');
  checkDataset(ds);
  const plan = options.plan ?? {};
  const summary = { length: ds.length, batchCount: ds.batchCount, batches: 0, samples: 0 };
  const sampleValues =
    ds.inputs === undefined ? product(ds.sampleShape) : ds.inputs.reduce((a, i) => a + product(i.sampleShape), 0);
  const keep = plan.resumeAt !== undefined && ds.length * sampleValues <= 1 << 20;
  const kept = [];
  let stopped = false;
  let shrunk = false;
  const iterator = ds[Symbol.asyncIterator]();
  for (;;) {
    const step = await iterator.next();
    if (step.done) break;
    checkBatch(ds, step.value, summary.batches);
    if (keep) kept.push(copyBatch(step.value));
    summary.batches += 1;
    summary.samples += batchSamples(step.value);
    if (summary.batches > ds.batchCount) violate(`more than batchCount (${ds.batchCount}) batches`);
    if (plan.shrinkTo !== undefined && summary.batches === 1) {
      const file = path.join(dir, generated.files[0].name);
      const size = Math.floor(fs.statSync(file).size * plan.shrinkTo);
      await fs.promises.truncate(file, size);
      shrunk = true;
      reached.push('shrunk');
    }
    if (plan.breakAfter !== undefined && summary.batches > plan.breakAfter) {
      await iterator.return();
      stopped = true;
      reached.push('broke off');
      break;
    }
  }
  if (stopped || shrunk) return summary;
  reached.push('full pass');
  if (summary.batches !== ds.batchCount)
    violate(`a pass gave ${summary.batches} batches, batchCount is ${ds.batchCount}`);
  const wanted = ds.dropLast ? ds.batchCount * ds.batchSize : ds.length;
  if (summary.samples !== wanted) violate(`a pass gave ${summary.samples} samples, expected ${wanted}`);
  if (keep) {
    let b = plan.resumeAt;
    for await (const batch of ds.batches(plan.resumeAt)) {
      if (b >= kept.length) violate(`batches(${plan.resumeAt}) gave more than the full pass`);
      if (!sameBatch(batch, kept[b])) violate(`batches(${plan.resumeAt}) differs from the full pass at batch ${b}`);
      b += 1;
    }
    if (b < kept.length && plan.resumeAt < kept.length) {
      violate(`batches(${plan.resumeAt}) ended at batch ${b} of ${kept.length}`);
    }
    reached.push('resumed');
  }
  if (plan.labels && typeof ds.labels === 'function') {
    const labels = await ds.labels();
    if (!(labels instanceof Uint8Array) || labels.length !== ds.length) {
      violate(`labels() gave ${labels?.length} labels for ${ds.length} samples`);
    }
    reached.push('labels');
  }
  return summary;
}

// The test helpers' seeded standard-normal generator (mulberry32 + Box-Muller).
const { normalRng } = require('../helpers');

function makeInput({ dtype, shape }, rng) {
  const n = product(shape);
  switch (dtype) {
    case 'int64':
      return { data: BigInt64Array.from({ length: n }, () => BigInt(Math.floor(Math.abs(rng()) * 20) % 60)), shape };
    case 'int32':
      return { data: Int32Array.from({ length: n }, () => Math.floor(rng() * 10)), shape };
    case 'uint8':
      return { data: Uint8Array.from({ length: n }, () => Math.abs(Math.floor(rng() * 60)) % 256), shape };
    case 'float64':
      return { data: Float64Array.from({ length: n }, rng), shape };
    default:
      return { data: Float32Array.from({ length: n }, rng), shape };
  }
}

async function runModel(dir, generated, reached) {
  const { options } = generated;
  const { loadModel, CKA } = torchCka();
  const model = await loadModel(path.join(dir, options.path));
  reached.push('loaded');
  try {
    const layers = model.layers();
    if (!Array.isArray(layers) || !layers.every((l) => typeof l.name === 'string' && typeof l.type === 'string')) {
      violate(`layers() gave ${JSON.stringify(layers).slice(0, 200)}`);
    }
    const summary = { layers: layers.length };
    const cka = new CKA(model, model, { onWarning: () => {} });
    reached.push('CKA');
    const rng = normalRng(options.dataSeed);
    const inputs = options.inputs.map((spec) => makeInput(spec, rng));
    const compared = await cka.compare([inputs.length === 1 ? inputs[0] : inputs]);
    summary.samples = compared.samples;
    reached.push('compared');
    if (compared.batches === 1 && compared.skipped === 0) {
      const result = cka.export();
      for (const row of result.cka) {
        for (const v of row) if (v !== null && !Number.isFinite(v)) violate(`export() holds ${v}`);
      }
      summary.rows = result.cka.length;
      reached.push('exported');
    }
    return summary;
  } finally {
    model.dispose();
  }
}

const RUNNERS = {
  npy: runReader,
  npz: runReader,
  idx: runReader,
  cifar: runReader,
  model: runModel,
  'selftest-crash': async () => process.abort(),
  'selftest-hang': () => new Promise(() => setInterval(() => {}, 1000)),
  'selftest-uncoded': async () => {
    throw new Error('a plain Error, as a bug would throw');
  },
  'selftest-internal': async () => {
    const error = new Error('an internal error');
    error.code = 'ERR_INTERNAL';
    throw error;
  },
};

// ---------------------------------------------------------------------------
// One case

function errorFields(error) {
  if (error === null || typeof error !== 'object') return { name: typeof error, message: String(error) };
  return {
    name: error.name ?? error.constructor?.name,
    code: error.code,
    message: String(error.message).slice(0, 2000),
    stack: typeof error.stack === 'string' ? error.stack.slice(0, 4000) : undefined,
  };
}

/** Runs one case in `work`; `input` replaces the generated first file (a saved finding). */
async function runCase(spec, work, guard, input) {
  const generated = generateCase(spec.target, spec.seed, spec.index);
  const dir = path.join(work, 'case');
  const tmp = path.join(work, 'tmp');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(tmp, { recursive: true });
  generated.files.forEach((file, i) => {
    const at = path.join(dir, file.name);
    fs.mkdirSync(path.dirname(at), { recursive: true });
    fs.writeFileSync(at, i === 0 && input !== undefined ? input : file.bytes);
  });
  const before = fdsInto(work);
  const warnings = [];
  const onWarning = (w) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  if (guard) guard.hit = null;
  const started = process.hrtime.bigint();
  const result = { target: spec.target, seed: spec.seed, index: spec.index, outcome: 'ok', reached: [] };
  try {
    result.summary = await RUNNERS[spec.target](dir, generated, result.reached);
  } catch (error) {
    if (error instanceof Violation) {
      result.violations = [error.message];
    } else {
      result.outcome = 'error';
      Object.assign(result, errorFields(error));
    }
  }
  result.ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (guard?.hit) result.allocation = guard.hit;
  // Descriptors still open into the case's folder or the temporary folder a
  // little after the case ended (closing may finish a tick later).
  let leaked = [...fdsInto(work)].filter(([fd]) => !before.has(fd));
  if (leaked.length > 0) {
    await delay(50);
    leaked = [...fdsInto(work)].filter(([fd]) => !before.has(fd));
  }
  const temps = fs.readdirSync(tmp);
  result.leaks = [
    ...leaked.map(([fd, target]) => `fd ${fd} -> ${path.relative(work, target)} left open`),
    ...temps.map((name) => `tmp/${name} left behind`),
  ];
  fs.rmSync(tmp, { recursive: true, force: true });
  process.off('warning', onWarning);
  const fdWarnings = warnings.filter((w) => /file descriptor/i.test(w));
  if (fdWarnings.length > 0) result.leaks.push(...fdWarnings);
  if (warnings.length > 0) result.warnings = warnings.slice(0, 5);
  if (result.leaks.length === 0) delete result.leaks;
  result.rssMB = Math.round(process.memoryUsage().rss / 1048576);
  return result;
}

// ---------------------------------------------------------------------------
// Modes

/**
 * Loads a valid model once: libtorch's first load is slow, and it happens
 * before the first case's clock starts. A repro does the same, since some
 * crashes only come after a first load.
 */
async function warmUp() {
  const { loadModel } = torchCka();
  const { fixture } = require('../helpers');
  (await loadModel(fixture('mlp_scripted.pt'))).dispose();
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const key = arg.slice(2);
    if (key === 'serve') args.serve = true;
    else args[key] = argv[++i];
  }
  return args;
}

function send(message) {
  process.stdout.write(`${PREFIX}${JSON.stringify(message)}\n`);
}

function fatal(kind) {
  return (error) => {
    send({ fatal: kind, ...errorFields(error) });
    process.exit(70);
  };
}

async function serve(args) {
  const work = path.resolve(args.work ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-fuzz-child-')));
  // Temporary copies the readers make go into the work folder, where the leak check looks.
  process.env.TMPDIR = path.join(work, 'tmp');
  const guard = installAllocationGuard(Number(args['alloc-limit'] ?? 256) * 1048576);
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));
  if ((args.targets ?? '').split(',').includes('model')) await warmUp();
  send({ ready: true, pid: process.pid });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const spec = JSON.parse(line);
    send(await runCase(spec, work, guard));
  }
}

async function single(args) {
  const { ErrorCodes } = torchCka();
  const spec = { target: args.target, seed: Number(args.seed ?? 0), index: Number(args.case ?? 0) };
  // One folder per case, emptied first: a crash leaves it behind, the next run of the case reuses it.
  const work = path.join(os.tmpdir(), `tcka-fuzz-repro-${spec.target}-${spec.seed}-${spec.index}`);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  process.env.TMPDIR = path.join(work, 'tmp');
  const guard = installAllocationGuard(Number(args['alloc-limit'] ?? 256) * 1048576);
  const generated = generateCase(spec.target, spec.seed, spec.index);
  const input = args.input === undefined ? undefined : fs.readFileSync(args.input);
  if (spec.target === 'model') await warmUp();
  console.log(
    `case ${spec.target} seed ${spec.seed} #${spec.index}: from ${generated.from}: ${generated.ops.join('; ')}`,
  );
  console.log(`options: ${JSON.stringify(generated.options)}`);
  const result = await runCase(spec, work, guard, input);
  fs.rmSync(work, { recursive: true, force: true });
  const verdict = classify(result, new Set(Object.values(ErrorCodes)));
  console.log(JSON.stringify(result, null, 2));
  console.log(verdict.finding ? `FINDING (${verdict.kind})` : `fine (${verdict.label})`);
  process.exitCode = verdict.finding ? 1 : 0;
}

if (require.main === module) {
  const args = parseArgs(process.argv.slice(2));
  (args.serve ? serve(args) : single(args)).catch((error) => {
    console.error(error);
    process.exit(71);
  });
}

module.exports = { PREFIX, classify, runCase };

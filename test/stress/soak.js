#!/usr/bin/env node
// npm run soak: does a long run hold steady?
//
//   node test/stress/soak.js [--batches 2000] [--batch 32] [--models a.pt,b.pt] [--shape 3,8,8]
//                            [--threads 1] [--sequential] [--seed 1] [--every 50] [--warmup 0.1]
//                            [--cycles 200] [--cycle-batches 5] [--cycle-every 10]
//                            [--max-rss-slope 4] [--max-cycle-rss-slope 4] [--no-gc] [--out FILE]
//
// Phase 1 (long run): one CKA.compare() over `batches` seeded random batches,
// made one at a time by an async generator (the source holds no more than the
// batch it is making). Every `every` batches (from onProgress) it samples the
// resident memory (process.memoryUsage().rss and VmRSS of /proc/self/status),
// the open file descriptors (entries of /proc/self/fd), the threads (Threads:
// of /proc/self/status) and the JS heap. The event loop's delay is measured
// throughout compare() with perf_hooks.monitorEventLoopDelay({ resolution: 10 }):
// its values are the times between the ticks of a 10 ms timer, so an idle loop
// reads about 10 ms (one idle second is measured first, for comparison).
// The first `warmup` (10%) of the batches are a warm-up: TorchScript optimises
// its graphs and malloc sizes its arenas there. After it, the RSS should stay
// flat: its least-squares slope over the samples after warm-up, in MB per 1000
// batches, must not exceed --max-rss-slope, and the fd and thread counts at the
// end must equal those after warm-up.
//
// Phase 2 (lifecycle): `cycles` times, load both models, compare
// `cycle-batches` batches with a new CKA object, export, dispose both models.
// Sampled every `cycle-every` cycles; the first 10% of cycles are a warm-up;
// the RSS slope in MB per 100 cycles must not exceed --max-cycle-rss-slope, and
// fds and threads must not grow after warm-up.
//
// Limits (defaults; the verdict line prints them): RSS slope after warm-up at
// most 4 MB per 1000 batches (a leaked 32 x 3 x 8 x 8 input per batch would be
// 24 MB, a leaked 32 x 32 float32 Gram 4 MB; healthy runs here gave 0.4-1.6
// MB, in steps of the allocator and of the V8 heap, with the RSS less the V8
// heap flat), at most 4 MB per 100 load/dispose cycles (about 40 KB per cycle;
// healthy runs gave 0.4-0.8 MB), and no fd or thread more at the end than after
// warm-up. The RSS less the V8 heap is reported beside it, not judged.
//
// Before each sample a full GC runs (unless --no-gc), so that the numbers are
// memory still held rather than garbage not yet collected (typed arrays of
// earlier batches, CKA objects no longer referenced); the event-loop histogram
// is paused during the sampling, so it measures compare() and not the probe.
// There are no timing limits: this is a measurement. It exits with 1 when a
// leak is evident (the verdict line says which limit was crossed), 2 on a usage
// error; a crash or hang is a failure too.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const v8 = require('node:v8');
const vm = require('node:vm');

const ROOT = path.join(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const MB = 1024 * 1024;

function usage(message) {
  if (message) process.stderr.write(`soak: ${message}\n`);
  process.stderr.write(
    'usage: node test/stress/soak.js [--batches N] [--batch N] [--models a.pt,b.pt] [--shape 3,8,8] [--threads N]\n' +
      '         [--sequential] [--seed S] [--every N] [--warmup F] [--cycles N] [--cycle-batches N]\n' +
      '         [--cycle-every N] [--max-rss-slope MB] [--max-cycle-rss-slope MB] [--no-gc] [--out FILE]\n',
  );
  process.exit(message ? 2 : 0);
}

function parseArgs(argv) {
  const args = {
    batches: 2000,
    batch: 32,
    models: [path.join(FIXTURES, 'convnet_traced.pt'), path.join(FIXTURES, 'convnet_scripted.pt')],
    shape: null,
    threads: 1,
    sequential: false,
    seed: 1,
    every: 50,
    warmup: 0.1,
    cycles: 200,
    cycleBatches: 5,
    cycleEvery: 10,
    // MB per 1000 batches and MB per 100 load+compare+dispose cycles; see
    // "Limits" above for what they catch and what healthy runs gave.
    maxRssSlope: 4,
    maxCycleRssSlope: 4,
    gc: true,
    out: path.join(os.tmpdir(), 'torch-cka-soak.json'),
  };
  const positive = (name, text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) usage(`${name} needs a positive integer, got '${text}'`);
    return n;
  };
  const nonNegative = (name, text) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < 0) usage(`${name} needs a number >= 0, got '${text}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const value = () => {
      if (argv[i + 1] === undefined) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--batches') args.batches = positive(a, value());
    else if (a === '--batch') args.batch = positive(a, value());
    else if (a === '--models') {
      args.models = value()
        .split(',')
        .map((p) => path.resolve(p));
      if (args.models.length !== 2) usage('--models needs two paths, comma-separated');
    } else if (a === '--shape')
      args.shape = value()
        .split(',')
        .map((d) => positive(a, d));
    else if (a === '--threads') args.threads = positive(a, value());
    else if (a === '--sequential') args.sequential = true;
    else if (a === '--seed') args.seed = nonNegative(a, value());
    else if (a === '--every') args.every = positive(a, value());
    else if (a === '--warmup') {
      args.warmup = nonNegative(a, value());
      if (args.warmup >= 0.9) usage('--warmup is a fraction of the run, under 0.9');
    } else if (a === '--cycles') args.cycles = nonNegative(a, value());
    else if (a === '--cycle-batches') args.cycleBatches = positive(a, value());
    else if (a === '--cycle-every') args.cycleEvery = positive(a, value());
    else if (a === '--max-rss-slope') args.maxRssSlope = nonNegative(a, value());
    else if (a === '--max-cycle-rss-slope') args.maxCycleRssSlope = nonNegative(a, value());
    else if (a === '--no-gc') args.gc = false;
    else if (a === '--out') args.out = path.resolve(value());
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown option '${a}'`);
  }
  return args;
}

/** The input shape of a fixture model (without the batch dimension), from test/fixtures/fixtures.json. */
function fixtureShape(file) {
  try {
    const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'fixtures.json'), 'utf8'));
    const entry = meta.find((m) => path.join(FIXTURES, m.file) === file);
    if (entry && entry.inputShape[0] === null) return entry.inputShape.slice(1);
  } catch {
    // fall through
  }
  return null;
}

// The test helpers' seeded standard-normal generator (mulberry32 + Box-Muller).
const { normalRng } = require('../helpers');

/** `count` seeded float32 batches of `n` samples, each made only when asked for. */
async function* randomBatches(seed, count, n, shape) {
  const rng = normalRng(seed);
  const size = shape.reduce((a, b) => a * b, n);
  for (let b = 0; b < count; b += 1) {
    const data = new Float32Array(size);
    for (let i = 0; i < size; i += 1) data[i] = rng();
    yield { data, shape: [n, ...shape] };
  }
}

const hasProc = fs.existsSync('/proc/self/status');

function procStatus() {
  if (!hasProc) return { vmRssKB: null, vmHwmKB: null, threads: null };
  const text = fs.readFileSync('/proc/self/status', 'utf8');
  const field = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { vmRssKB: field('VmRSS'), vmHwmKB: field('VmHWM'), threads: field('Threads') };
}

/** Open file descriptors (the directory's own fd, open while it is read, counts too: a constant). */
const openFds = () => (hasProc ? fs.readdirSync('/proc/self/fd').length : null);

const round = (x, digits = 2) => (x === null || x === undefined ? null : Number(x.toFixed(digits)));

function makeSampler(gc, t0) {
  return (x) => {
    if (gc) gc();
    const memory = process.memoryUsage();
    const status = procStatus();
    return {
      x,
      seconds: round((performance.now() - t0) / 1000, 3),
      rssMB: round(memory.rss / MB, 3),
      vmRssMB: status.vmRssKB === null ? null : round(status.vmRssKB / 1024, 3),
      peakRssMB: status.vmHwmKB === null ? null : round(status.vmHwmKB / 1024, 3),
      heapUsedMB: round(memory.heapUsed / MB, 3),
      heapTotalMB: round(memory.heapTotal / MB, 3),
      // What the RSS holds besides the V8 heap: native memory (libtorch, malloc), mostly.
      rssLessHeapMB: round((memory.rss - memory.heapTotal) / MB, 3),
      externalMB: round(memory.external / MB, 3),
      arrayBuffersMB: round(memory.arrayBuffers / MB, 3),
      fds: openFds(),
      threads: status.threads,
    };
  };
}

/** Least-squares slope of y over x. */
function slope(points) {
  const n = points.length;
  if (n < 2) return null;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? null : num / den;
}

/**
 * The histogram's values are the times between the ticks of a 10 ms timer, so
 * an idle loop reads about 10 ms; `...LateMs` is what a tick came late beyond that.
 */
function eventLoopSummary(histogram) {
  const ms = (ns) => round(ns / 1e6, 2);
  const late = (ns) => round(Math.max(0, ns / 1e6 - 10), 2);
  return {
    resolutionMs: 10,
    samples: histogram.count,
    p50Ms: ms(histogram.percentile(50)),
    p99Ms: ms(histogram.percentile(99)),
    maxMs: ms(histogram.max),
    meanMs: ms(histogram.mean),
    p50LateMs: late(histogram.percentile(50)),
    p99LateMs: late(histogram.percentile(99)),
    maxLateMs: late(histogram.max),
  };
}

/** The same histogram over an idle second: what this machine's loop does with nothing to do. */
async function idleEventLoop() {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  histogram.disable();
  return eventLoopSummary(histogram);
}

/**
 * Growth after warm-up of a series of samples: RSS, fds, threads at the start,
 * after warm-up and at the end, and the RSS slope per `per` units of x.
 */
function analyse(samples, warmupX, per) {
  const start = samples[0];
  const after = samples.find((s) => s.x >= warmupX) ?? samples[samples.length - 1];
  const end = samples[samples.length - 1];
  // A slope from fewer than 3 samples after warm-up says nothing: not judged.
  const steady = samples.filter((s) => s.x >= after.x);
  const fit = (points) => (points.length >= 3 ? slope(points) : null);
  const rssSlope = fit(steady.map((s) => ({ x: s.x, y: s.rssMB })));
  const nativeSlope = fit(steady.map((s) => ({ x: s.x, y: s.rssLessHeapMB })));
  const vmRssSlope = hasProc ? fit(steady.map((s) => ({ x: s.x, y: s.vmRssMB }))) : null;
  const pick = (s) => ({
    x: s.x,
    rssMB: s.rssMB,
    vmRssMB: s.vmRssMB,
    heapUsedMB: s.heapUsedMB,
    fds: s.fds,
    threads: s.threads,
  });
  const max = (key) => Math.max(...steady.map((s) => s[key]));
  return {
    warmupX: after.x,
    start: pick(start),
    afterWarmup: pick(after),
    end: pick(end),
    rssGrowthMB: round(end.rssMB - after.rssMB, 3),
    vmRssGrowthMB: hasProc ? round(end.vmRssMB - after.vmRssMB, 3) : null,
    heapGrowthMB: round(end.heapUsedMB - after.heapUsedMB, 3),
    rssSlopeMB: rssSlope === null ? null : round(rssSlope * per, 3),
    vmRssSlopeMB: vmRssSlope === null ? null : round(vmRssSlope * per, 3),
    rssLessHeapGrowthMB: round(end.rssLessHeapMB - after.rssLessHeapMB, 3),
    rssLessHeapSlopeMB: nativeSlope === null ? null : round(nativeSlope * per, 3),
    rssMaxAfterWarmupMB: round(max('rssMB'), 3),
    fdsMaxAfterWarmup: hasProc ? max('fds') : null,
    threadsMaxAfterWarmup: hasProc ? max('threads') : null,
  };
}

/** The reasons a phase's numbers show a leak (empty when they do not). */
function leaks(label, a, maxSlope, unit) {
  const reasons = [];
  if (a.rssSlopeMB !== null && a.rssSlopeMB > maxSlope) {
    reasons.push(`${label}: RSS grows ${a.rssSlopeMB} MB per ${unit} after warm-up (limit ${maxSlope})`);
  }
  if (hasProc && a.end.fds > a.afterWarmup.fds) {
    reasons.push(`${label}: open fds grew from ${a.afterWarmup.fds} after warm-up to ${a.end.fds}`);
  }
  if (hasProc && a.end.threads > a.afterWarmup.threads) {
    reasons.push(`${label}: threads grew from ${a.afterWarmup.threads} after warm-up to ${a.end.threads}`);
  }
  return reasons;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let torchCka;
  try {
    torchCka = require(ROOT);
  } catch (error) {
    process.stderr.write(`soak: cannot load torch-cka from ${ROOT} (run npm run build first): ${error.message}\n`);
    process.exit(2);
  }
  const { CKA, loadModel, runtimeInfo } = torchCka;
  for (const file of args.models) if (!fs.existsSync(file)) usage(`no model file ${file}`);
  const shape = args.shape ?? fixtureShape(args.models[0]);
  if (!shape) usage(`no input shape known for ${args.models[0]}; pass --shape`);

  let gc = null;
  if (args.gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc');
  }
  const t0 = performance.now();
  const sample = makeSampler(gc, t0);
  const warnings = [];
  const onWarning = (w) => warnings.push(`${w.code}: ${w.message}`);
  const ckaOptions = {
    threads: args.threads,
    model1Name: 'model1',
    model2Name: 'model2',
    onWarning,
    ...(args.sequential ? { concurrent: false } : {}),
  };
  const info = runtimeInfo();
  const name = (file) => path.relative(process.cwd(), file) || file;
  process.stdout.write(
    `soak: ${name(args.models[0])} vs ${name(args.models[1])}, input [${args.batch}, ${shape}], ` +
      `${args.batches} batches, ${args.threads} thread(s) per model; libtorch ${info.libtorchVersion}, ` +
      `${info.cores} cores, ${info.blas}\n`,
  );

  // Phase 1: one long compare().
  const baseline = sample(0); // before the models are loaded
  const [m1, m2] = await Promise.all(args.models.map((file) => loadModel(file)));
  const cka = new CKA(m1, m2, ckaOptions);
  const idleLoop = await idleEventLoop();
  const samples1 = [sample(0)];
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  let lastReport = performance.now();
  const started = performance.now();
  histogram.enable();
  const summary = await cka.compare(randomBatches(args.seed, args.batches, args.batch, shape), undefined, {
    onProgress: ({ batches }) => {
      if (batches % args.every !== 0 && batches !== args.batches) return;
      histogram.disable();
      const s = sample(batches);
      samples1.push(s);
      if (performance.now() - lastReport > 5000) {
        lastReport = performance.now();
        process.stdout.write(
          `  batch ${batches}/${args.batches}: RSS ${s.rssMB.toFixed(1)} MB, ${s.fds} fds, ${s.threads} threads\n`,
        );
      }
      histogram.enable();
    },
  });
  histogram.disable();
  const seconds1 = (performance.now() - started) / 1000;
  const result = cka.export();
  const stats = cka.stats();
  const values = result.cka.flat();
  const finite = values.filter((v) => v !== null && Number.isFinite(v)).length;
  m1.dispose();
  m2.dispose();
  const warmupBatches = Math.round(args.batches * args.warmup);
  const phase1 = {
    batches: summary.batches,
    samples: summary.samples,
    skipped: summary.skipped,
    seconds: round(seconds1, 2),
    batchesPerSecond: round(summary.batches / seconds1, 1),
    matrix: `${result.model1Layers.length} x ${result.model2Layers.length}, ${finite} finite cells`,
    stats,
    eventLoop: eventLoopSummary(histogram),
    idleEventLoop: idleLoop,
    baseline: { rssMB: baseline.rssMB, fds: baseline.fds, threads: baseline.threads },
    ...analyse(samples1, warmupBatches, 1000),
    series: samples1,
  };

  // Phase 2: load, compare a few batches, dispose, over and over.
  let phase2 = null;
  if (args.cycles > 0) {
    const samples2 = [sample(0)];
    const loop = monitorEventLoopDelay({ resolution: 10 });
    const started2 = performance.now();
    loop.enable();
    for (let cycle = 1; cycle <= args.cycles; cycle += 1) {
      const [a, b] = await Promise.all(args.models.map((file) => loadModel(file)));
      const c = new CKA(a, b, ckaOptions);
      await c.compare(randomBatches(args.seed + cycle, args.cycleBatches, args.batch, shape));
      c.export();
      a.dispose();
      b.dispose();
      if (cycle % args.cycleEvery === 0 || cycle === args.cycles) {
        loop.disable();
        samples2.push(sample(cycle));
        loop.enable();
      }
    }
    loop.disable();
    const seconds2 = (performance.now() - started2) / 1000;
    phase2 = {
      cycles: args.cycles,
      batchesPerCycle: args.cycleBatches,
      seconds: round(seconds2, 2),
      eventLoop: eventLoopSummary(loop),
      ...analyse(samples2, Math.round(args.cycles * args.warmup), 100),
      series: samples2,
    };
  }

  const reasons = [
    ...leaks('long run', phase1, args.maxRssSlope, '1000 batches'),
    ...(phase2 ? leaks('load/dispose cycles', phase2, args.maxCycleRssSlope, '100 cycles') : []),
  ];
  if (finite === 0) reasons.push('long run: the CKA matrix has no finite value');
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}, ${os.cpus().length} cpus`,
    runtime: info,
    options: {
      models: args.models,
      inputShape: [args.batch, ...shape],
      batches: args.batches,
      batch: args.batch,
      threads: args.threads,
      concurrent: stats.concurrent,
      seed: args.seed,
      sampleEvery: args.every,
      warmupFraction: args.warmup,
      cycles: args.cycles,
      cycleBatches: args.cycleBatches,
      forcedGcBeforeSamples: args.gc,
    },
    thresholds: {
      maxRssSlopeMBPer1000Batches: args.maxRssSlope,
      maxCycleRssSlopeMBPer100Cycles: args.maxCycleRssSlope,
      fdGrowthAfterWarmup: 0,
      threadGrowthAfterWarmup: 0,
    },
    phase1,
    phase2,
    warnings,
    verdict: { ok: reasons.length === 0, reasons },
  };
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);

  const p = phase1;
  const per = (value, unit) =>
    value === null ? 'not judged (under 3 samples after warm-up)' : `${value} MB per ${unit}`;
  const lines = [
    '',
    `Long run: ${p.batches} batches of ${args.batch} (${p.samples} samples) in ${p.seconds} s, ` +
      `${p.batchesPerSecond} batches/s; ${args.threads} thread(s) per model, models ${stats.concurrent ? 'at once' : 'in turn'}; ${p.matrix}`,
    `  RSS        start ${p.start.rssMB.toFixed(1)} MB (before loading: ${p.baseline.rssMB.toFixed(1)}), ` +
      `after warm-up (batch ${p.warmupX}) ${p.afterWarmup.rssMB.toFixed(1)} MB, end ${p.end.rssMB.toFixed(1)} MB, ` +
      `max after warm-up ${p.rssMaxAfterWarmupMB.toFixed(1)} MB`,
    `  RSS growth after warm-up ${p.rssGrowthMB.toFixed(2)} MB; slope ${per(p.rssSlopeMB, '1000 batches')} ` +
      `(VmRSS: ${p.vmRssGrowthMB} MB, ${p.vmRssSlopeMB ?? '-'} MB/1000); limit ${args.maxRssSlope} MB per 1000 batches`,
    `  JS heap used: after warm-up ${p.afterWarmup.heapUsedMB.toFixed(1)} MB, end ${p.end.heapUsedMB.toFixed(1)} MB; ` +
      `RSS less the V8 heap: growth ${p.rssLessHeapGrowthMB} MB, slope ${per(p.rssLessHeapSlopeMB, '1000 batches')}`,
    `  fds        start ${p.start.fds}, after warm-up ${p.afterWarmup.fds}, end ${p.end.fds} (max after warm-up ${p.fdsMaxAfterWarmup})`,
    `  threads    start ${p.start.threads}, after warm-up ${p.afterWarmup.threads}, end ${p.end.threads} (max after warm-up ${p.threadsMaxAfterWarmup})`,
    `  event loop during compare(): p50 ${p.eventLoop.p50Ms} ms, p99 ${p.eventLoop.p99Ms} ms, max ${p.eventLoop.maxMs} ms ` +
      `(ticks of a 10 ms timer; late by p99 ${p.eventLoop.p99LateMs} ms, max ${p.eventLoop.maxLateMs} ms; ` +
      `idle loop before: p99 ${p.idleEventLoop.p99Ms} ms, max ${p.idleEventLoop.maxMs} ms)`,
  ];
  if (phase2) {
    const q = phase2;
    lines.push(
      `Load/compare/dispose: ${q.cycles} cycles of 2 loads + ${q.batchesPerCycle} batches + 2 disposes in ${q.seconds} s`,
      `  RSS        start ${q.start.rssMB.toFixed(1)} MB, after warm-up (cycle ${q.warmupX}) ${q.afterWarmup.rssMB.toFixed(1)} MB, ` +
        `end ${q.end.rssMB.toFixed(1)} MB; growth after warm-up ${q.rssGrowthMB.toFixed(2)} MB, ` +
        `slope ${per(q.rssSlopeMB, '100 cycles')} (limit ${args.maxCycleRssSlope}); ` +
        `RSS less the V8 heap: growth ${q.rssLessHeapGrowthMB} MB, slope ${per(q.rssLessHeapSlopeMB, '100 cycles')}`,
      `  fds        start ${q.start.fds}, after warm-up ${q.afterWarmup.fds}, end ${q.end.fds}; ` +
        `threads start ${q.start.threads}, after warm-up ${q.afterWarmup.threads}, end ${q.end.threads}`,
      `  event loop: p50 ${q.eventLoop.p50Ms} ms, p99 ${q.eventLoop.p99Ms} ms, max ${q.eventLoop.maxMs} ms`,
    );
  }
  if (warnings.length) lines.push(`Warnings: ${warnings.join('; ')}`);
  lines.push(
    `Verdict: ${reasons.length === 0 ? 'STEADY' : 'LEAK'}` +
      (reasons.length ? ` - ${reasons.join('; ')}` : ' - no growth after warm-up beyond the limits') +
      ` (limits: RSS slope ${args.maxRssSlope} MB/1000 batches, ${args.maxCycleRssSlope} MB/100 cycles; no fd or thread growth)`,
    `JSON: ${args.out}`,
    '',
  );
  process.stdout.write(lines.join('\n'));
  process.exitCode = reasons.length === 0 ? 0 : 1;
}

main().catch((error) => {
  process.stderr.write(`soak: ${error.stack ?? error}\n`);
  process.exit(1);
});

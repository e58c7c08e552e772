#!/usr/bin/env node
// npm run bench: compare() against the forward-pass floor and the arithmetic limit.
//
//   node bench/bench.js [--workloads A,B,S,C,D,M,F] [--threads 1,2] [--runs 5] [--quick] [--one-core] [--out FILE]
//
// Workloads A, B, S (ResNets, every thread count) and C (chains of L = 50,
// 200, 500 Linear(256) layers, n = 256, 512, 1,024, 2 batches, 1 thread, 1
// worker; --quick leaves out 500 x 1,024) print three tables:
//   1. time and memory: floor, compare, compare/floor, the extra peak RSS next
//      to its bound W·(m+p)·n²·4 (W = batches in flight) and their difference
//      (the child runs with node --expose-gc and collects each finished CKA
//      object before the next compare, so that the peak is one compare's);
//   2. per batch (ms), where the time went, from stats().times of the last
//      timed compare divided by its batches: forward, taps, grams and pairs
//      summed over the workers; wait (batches done, waiting for the ones
//      before them to be added) and wall (the native calls' wall clock, not
//      summed over workers), then floor, compare, limit and:
//        limit = Gram FLOPs / syrk rate + pair FLOPs / dgemm rate, divided by
//                the batches in flight that have cores of their own (min(W,
//                cores/threads)); Gram FLOPs = sum over every row of both models
//                of n(n+1)·d (≈ n²·d, the count the syrk rate is measured with;
//                d from peerBaseline's features; Grams the engine copies from an
//                identical tensor, stats().reusedGrams, are counted too; S counts
//                one side, its two sides being one pass); pair FLOPs = m·p·n·(n-1);
//                the rates come from benchBlasRates at the row's n, m, p and
//                threads, measured in the same child after the timed rounds;
//        cka/limit = (compare - floor) per batch / limit: the time beyond the
//                forward passes against the arithmetic it needs;
//        cmp/(floor+limit) = compare per batch / (floor + limit) per batch;
//   3. the peer baseline (peerBaseline: pytorch-cka's way, eager hooks, float32
//      Grams of uncentred features, one product for all pairs, in C++) over the
//      same batches and rows, median of as many runs after a warm-up:
//      compare/peer and the largest and median |ours - peer| over cells where
//      both are numbers; with the BLAS rates and the reused Grams.
// With A and C it also runs one core against all (A: 4 x 128; C: chain200,
// 2 x 512): workers 1 and threads 1, pinned with `taskset -c 0` where
// /usr/bin/taskset exists, against the defaults (workers = usable cores /
// threads), and prints the speed-up and the default's workers. --one-core
// pins every A, B, S and C child to core 0 (there the defaults start one worker).
//
// F (full batch, docs/full-batch.md) compares ResNet18 and ResNet34 blocks on
// one evaluation set of N = 1,000 and 5,000 samples (chunks of 128) at 1
// thread: at N = 1,000 every measure together and each measure alone (what
// its measure phase costs), at N = 5,000 the measures that need no
// eigendecomposition together, and the eigendecomposition measures on one
// layer per model (fc vs fc), which times one N x N float64 eigh per layer.
// It reports the phases (forward passes, Grams, measures), the memory
// estimate and the peak RSS. F is not in the default list (it takes about
// 10 minutes); --quick runs N = 1,000 only.
//
// M (measures) runs workload B's models and C's chain50 with measures [cka],
// [cka, rbf_cka], [cka, dcor] and [cka, rbf_cka, dcor] at 1 thread, the sets
// in turn within each round of one process, and reports what each set adds
// per step over [cka] alone: the median of the paired per-round differences.
//
// D (distributed) runs workload A's models over 32 batches of 32 in 1 process
// x 1 thread and in 2 processes x 1 thread (c10d on 127.0.0.1, Gloo), paired
// per round, and reports the speed-up and the all-reduce's share of the time.
//
// Each configuration runs in a child process of its own (so that peak RSS is
// its own), which:
//   1. loads the two models twice: as they are (the floor) and with taps (compare);
//   2. makes the batches from a fixed seed (the same for both);
//   3. warms up: one floor pass and one compare pass, not timed (TorchScript
//      optimises a graph on its first runs);
//   4. runs `runs` rounds of floor then compare, each compare a new CKA object
//      (no results are cached between runs), and reports medians with min and max.
//   5. then, not timed against the floor: the peer baseline (1 warm-up and
//      `runs` runs) and the BLAS rates for the limit.
// The floor is the bare forward passes of both models over the same batches,
// one after the other, in inference mode, with the same thread count (libtorch's
// intra-op threads and the BLAS's own pool), in as many streams at once as
// compare() has batches in flight (W; 1 stream when W = 1). Ratios are paired:
// compare / floor of the same round.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const MODELS = path.join(ROOT, 'bench', 'models');

const WORKLOADS = {
  A: {
    title: 'A: ResNet18 vs ResNet34, every submodule',
    models: ['resnet18', 'resnet34'],
    shape: [3, 32, 32],
    batches: 4,
    sizes: [32, 128],
  },
  B: {
    title: 'B: ResNet18 vs ResNet34, blocks only',
    models: ['resnet18', 'resnet34'],
    shape: [3, 32, 32],
    batches: 4,
    sizes: [32, 128],
    layers: ['conv1', 'maxpool', 'layer*.?', 'avgpool', 'fc'],
  },
  S: {
    title: 'S: ResNet18 vs itself on the same data (self-comparison)',
    models: ['resnet18', 'resnet18'],
    shape: [3, 32, 32],
    batches: 4,
    sizes: [32, 128],
    same: true,
  },
  D: {
    title: 'D: distributed, ResNet18 vs ResNet34 (every submodule), 1 process x 1 thread vs 2 processes x 1 thread',
    models: ['resnet18', 'resnet34'],
    shape: [3, 32, 32],
    batches: 32,
    n: 32,
  },
  M: {
    title: 'M: measures, cka alone vs with rbf_cka and dcor (ResNet18 vs ResNet34 blocks; 50 Linear(256) layers)',
    pairs: [
      {
        models: ['resnet18', 'resnet34'],
        shape: [3, 32, 32],
        sizes: [32, 128],
        layers: ['conv1', 'maxpool', 'layer*.?', 'avgpool', 'fc'],
      },
      { models: ['chain50', 'chain50'], shape: [256], sizes: [64, 256] },
    ],
    batches: 4,
    measureSets: [['cka'], ['cka', 'rbf_cka'], ['cka', 'dcor'], ['cka', 'rbf_cka', 'dcor']],
  },
  F: {
    title: 'F: full batch, ResNet18 vs ResNet34 blocks, one evaluation set',
    models: ['resnet18', 'resnet34'],
    shape: [3, 32, 32],
    chunk: 128,
    layers: ['conv1', 'maxpool', 'layer*.?', 'avgpool', 'fc'],
    runs: [
      { samples: 1000, measures: 'all', each: true },
      { samples: 5000, measures: 'kernel' },
      { samples: 5000, measures: 'eigen', layers: ['fc'] },
    ],
  },
  C: {
    title: 'C: scaling, L tapped Linear(256) layers on each side',
    chains: [50, 200, 500],
    shape: [256],
    batches: 2,
    sizes: [256, 512, 1024],
  },
};

/** One core against all (issue 17, deliverable 4): the workload's own models at one batch size. */
const SCALING = {
  A: { models: ['resnet18', 'resnet34'], shape: [3, 32, 32], batches: 4, n: 128 },
  C: { models: ['chain200', 'chain200'], shape: [256], batches: 2, n: 512, layersPerSide: 200 },
};
const TASKSET = '/usr/bin/taskset';

function parseArgs(argv) {
  const args = {
    workloads: ['A', 'B', 'S', 'C', 'D', 'M'],
    threads: null,
    runs: 5,
    quick: false,
    oneCore: false,
    out: path.join(ROOT, 'bench', 'results.json'),
  };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const value = () => {
      if (argv[i + 1] === undefined) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--workloads') args.workloads = value().split(',');
    else if (a === '--threads') args.threads = value().split(',').map(Number);
    else if (a === '--runs') args.runs = Number(value());
    else if (a === '--quick') args.quick = true;
    else if (a === '--one-core') args.oneCore = true;
    else if (a === '--out') args.out = path.resolve(value());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        fs
          .readFileSync(__filename, 'utf8')
          .split('\n')
          .slice(1)
          .filter((line, i, all) => all.slice(0, i + 1).every((l) => l.startsWith('//')))
          .join('\n')
          .replace(/^\/\/ ?/gm, '') + '\n',
      );
      process.exit(0);
    } else throw new Error(`Unknown option ${a}`);
  }
  return args;
}

function ensureModels() {
  const manifest = path.join(MODELS, 'manifest.json');
  if (fs.existsSync(manifest)) return;
  console.log('bench: making the models (bench/make-models.py with /usr/bin/python3) ...');
  const made = spawnSync('/usr/bin/python3', [path.join(__dirname, 'make-models.py')], { stdio: 'inherit' });
  if (made.status !== 0) {
    throw new Error(
      'Could not make the benchmark models: install python3-torch and python3-torchvision (apt-get), then run npm run bench again',
    );
  }
}

/** The configurations to run, in order. */
function plan(args) {
  const cores = os.availableParallelism();
  const threadCounts =
    args.threads ?? [1, Math.max(1, Math.floor(cores / 2)), cores].filter((t, i, all) => all.indexOf(t) === i);
  const configs = [];
  for (const key of args.workloads) {
    const w = WORKLOADS[key];
    if (!w) throw new Error(`Unknown workload ${key} (A, B, S, C, D, M or F)`);
    if (key === 'D') continue; // distributedBench()
    if (key === 'F') {
      for (const run of args.quick ? w.runs.slice(0, 1) : w.runs) {
        configs.push({
          workload: key,
          title: w.title,
          models: w.models,
          shape: w.shape,
          n: w.chunk,
          batches: Math.ceil(run.samples / w.chunk),
          threads: 1,
          ...run,
          layers: run.layers ?? w.layers,
        });
      }
      continue;
    }
    if (key === 'M') {
      for (const pair of w.pairs) {
        for (const n of args.quick ? pair.sizes.slice(0, 1) : pair.sizes) {
          configs.push({
            workload: key,
            title: w.title,
            models: pair.models,
            shape: pair.shape,
            batches: w.batches,
            n,
            threads: 1,
            concurrent: false,
            runs: args.runs,
            layers: pair.layers,
            measureSets: w.measureSets,
          });
        }
      }
      continue;
    }
    if (key === 'C') {
      for (const layers of w.chains) {
        for (const n of w.sizes) {
          // 500 x 1,024 holds 4.2 GB of Grams per batch and takes minutes.
          if (args.quick && layers === 500 && n === 1024) continue;
          configs.push({
            workload: key,
            title: w.title,
            models: [`chain${layers}`, `chain${layers}`],
            shape: w.shape,
            batches: w.batches,
            n,
            threads: 1,
            workers: 1,
            concurrent: false,
            runs: Math.min(args.runs, 3),
            layersPerSide: layers,
            pin: args.oneCore,
          });
        }
      }
      configs.push(...scalingConfigs(key, args));
      continue;
    }
    for (const n of w.sizes) {
      for (const threads of threadCounts) {
        // Sequential at every thread count; concurrent (two models at once) where the cores allow it.
        const modes = w.same ? [false] : cores >= 2 * threads ? [false, true] : [false];
        for (const concurrent of modes) {
          configs.push({
            workload: key,
            title: w.title,
            models: w.models,
            shape: w.shape,
            batches: w.batches,
            n,
            threads,
            concurrent,
            runs: args.runs,
            layers: w.layers,
            same: Boolean(w.same),
            pin: args.oneCore,
          });
        }
      }
    }
    if (key === 'A') configs.push(...scalingConfigs(key, args));
  }
  return configs;
}

/**
 * Workload A's or C's one core against all: workers 1 and threads 1 (pinned
 * to core 0 where taskset exists), then the defaults (pinned with --one-core).
 */
function scalingConfigs(key, args) {
  const s = SCALING[key];
  const base = {
    workload: key,
    title: `${key}: one core against all`,
    models: s.models,
    shape: s.shape,
    batches: s.batches,
    n: s.n,
    concurrent: false,
    runs: key === 'C' ? Math.min(args.runs, 3) : args.runs,
    ...(s.layersPerSide ? { layersPerSide: s.layersPerSide } : {}),
  };
  return [
    { ...base, scaling: 'one', threads: 1, workers: 1, pin: true },
    { ...base, scaling: 'default', threads: null, workers: null, pin: args.oneCore },
  ];
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const stat = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/** Fixed-seed normal inputs (mulberry32 + Box-Muller): the same in every process. */
function makeBatches(config) {
  let state = 12345;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  };
  const size = config.shape.reduce((a, b) => a * b, config.n);
  return Array.from({ length: config.batches }, () => {
    const data = new Float32Array(size);
    for (let i = 0; i < size; i += 1) data[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    return { data, shape: [config.n, ...config.shape] };
  });
}

/**
 * Loads a configuration's two models in a child: `m1` and `m2` through the
 * package (`name2` names the second, `same` reuses the first) and, with
 * `plain`, each again bare for the forward floor.
 */
async function loadModels(config, { plain = false, name2 = config.models[1] } = {}) {
  const { loadModel } = require(path.join(ROOT, 'dist'));
  const file = (name) => path.join(MODELS, `${name}.pt`);
  const out = {};
  if (plain) {
    const native = require(path.join(ROOT, 'dist', 'native', 'binding')).binding();
    out.plain = [
      await native.loadModel(file(config.models[0]), 'cpu', false),
      await native.loadModel(file(config.models[1]), 'cpu', false),
    ];
  }
  out.m1 = await loadModel(file(config.models[0]), { name: config.models[0] });
  out.m2 = config.same ? out.m1 : await loadModel(file(config.models[1]), { name: name2 });
  return out;
}

/**
 * Runs in a child of workload D: one rank (or the whole job when WORLD_SIZE
 * is unset). Warms up on two batches without distribution, then times one
 * compare() over all batches; prints one JSON line.
 */
async function distributedChild(config) {
  const { CKA } = require(path.join(ROOT, 'dist'));
  const { m1, m2 } = await loadModels(config);
  const batches = makeBatches(config);
  const options = { threads: 1, workers: 1, concurrent: false, onWarning: () => {} };
  await new CKA(m1, m2, options).compare(batches.slice(0, 2)); // warm-up, not timed
  const cka = new CKA(m1, m2, options);
  const distributed = process.env.WORLD_SIZE ? { distributed: true } : {};
  const t = performance.now();
  const summary = await cka.compare(batches, undefined, distributed);
  const ms = performance.now() - t;
  const timings = summary.distributed?.timings ?? { rendezvous: 0, wait: 0, allreduce: 0 };
  const result = cka.export();
  return {
    // The work after everyone arrived: this rank's share, the wait, the all-reduce.
    ms: ms - timings.rendezvous,
    totalMs: ms,
    timings,
    batches: summary.distributed?.local.batches ?? summary.batches,
    cka: result.cka,
  };
}

/** Workload D: 1 process x 1 thread against 2 processes x 1 thread, paired per round. */
async function distributedBench(args) {
  const w = WORKLOADS.D;
  const config = { ...w, batches: args.quick ? 4 : w.batches };
  const runs = Math.min(args.runs, args.quick ? 1 : 3);
  const env = { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' };
  for (const key of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT']) delete env[key];
  const run = (extra) =>
    new Promise((resolve, reject) => {
      const { execFile } = require('node:child_process');
      execFile(
        process.execPath,
        [__filename, '--dist-child', JSON.stringify(config)],
        { env: { ...env, ...extra }, maxBuffer: 1 << 24 },
        (error, stdout, stderr) =>
          error
            ? reject(new Error(`${error.message}\n${stderr}`))
            : resolve(JSON.parse(stdout.trim().split('\n').pop())),
      );
    });
  const rounds = [];
  for (let r = 0; r < runs; r += 1) {
    process.stdout.write(`  D round ${r + 1}/${runs} ...`);
    const one = await run({});
    const port = String(29600 + ((process.pid + r) % 300));
    const ranks = await Promise.all(
      [0, 1].map((rank) =>
        run({
          RANK: String(rank),
          LOCAL_RANK: String(rank),
          WORLD_SIZE: '2',
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: port,
        }),
      ),
    );
    const two = Math.max(...ranks.map((x) => x.ms));
    const twoTotal = Math.max(...ranks.map((x) => x.totalMs));
    let diff = 0;
    for (const rank of ranks) {
      rank.cka.forEach((row, i) =>
        row.forEach((v, j) => {
          if (v !== null) diff = Math.max(diff, Math.abs(v - one.cka[i][j]));
        }),
      );
    }
    const round = {
      oneProcessMs: one.ms,
      twoProcessMs: two,
      speedup: one.ms / two,
      twoProcessTotalMs: twoTotal,
      speedupWithStartup: one.totalMs / twoTotal,
      allreduceMs: Math.max(...ranks.map((x) => x.timings.allreduce)),
      allreduceShare: Math.max(...ranks.map((x) => x.timings.allreduce)) / two,
      waitShare: Math.max(...ranks.map((x) => x.timings.wait)) / two,
      rendezvousMs: Math.max(...ranks.map((x) => x.timings.rendezvous)),
      shares: ranks.map((x) => x.batches),
      maxDifference: diff,
    };
    rounds.push(round);
    process.stdout.write(` speed-up ${round.speedup.toFixed(2)}\n`);
  }
  const pick = (key) => stat(rounds.map((x) => x[key]));
  return {
    workload: 'D',
    title: w.title,
    n: config.n,
    batches: config.batches,
    threadsPerProcess: 1,
    runs,
    oneProcessMs: pick('oneProcessMs'),
    twoProcessMs: pick('twoProcessMs'),
    speedup: pick('speedup'),
    twoProcessTotalMs: pick('twoProcessTotalMs'),
    speedupWithStartup: pick('speedupWithStartup'),
    allreduceMs: pick('allreduceMs'),
    allreduceShare: pick('allreduceShare'),
    waitShare: pick('waitShare'),
    rendezvousMs: pick('rendezvousMs'),
    maxDifference: Math.max(...rounds.map((x) => x.maxDifference)),
    rounds,
  };
}

function distributedTable(d) {
  const pct = (x) => `${(x * 100).toFixed(2)}%`;
  return [
    d.title,
    `  ${d.batches} batches of ${d.n}, 1 thread per process (OMP_NUM_THREADS=1), models in turn; ${d.runs} paired rounds, median [min-max]`,
    `  1 process:   ${range(d.oneProcessMs, 0, ' ms')}`,
    `  2 processes: ${range(d.twoProcessMs, 0, ' ms')} after a start-up of ${range(d.rendezvousMs, 0, ' ms')} ` +
      '(hashing the model files for the check, connecting, waiting for the other rank)',
    `  speed-up:    ${range(d.speedup, 2, 'x')}; with the start-up: ${range(d.speedupWithStartup, 2, 'x')}`,
    `  all-reduce:  ${range(d.allreduceMs, 1, ' ms')}, ${pct(d.allreduceShare.median)} of the 2-process time ` +
      `(waiting for the other rank: ${pct(d.waitShare.median)})`,
    `  largest |CKA(2 processes) - CKA(1 process)|: ${d.maxDifference.toExponential(2)}`,
  ].join('\n');
}

/**
 * Frees finished CKA objects (with node --expose-gc), so that each compare's
 * peak RSS is its own: a CKA object keeps its last batch's Gram buffers until
 * it is collected, and without this the next compare's peak holds both.
 */
async function collect() {
  if (typeof global.gc !== 'function') return;
  global.gc();
  await new Promise((resolve) => setImmediate(resolve));
  global.gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
}

/** Our row names as peerBaseline takes them: `name#1` for a first call (`name` alone means every call). */
const peerName = (row) => (/#\d+$/.test(row) ? row : `${row}#1`);

/** The largest |a - b| over cells where both are numbers, b's cells found by row and column name. */
function maxDifference(ours, rows1, rows2, peer) {
  const i1 = new Map(peer.rows1.map((name, i) => [name, i]));
  const i2 = new Map(peer.rows2.map((name, j) => [name, j]));
  let diff = 0;
  const all = [];
  ours.forEach((row, i) =>
    row.forEach((v, j) => {
      const q = peer.cka[i1.get(rows1[i])]?.[i2.get(rows2[j])];
      if (typeof v !== 'number' || typeof q !== 'number') return;
      diff = Math.max(diff, Math.abs(v - q));
      all.push(Math.abs(v - q));
    }),
  );
  return { diff, median: all.length > 0 ? median(all) : null, cells: all.length };
}

/**
 * Runs in the child: one configuration, printed as one JSON line. A null
 * threads or workers leaves the option out (the package's default).
 */
async function child(config) {
  const { CKA, runtimeInfo } = require(path.join(ROOT, 'dist'));
  const native = require(path.join(ROOT, 'dist', 'native', 'binding')).binding();
  const { plain, m1, m2 } = await loadModels(config, { plain: true });
  const cores = runtimeInfo().cores;
  // The package's defaults on the CPU: 1 thread, usable cores / threads workers.
  const threads = config.threads ?? 1;
  const workers = config.workers ?? Math.max(1, Math.floor(cores / threads));

  // Inputs from a fixed seed, the same for floor and compare.
  const batches = makeBatches(config);

  // W streams at once (batch i in stream i mod W), as compare() has W batches in flight.
  const streams = Math.min(workers, batches.length);
  const floor = async () => {
    const t = performance.now();
    await Promise.all(
      Array.from({ length: streams }, async (_, s) => {
        for (let i = s; i < batches.length; i += streams) {
          await plain[0].forwardOnly(batches[i], threads);
          if (!config.same) await plain[1].forwardOnly(batches[i], threads);
        }
      }),
    );
    return performance.now() - t;
  };
  const layers = config.layers ? { model1Layers: config.layers, model2Layers: config.layers } : {};
  let stats;
  let result;
  const compare = async () => {
    const t = performance.now();
    const cka = new CKA(m1, m2, {
      ...(config.threads != null ? { threads: config.threads } : {}),
      ...(config.workers != null ? { workers: config.workers } : {}),
      concurrent: config.concurrent,
      onWarning: () => {},
      ...layers,
    });
    await cka.compare(batches);
    result = cka.export();
    const ms = performance.now() - t;
    stats = cka.stats();
    return ms;
  };

  // Warm-up, not timed: the floor, and the instrumented models' own inference
  // (one pass each, recording only their last layer), so that the peak RSS
  // from here on is what compare() adds over running the models.
  await floor();
  for (const model of config.same ? [m1] : [m1, m2]) {
    const names = model.layers().map((l) => l.name);
    await model.extract(batches[0], [names[names.length - 1]]);
  }
  const rssBefore = process.resourceUsage().maxRSS * 1024;
  await compare(); // warm-up, not timed
  await collect();
  const rssWarmup = process.resourceUsage().maxRSS * 1024;
  const floors = [];
  const compares = [];
  const ratios = [];
  for (let r = 0; r < config.runs; r += 1) {
    const f = await floor();
    const c = await compare();
    await collect();
    floors.push(f);
    compares.push(c);
    ratios.push(c / f);
  }
  const rssAfter = process.resourceUsage().maxRSS * 1024;
  const rows = [result.model1Layers.length, result.model2Layers.length];

  // The peer over the same batches and rows: 1 warm-up, then as many runs.
  const peerLayers = [result.model1Layers.map(peerName), result.model2Layers.map(peerName)];
  const peerRun = async () => {
    const t = performance.now();
    const run = await native.peerBaseline(m1.native, m2.native, peerLayers[0], peerLayers[1], batches, threads);
    return { ms: performance.now() - t, run };
  };
  await peerRun();
  const peerRuns = [];
  for (let r = 0; r < config.runs; r += 1) peerRuns.push(await peerRun());
  const peer = peerRuns[peerRuns.length - 1].run;
  const vsPeer = maxDifference(result.cka, result.model1Layers, result.model2Layers, peer);

  // The arithmetic limit per batch, at the BLAS rates of this n, m, p and thread count.
  const n = config.n;
  const rates = await native.benchBlasRates(n, rows[0], rows[1], threads);
  const d = [
    new Map(peer.rows1.map((name, i) => [name, peer.features1[i]])),
    new Map(peer.rows2.map((name, j) => [name, peer.features2[j]])),
  ];
  const features = (side) =>
    result[side ? 'model2Layers' : 'model1Layers'].reduce((sum, row) => sum + (d[side].get(row) ?? NaN), 0);
  const gramFlops = n * (n + 1) * (features(0) + (config.same ? 0 : features(1)));
  const pairFlops = rows[0] * rows[1] * n * (n - 1);
  const parallel = Math.max(1, Math.min(stats.workers ?? workers, Math.floor(cores / (stats.threads ?? threads))));
  const gramLimitMs = (gramFlops / (rates.ssyrkGflops * 1e9) / parallel) * 1000;
  const pairLimitMs = (pairFlops / (rates.dgemmGflops * 1e9) / parallel) * 1000;
  const limitMs = gramLimitMs + pairLimitMs;

  const perBatch = (ms) => ms / config.batches;
  const times = stats.times;
  const timed = (key) => (typeof times?.[key] === 'number' && times.batches > 0 ? times[key] / times.batches : null);
  const floorPerBatch = perBatch(median(floors));
  const comparePerBatch = perBatch(median(compares));
  const peerMs = stat(peerRuns.map((x) => x.ms));
  const samples = n * config.batches;
  const boundBytes = (stats.workers ?? workers) * (rows[0] + rows[1]) * n * n * 4;
  return {
    ...config,
    cores,
    rows,
    floorMs: stat(floors),
    compareMs: stat(compares),
    ratio: stat(ratios),
    floorStreams: streams,
    samplesPerSecond: (samples / median(compares)) * 1000,
    floorSamplesPerSecond: (samples / median(floors)) * 1000,
    peakRssBytes: rssAfter,
    extraPeakRssBytes: rssAfter - rssBefore,
    warmupExtraPeakRssBytes: rssWarmup - rssBefore,
    boundBytes,
    extraOverBoundBytes: rssAfter - rssBefore - boundBytes,
    stats,
    breakdown: {
      forward: timed('forwardMs'),
      taps: timed('tapMs'),
      grams: timed('gramMs'),
      pairs: timed('pairMs'),
      wait: timed('waitMs'),
      wall: timed('wallMs'),
      batches: times?.batches ?? null,
    },
    limit: {
      ms: limitMs,
      gramMs: gramLimitMs,
      pairMs: pairLimitMs,
      gramFlops,
      pairFlops,
      features: [features(0), features(1)],
      parallel,
      rates,
    },
    floorPerBatchMs: floorPerBatch,
    comparePerBatchMs: comparePerBatch,
    ckaPerBatchMs: comparePerBatch - floorPerBatch,
    ckaOverLimit: (comparePerBatch - floorPerBatch) / limitMs,
    compareOverFloorLimit: comparePerBatch / (floorPerBatch + limitMs),
    peerMs,
    peerSeconds: stat(peerRuns.map((x) => x.run.seconds)),
    ratioPeer: median(compares) / peerMs.median,
    peerMaxDifference: vsPeer.diff,
    peerMedianDifference: vsPeer.median,
    peerCells: vsPeer.cells,
  };
}

/** Workload M in a child: every measure set in turn per round, paired with [cka] alone. */
async function measuresChild(config) {
  const { CKA } = require(path.join(ROOT, 'dist'));
  const { m1, m2 } = await loadModels(config, { name2: `${config.models[1]}-2` });
  const batches = makeBatches(config);
  const layers = config.layers ? { model1Layers: config.layers, model2Layers: config.layers } : {};
  let rows;
  const time = async (measures) => {
    const t = performance.now();
    const cka = new CKA(m1, m2, {
      threads: 1,
      workers: 1,
      concurrent: false,
      onWarning: () => {},
      measures,
      ...layers,
    });
    await cka.compare(batches);
    const result = cka.export();
    rows = [result.model1Layers.length, result.model2Layers.length];
    return (performance.now() - t) / config.batches;
  };
  for (const measures of config.measureSets) await time(measures); // warm-up, not timed
  const steps = config.measureSets.map(() => []);
  for (let r = 0; r < config.runs; r += 1) {
    for (let i = 0; i < config.measureSets.length; i += 1) steps[i].push(await time(config.measureSets[i]));
  }
  return {
    workload: 'M',
    models: config.models,
    n: config.n,
    rows,
    sets: config.measureSets.map((measures, i) => ({
      measures,
      stepMs: stat(steps[i]),
      addedMs: stat(steps[i].map((ms, r) => ms - steps[0][r])),
    })),
  };
}

const FULL_MEASURES = {
  kernel: ['cka', 'linear_cka_biased', 'rbf_cka', 'rbf_cka_biased', 'dcor', 'rsa', 'mknn'],
  eigen: ['cca_rho', 'cca_r2', 'svcca', 'procrustes'],
};
FULL_MEASURES.all = [...FULL_MEASURES.kernel, ...FULL_MEASURES.eigen];

/**
 * Workload F in a child: the bare forward passes over the N samples (the
 * floor), then one full-batch compare() of the measure set (and, with
 * `each`, one per measure alone), with the engine's phase times.
 */
async function fullBatchChild(config) {
  const { CKA } = require(path.join(ROOT, 'dist'));
  const { plain, m1, m2 } = await loadModels(config, { plain: true });
  const batches = makeBatches(config);
  const t0 = performance.now();
  for (const batch of batches) for (const model of plain) await model.forwardOnly(batch, 1);
  const floorMs = ((performance.now() - t0) * config.samples) / (config.n * config.batches);
  const layers = { model1Layers: config.layers, model2Layers: config.layers };
  const run = async (measures) => {
    const t = performance.now();
    const cka = new CKA(m1, m2, { threads: 1, onWarning: () => {}, measures, fullBatch: config.samples, ...layers });
    await cka.compare(batches);
    const result = cka.export();
    return {
      measures,
      ms: performance.now() - t,
      rows: [result.model1Layers.length, result.model2Layers.length],
      stats: cka.fullBatchStats(),
    };
  };
  const measures = FULL_MEASURES[config.measures];
  const together = await run(measures);
  // Peak RSS of the process after its first full-batch run (the models, the floor's passes and that run).
  together.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const alone = [];
  if (config.each) for (const measure of measures) alone.push(await run([measure]));
  return {
    workload: 'F',
    models: config.models,
    samples: config.samples,
    chunk: config.n,
    set: config.measures,
    floorMs,
    together,
    alone,
  };
}

/** Workload F: the phases of each run, in seconds. */
function fullBatchTable(results) {
  const s = (ms) => (ms / 1000).toFixed(1);
  const lines = [
    [
      'N',
      'rows',
      'measures',
      'total s',
      'forward s',
      'Grams s',
      'measures s',
      'forward floor s',
      'estimate',
      'peak RSS',
    ],
  ];
  for (const r of results) {
    for (const one of [r.together, ...r.alone]) {
      lines.push([
        String(r.samples),
        `${one.rows[0]}x${one.rows[1]}`,
        one === r.together ? `${r.set} (${one.measures.length})` : `  ${one.measures[0]} alone`,
        s(one.ms),
        s(one.stats.forwardMs),
        s(one.stats.gramMs),
        s(one.stats.measureMs),
        one === r.together ? s(r.floorMs) : '',
        mb(one.stats.estimateBytes),
        one === r.together ? mb(one.peakRssBytes) : '',
      ]);
    }
  }
  return columns(lines);
}

const mb = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const range = ({ median: m, min, max }, digits, unit = '') =>
  `${m.toFixed(digits)}${unit} [${min.toFixed(digits)}-${max.toFixed(digits)}]`;

/** Workload M: per step, [cka] alone and what each set adds (median of paired differences [min-max]). */
function measuresTable(results) {
  const lines = [['models', 'rows', 'batch', 'measures', 'ms per step', 'added ms per step', 'per extra measure']];
  for (const r of results) {
    const base = r.sets[0].stepMs.median;
    for (const set of r.sets) {
      const extra = set.measures.length - 1;
      lines.push([
        r.models.join(' vs '),
        `${r.rows[0]}x${r.rows[1]}`,
        String(r.n),
        set.measures.join(','),
        range(set.stepMs, 1),
        extra ? range(set.addedMs, 1) : '-',
        extra ? `${((set.addedMs.median / extra / base) * 100).toFixed(1)}%` : '-',
      ]);
    }
  }
  return columns(lines);
}

/** Rows of cells as text columns, each as wide as its widest cell, two spaces apart. */
function columns(lines) {
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines
    .map((l) =>
      l
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The workload column: A, or `A 1 core` / `A default` for the one-core-against-all rows. */
const rowLabel = (r) =>
  r.scaling ? `${r.workload} ${r.scaling === 'one' ? '1 core' : 'default'}${r.pin ? ' pinned' : ''}` : r.workload;
const threadsWorkers = (r) => `${r.stats.threads}x${r.stats.workers ?? '?'}`;
const ms1 = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(1) : '-');

/** Table 1: time and memory. */
function table(results) {
  const header = [
    'workload',
    'rows',
    'batch',
    'threads',
    'workers',
    'models',
    'floor ms',
    'compare ms',
    'compare/floor',
    'samples/s',
    'extra peak RSS',
    'W(m+p)n²4',
    'extra-bound',
    'Grams',
    'sums',
  ];
  const lines = [header];
  for (const r of results) {
    lines.push([
      rowLabel(r),
      `${r.rows[0]}x${r.rows[1]}`,
      String(r.n),
      String(r.stats.threads),
      String(r.stats.workers ?? '?'),
      r.same ? 'one pass' : r.concurrent ? 'at once' : 'in turn',
      range(r.floorMs, 0),
      range(r.compareMs, 0),
      range(r.ratio, 3),
      r.samplesPerSecond.toFixed(0),
      mb(r.extraPeakRssBytes),
      mb(r.boundBytes),
      mb(r.extraOverBoundBytes),
      mb(r.stats.gramBytes),
      mb(r.stats.accumulatorBytes),
    ]);
  }
  return columns(lines);
}

/** Table 2: per batch, where the time went (summed over the workers) and the arithmetic limit. */
function breakdownTable(results) {
  const lines = [
    [
      'workload',
      'rows',
      'batch',
      'thr x W',
      'forward',
      'taps',
      'grams',
      'pairs',
      'wait',
      'wall',
      'floor',
      'compare',
      'limit (Grams+pairs)',
      'cka/limit',
      'cmp/(floor+limit)',
    ],
  ];
  for (const r of results) {
    const b = r.breakdown;
    lines.push([
      rowLabel(r),
      `${r.rows[0]}x${r.rows[1]}`,
      String(r.n),
      threadsWorkers(r),
      ms1(b.forward),
      ms1(b.taps),
      ms1(b.grams),
      ms1(b.pairs),
      ms1(b.wait),
      ms1(b.wall),
      ms1(r.floorPerBatchMs),
      ms1(r.comparePerBatchMs),
      `${ms1(r.limit.ms)} (${ms1(r.limit.gramMs)}+${ms1(r.limit.pairMs)})`,
      r.ckaOverLimit.toFixed(2),
      r.compareOverFloorLimit.toFixed(2),
    ]);
  }
  return columns(lines);
}

/** Table 3: against the peer baseline, with the BLAS rates of the limit. */
function peerTable(results) {
  const lines = [
    [
      'workload',
      'rows',
      'batch',
      'thr x W',
      'compare ms',
      'peer ms',
      'compare/peer',
      'max |ours-peer|',
      'median',
      'syrk GF/s',
      'dgemm GF/s',
      'reused Grams',
    ],
  ];
  for (const r of results) {
    lines.push([
      rowLabel(r),
      `${r.rows[0]}x${r.rows[1]}`,
      String(r.n),
      threadsWorkers(r),
      range(r.compareMs, 0),
      range(r.peerMs, 0),
      r.ratioPeer.toFixed(2),
      r.peerCells > 0 ? r.peerMaxDifference.toExponential(2) : '-',
      r.peerCells > 0 ? r.peerMedianDifference.toExponential(2) : '-',
      r.limit.rates.ssyrkGflops.toFixed(1),
      r.limit.rates.dgemmGflops.toFixed(1),
      String(r.stats.reusedGrams ?? '?'),
    ]);
  }
  return columns(lines);
}

/** One core against all: per workload, compare(1 worker, 1 thread) / compare(defaults). */
function scalingSummary(results) {
  const out = [];
  for (const key of Object.keys(SCALING)) {
    const one = results.find((r) => r.workload === key && r.scaling === 'one');
    const all = results.find((r) => r.workload === key && r.scaling === 'default');
    if (!one || !all) continue;
    out.push({
      workload: key,
      models: one.models,
      rows: one.rows,
      n: one.n,
      batches: one.batches,
      onePinned: one.pin,
      oneMs: one.compareMs,
      oneWorkers: one.stats.workers,
      defaultPinned: all.pin,
      defaultMs: all.compareMs,
      defaultWorkers: all.stats.workers,
      defaultThreads: all.stats.threads,
      defaultCores: all.cores,
      speedup: one.compareMs.median / all.compareMs.median,
    });
  }
  return out;
}

function scalingTable(summary) {
  const pinned = (p) => (p ? ' (taskset -c 0)' : '');
  const lines = [
    ['workload', 'rows', 'batches', '1 worker, 1 thread ms', 'defaults ms', 'default thr x W', 'speed-up'],
  ];
  for (const s of summary) {
    lines.push([
      s.workload,
      `${s.rows[0]}x${s.rows[1]}`,
      `${s.batches} x ${s.n}`,
      `${range(s.oneMs, 0)}${pinned(s.onePinned)}`,
      `${range(s.defaultMs, 0)}${pinned(s.defaultPinned)}`,
      `${s.defaultThreads}x${s.defaultWorkers} of ${s.defaultCores} cores`,
      `${s.speedup.toFixed(2)}x`,
    ]);
  }
  return columns(lines);
}

async function main() {
  if (process.argv[2] === '--child' || process.argv[2] === '--dist-child') {
    const config = JSON.parse(process.argv[3]);
    const result =
      process.argv[2] !== '--child'
        ? await distributedChild(config)
        : config.workload === 'M'
          ? await measuresChild(config)
          : config.workload === 'F'
            ? await fullBatchChild(config)
            : await child(config);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const args = parseArgs(process.argv.slice(2));
  ensureModels();
  const { runtimeInfo } = require(path.join(ROOT, 'dist'));
  const info = runtimeInfo();
  const configs = plan(args);
  const pin = fs.existsSync(TASKSET);
  if (!pin && configs.some((c) => c.pin)) console.log(`bench: no ${TASKSET}, so the one-core rows run unpinned`);
  console.log(
    `bench: ${configs.length} configurations, ${args.runs} timed runs each after 1 warm-up run (not timed); ` +
      `libtorch ${info.libtorchVersion}, ${info.cores} cores, BLAS ${info.blas}, node ${process.version}`,
  );
  const results = [];
  const measures = [];
  const full = [];
  for (const config of configs) {
    const label =
      config.workload === 'F'
        ? `F N=${config.samples} ${config.measures} measures`
        : `${config.workload}${config.layersPerSide ? ` L=${config.layersPerSide}` : ''} n=${config.n} ` +
          `threads=${config.threads ?? 'default'}${config.workload === 'M' ? '' : ` workers=${config.workers ?? 'default'}`} ` +
          `${config.same ? 'self' : config.concurrent ? 'concurrent' : 'sequential'}${config.measureSets ? ' measure sets' : ''}` +
          `${config.pin && pin ? ' (taskset -c 0)' : ''}`;
    process.stdout.write(`  ${label} ...`);
    // The package's default is 1 thread on the CPU.
    const threads = String(config.threads ?? 1);
    const env = { ...process.env, OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads };
    // --expose-gc: the child frees each finished CKA object before the next compare (see collect()).
    const command = [
      '--expose-gc',
      __filename,
      '--child',
      JSON.stringify({ ...config, pin: Boolean(config.pin && pin) }),
    ];
    const out =
      config.pin && pin
        ? execFileSync(TASKSET, ['-c', '0', process.execPath, ...command], {
            env,
            encoding: 'utf8',
            maxBuffer: 1 << 24,
          })
        : execFileSync(process.execPath, command, { env, encoding: 'utf8', maxBuffer: 1 << 24 });
    const result = JSON.parse(out.trim().split('\n').pop());
    if (result.workload === 'F') {
      full.push(result);
      process.stdout.write(` ${(result.together.ms / 1000).toFixed(1)} s\n`);
      continue;
    }
    if (result.workload === 'M') {
      measures.push(result);
      process.stdout.write(` +${result.sets[result.sets.length - 1].addedMs.median.toFixed(1)} ms per step\n`);
      continue;
    }
    results.push(result);
    process.stdout.write(
      ` ratio ${result.ratio.median.toFixed(3)}, cka/limit ${result.ckaOverLimit.toFixed(2)}, ` +
        `compare/peer ${result.ratioPeer.toFixed(2)}, workers ${result.stats.workers}\n`,
    );
  }
  if (measures.length > 0) console.log(`\n${measuresTable(measures)}\n`);
  if (full.length > 0) {
    console.log(`\n${fullBatchTable(full)}\n`);
    console.log(
      'full batch: 1 thread; forward floor: both models bare over the N samples; estimate: the memory estimate.',
    );
  }
  const scaling = scalingSummary(results);
  if (results.length > 0) {
    console.log(`\n${table(results)}\n`);
    console.log(
      "floor: both models' bare forward passes in turn (inference mode, same threads, W streams); ratios are per round, " +
        "median [min-max]; extra peak RSS: over the models' own inference, next to the bound W(m+p)n²4 (W: workers).",
    );
    console.log(`\n${breakdownTable(results)}\n`);
    console.log(
      'per batch, ms: forward, taps, grams, pairs from stats().times of the last timed compare, summed over the workers ' +
        '(wait, wall: as the engine counts them); limit = Gram FLOPs / syrk rate + pair FLOPs / dgemm rate over ' +
        'min(W, cores/threads), every row counted; cka/limit = (compare - floor) / limit.',
    );
    console.log(`\n${peerTable(results)}\n`);
    console.log(
      "peer: pytorch-cka's way in C++ (hooks, float32 Grams of uncentred features, one product for all pairs), " +
        'same batches and rows, median of as many runs; max |ours-peer| over cells where both are numbers.',
    );
  }
  if (scaling.length > 0) {
    console.log(`\n${scalingTable(scaling)}\n`);
    console.log('speed-up: compare(1 worker, 1 thread) / compare(defaults), medians.');
  }
  let distributed = null;
  if (args.workloads.includes('D')) {
    distributed = await distributedBench(args);
    console.log(`\n${distributedTable(distributed)}\n`);
  }
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  const report = {
    date: new Date().toISOString(),
    machine: { cores: info.cores, cpu: os.cpus()[0]?.model ?? 'unknown', memoryBytes: os.totalmem() },
    runtime: info,
    node: process.version,
    runs: args.runs,
    results,
    ...(scaling.length > 0 ? { scaling } : {}),
    ...(measures.length > 0 ? { measures } : {}),
    ...(full.length > 0 ? { fullBatch: full } : {}),
    ...(distributed ? { distributed } : {}),
  };
  fs.writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), args.out)}`);
}

main().catch((error) => {
  console.error(`bench: ${error.stack ?? error}`);
  process.exit(1);
});

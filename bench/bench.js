#!/usr/bin/env node
// npm run bench: compare() against the forward-pass floor.
//
//   node bench/bench.js [--workloads A,B,S,C,D,M,F] [--threads 1,2] [--runs 5] [--quick] [--out FILE]
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
// The floor is the bare forward passes of both models over the same batches,
// one after the other, in inference mode, with the same thread count (libtorch's
// intra-op threads and the BLAS's own pool). Ratios are paired: compare / floor
// of the same round.
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
    sizes: [64, 256, 1024],
  },
};

function parseArgs(argv) {
  const args = {
    workloads: ['A', 'B', 'S', 'C', 'D', 'M'],
    threads: null,
    runs: 5,
    quick: false,
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
    else if (a === '--out') args.out = path.resolve(value());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        fs
          .readFileSync(__filename, 'utf8')
          .split('\n')
          .slice(1, 17)
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
      const chains = args.quick ? [50, 200] : w.chains;
      const sizes = args.quick ? [64, 256] : w.sizes;
      for (const layers of chains) {
        for (const n of sizes) {
          configs.push({
            workload: key,
            title: w.title,
            models: [`chain${layers}`, `chain${layers}`],
            shape: w.shape,
            batches: w.batches,
            n,
            threads: 1,
            concurrent: false,
            runs: Math.min(args.runs, 3),
            layersPerSide: layers,
          });
        }
      }
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
          });
        }
      }
    }
  }
  return configs;
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
  const options = { threads: 1, concurrent: false, onWarning: () => {} };
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

/** Runs in the child: one configuration, printed as one JSON line. */
async function child(config) {
  const { CKA } = require(path.join(ROOT, 'dist'));
  const { plain, m1, m2 } = await loadModels(config, { plain: true });

  // Inputs from a fixed seed, the same for floor and compare.
  const batches = makeBatches(config);

  const floor = async () => {
    const t = performance.now();
    for (const batch of batches) {
      await plain[0].forwardOnly(batch, config.threads);
      if (!config.same) await plain[1].forwardOnly(batch, config.threads);
    }
    return performance.now() - t;
  };
  const layers = config.layers ? { model1Layers: config.layers, model2Layers: config.layers } : {};
  let stats;
  let rows;
  const compare = async () => {
    const t = performance.now();
    const cka = new CKA(m1, m2, {
      threads: config.threads,
      concurrent: config.concurrent,
      onWarning: () => {},
      ...layers,
    });
    await cka.compare(batches);
    const result = cka.export();
    const ms = performance.now() - t;
    stats = cka.stats();
    rows = [result.model1Layers.length, result.model2Layers.length];
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
  const floors = [];
  const compares = [];
  const ratios = [];
  for (let r = 0; r < config.runs; r += 1) {
    const f = await floor();
    const c = await compare();
    floors.push(f);
    compares.push(c);
    ratios.push(c / f);
  }
  const rssAfter = process.resourceUsage().maxRSS * 1024;
  const samples = config.n * config.batches;
  const n = config.n;
  return {
    ...config,
    rows,
    floorMs: stat(floors),
    compareMs: stat(compares),
    ratio: stat(ratios),
    samplesPerSecond: (samples / median(compares)) * 1000,
    floorSamplesPerSecond: (samples / median(floors)) * 1000,
    peakRssBytes: rssAfter,
    extraPeakRssBytes: rssAfter - rssBefore,
    boundBytes: (rows[0] + rows[1]) * n * n * 4,
    stats,
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
    const cka = new CKA(m1, m2, { threads: 1, concurrent: false, onWarning: () => {}, measures, ...layers });
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

function table(results) {
  const header = [
    'workload',
    'rows',
    'batch',
    'threads',
    'models',
    'floor ms',
    'compare ms',
    'compare/floor',
    'samples/s',
    'extra peak RSS',
    'Grams',
    'sums',
    '(m+p)n²4',
  ];
  const lines = [header];
  for (const r of results) {
    lines.push([
      r.workload,
      `${r.rows[0]}x${r.rows[1]}`,
      String(r.n),
      String(r.threads),
      r.same ? 'one pass' : r.concurrent ? 'at once' : 'in turn',
      range(r.floorMs, 0),
      range(r.compareMs, 0),
      range(r.ratio, 3),
      r.samplesPerSecond.toFixed(0),
      mb(r.extraPeakRssBytes),
      mb(r.stats.gramBytes),
      mb(r.stats.accumulatorBytes),
      mb(r.boundBytes),
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
        : `${config.workload} n=${config.n} threads=${config.threads} ${config.same ? 'self' : config.concurrent ? 'concurrent' : 'sequential'}${config.measureSets ? ' measure sets' : ''}`;
    process.stdout.write(`  ${label} ...`);
    const env = {
      ...process.env,
      OMP_NUM_THREADS: String(config.threads),
      OPENBLAS_NUM_THREADS: String(config.threads),
    };
    const out = execFileSync(process.execPath, [__filename, '--child', JSON.stringify(config)], {
      env,
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
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
    process.stdout.write(` ratio ${result.ratio.median.toFixed(3)}\n`);
  }
  if (measures.length > 0) console.log(`\n${measuresTable(measures)}\n`);
  if (full.length > 0) {
    console.log(`\n${fullBatchTable(full)}\n`);
    console.log(
      'full batch: 1 thread; forward floor: both models bare over the N samples; estimate: the memory estimate.',
    );
  }
  if (results.length > 0) {
    console.log(`\n${table(results)}\n`);
    console.log(
      "floor: both models' bare forward passes in turn (inference mode, same threads); ratios are per round, median [min-max].",
    );
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

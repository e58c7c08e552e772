'use strict';
// The torch-cka command end to end, in child processes: exit codes, one-line
// errors with codes, results.json, CSV, SVG, PNG, HTML, globs, the demo.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sharp = require('sharp');

const { CKA, loadModel } = require('..');
const { Progress } = require('../dist/cli/progress');
const { fixture, fixtureMeta, randomBatches, referenceCka, maxRelativeError, writeNpy } = require('./helpers');

const CLI = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const ROOT = path.join(__dirname, '..');

/** Runs the CLI; resolves { status, stdout, stderr } whatever the exit code. */
function run(args, options = {}) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, maxBuffer: 1 << 26 },
      (error, stdout, stderr) => resolve({ status: error ? error.code : 0, stdout, stderr }),
    );
  });
}

const errorLine = (stderr) => {
  const lines = stderr.trim().split('\n');
  return lines[lines.length - 1];
};

const convnet = fixtureMeta.find((f) => f.file === 'convnet_traced.pt');

describe('torch-cka CLI', function () {
  let dir;
  let npy;
  const samples = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-cli-'));
    // 150 random 3x8x8 samples: batches of 64 give 64, 64, 22.
    const batches = randomBatches(7, [64, 64, 22], [3, 8, 8]);
    const all = new Float32Array(150 * 3 * 8 * 8);
    let offset = 0;
    for (const batch of batches) {
      all.set(batch.data, offset);
      offset += batch.data.length;
      samples.push(batch);
    }
    npy = path.join(dir, 'random.npy');
    writeNpy(npy, all, [150, 3, 8, 8]);
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('help and usage', () => {
    for (const command of ['compare', 'layers', 'plot', 'demo']) {
      it(`${command} --help prints the usage and exits 0`, async () => {
        const { status, stdout } = await run([command, '--help']);
        assert.equal(status, 0);
        assert.match(stdout, new RegExp(`^Usage: torch-cka ${command}`));
        assert.match(stdout, /--help/);
      });
    }

    it('--version prints the package version', async () => {
      const { status, stdout } = await run(['--version']);
      assert.equal(status, 0);
      assert.equal(stdout.trim(), require('../package.json').version);
    });

    it('no command prints the commands and exits 2', async () => {
      const { status, stdout } = await run([]);
      assert.equal(status, 2);
      assert.match(stdout, /compare MODEL1\.pt MODEL2\.pt/);
    });

    const usageCases = [
      [['frobnicate'], /Unknown command 'frobnicate'/],
      [['compare', 'a.pt'], /takes 2 argument\(s\) but received 1/],
      [['compare', 'a.pt', 'b.pt'], /needs --data PATH/],
      [
        ['compare', 'a.pt', 'b.pt', '--data', 'x', '--batch-size', '0'],
        /integer >= 1 for --batch-size but received '0'/,
      ],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--batch-size', '1.5'], /--batch-size but received '1.5'/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--bogus'], /Unknown option '--bogus'/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--seed', '3'], /--seed needs --shuffle/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--threads', '0'], /integer >= 1 for --threads but received '0'/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--normalize', 'weird'], /one of none, imagenet.*'weird'/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--layers1', 'a,,b'], /empty entry/],
      [['compare', 'a.pt', 'b.pt', '--data', 'x', '--plot', 'map.gif'], /\.svg or \.png but received 'map\.gif'/],
      [['plot', 'r.json'], /needs --out FILE/],
    ];
    for (const [args, message] of usageCases) {
      it(`'${args.join(' ')}' is a usage error (exit 2, one line, ERR_USAGE)`, async () => {
        const { status, stderr, stdout } = await run(args);
        assert.equal(status, 2);
        assert.equal(stdout, '');
        assert.equal(stderr.trim().split('\n').length, 1, stderr);
        assert.match(stderr, message);
        assert.match(stderr, /^torch-cka: .* \[ERR_USAGE\]$/m);
      });
    }
  });

  describe('errors from the work', () => {
    it('a missing model file exits 1 naming the file and ERR_MODEL_NOT_FOUND', async () => {
      const missing = path.join(dir, 'nope.pt');
      const { status, stderr } = await run(['compare', missing, fixture('convnet_traced.pt'), '--data', npy]);
      assert.equal(status, 1);
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
      assert.match(errorLine(stderr), /nope\.pt.*\[ERR_MODEL_NOT_FOUND\]$/);
    });

    it('a missing data path exits 1 with ERR_DATA_NOT_FOUND', async () => {
      const missing = path.join(dir, 'nothing.npy');
      const { status, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        missing,
      ]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /nothing\.npy.*\[ERR_DATA_NOT_FOUND\]$/);
    });

    it('an unknown layer exits 1 with ERR_UNKNOWN_LAYER and a suggestion', async () => {
      const { status, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        npy,
        '--layers1',
        'stem,blok1',
        '--quiet',
      ]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /blok1.*block1.*\[ERR_UNKNOWN_LAYER\]$/);
    });

    it('a pattern that matches nothing exits 1 with ERR_UNKNOWN_LAYER', async () => {
      const { status, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        npy,
        '--layers2',
        'layer9.*',
        '--quiet',
      ]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /'layer9\.\*' matches no submodule.*\[ERR_UNKNOWN_LAYER\]$/);
    });

    it('data of the wrong shape for the model exits 1 with ERR_FORWARD_FAILED', async () => {
      const bad = path.join(dir, 'flat.npy');
      writeNpy(bad, new Float32Array(16 * 12), [16, 12]);
      const { status, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        bad,
        '--quiet',
      ]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /\[ERR_FORWARD_FAILED\]$/);
    });

    it('NaN in the data stops with ERR_NON_FINITE, or is skipped with --skip-non-finite', async () => {
      const values = new Float32Array(24 * 3 * 8 * 8).map((_, i) => Math.sin(i));
      values[9 * 192 + 5] = Number.NaN; // sample 9: in batch 1 at --batch-size 8
      const nan = path.join(dir, 'nan.npy');
      writeNpy(nan, values, [24, 3, 8, 8]);
      const args = [
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        nan,
        '--batch-size',
        '8',
      ];
      const stopped = await run([...args, '--quiet']);
      assert.equal(stopped.status, 1);
      assert.match(errorLine(stopped.stderr), /layer 'stem' of model 'convnet_traced' on batch 1.*\[ERR_NON_FINITE\]$/);
      const out = path.join(dir, 'skipped.json');
      const skipped = await run([...args, '--skip-non-finite', '--out', out]);
      assert.equal(skipped.status, 0, skipped.stderr);
      assert.match(skipped.stderr, /warning: Skipped batch 1: non-finite values .*\(TORCH_CKA_SKIPPED_BATCH\)/);
      assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).batches, 2);
    });

    it('--checkpoint-every without --checkpoint is a usage error', async () => {
      const { status, stderr } = await run(['compare', 'a.pt', 'b.pt', '--data', 'x.npy', '--checkpoint-every', '5']);
      assert.equal(status, 2);
      assert.match(errorLine(stderr), /--checkpoint-every needs --checkpoint FILE.*\[ERR_USAGE\]$/);
    });

    it('--device cuda without CUDA exits 1 with ERR_DEVICE_UNAVAILABLE', async function () {
      if (require('..').runtimeInfo().cudaAvailable) this.skip(); // only meaningful without a GPU
      const { status, stderr } = await run(['layers', fixture('convnet_traced.pt'), '--device', 'cuda']);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /\[ERR_DEVICE_UNAVAILABLE\]$/);
    });

    it('plot of a file that is not a results.json exits 1 with ERR_INVALID_RESULT', async () => {
      const bad = path.join(dir, 'bad.json');
      fs.writeFileSync(bad, JSON.stringify({ cka: [[1]] }));
      const out = path.join(dir, 'never.svg');
      const { status, stderr } = await run(['plot', bad, '--out', out]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /bad\.json.*\[ERR_INVALID_RESULT\]$/);
      assert.equal(fs.existsSync(out), false);

      fs.writeFileSync(bad, '{ not json');
      const again = await run(['plot', bad, '--out', out]);
      assert.equal(again.status, 1);
      assert.match(errorLine(again.stderr), /not JSON.*\[ERR_INVALID_RESULT\]$/);
    });
  });

  describe('compare', function () {
    let outputs;
    let result;

    before(async () => {
      outputs = {
        out: path.join(dir, 'out', 'results.json'),
        csv: path.join(dir, 'out', 'results.csv'),
        svg: path.join(dir, 'out', 'heatmap.svg'),
        png: path.join(dir, 'out', 'heatmap.png'),
        html: path.join(dir, 'out', 'report.html'),
      };
      result = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        npy,
        '--layers1',
        'stem,block*,fc',
        '--layers2',
        '**.conv,pool',
        '--name1',
        'traced',
        '--name2',
        'scripted',
        '--out',
        outputs.out,
        '--csv',
        outputs.csv,
        '--plot',
        outputs.svg,
        '--report',
        outputs.html,
        '--title',
        'CLI test',
      ]);
    });

    it('exits 0 and prints the models, data, progress and a best-match table', () => {
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /model: traced \(.*convnet_traced\.pt/);
      assert.match(result.stdout, /data: random\.npy: 150 samples/);
      assert.match(result.stdout, /CKA of 5 x 4 layers over 150 samples in 3 batches/);
      assert.match(result.stdout, /traced layer\s+best match in scripted\s+CKA/);
      assert.match(result.stdout, /wrote .*results\.json/);
      // stderr is not a TTY here: plain progress lines, the last one at 100%.
      assert.match(result.stderr, /batch 3\/3 \(100%\), [\d.]+ samples\/s, ETA 0:00/);
    });

    it('expands globs in definition order', () => {
      const json = JSON.parse(fs.readFileSync(outputs.out, 'utf8'));
      assert.deepEqual(json.model1Layers, ['stem', 'block1', 'block2', 'block3', 'fc']);
      assert.deepEqual(json.model2Layers, ['block1.conv', 'block2.conv', 'block3.conv', 'pool']);
    });

    it('writes results.json: the export() object plus the arguments used', async () => {
      const json = JSON.parse(fs.readFileSync(outputs.out, 'utf8'));
      const exportKeys = [
        'model1Name',
        'model2Name',
        'model1Layers',
        'model2Layers',
        'model1Views',
        'model2Views',
        'dataset1Name',
        'dataset2Name',
        'cka',
        'measures',
        'samples',
        'batches',
      ];
      assert.deepEqual(Object.keys(json).sort(), [...exportKeys, 'cli'].sort());
      assert.equal(json.model1Name, 'traced');
      assert.equal(json.dataset1Name, 'random.npy');
      assert.equal(json.samples, 150);
      assert.equal(json.batches, 3);
      assert.equal(json.cli.argv[0], 'compare');
      assert.ok(json.cli.argv.includes('stem,block*,fc'));
      assert.equal(json.cka.length, 5);
      for (const row of json.cka) assert.equal(row.length, 4);

      // The same numbers as the API on the same batches...
      const m1 = await loadModel(fixture('convnet_traced.pt'));
      const m2 = await loadModel(fixture('convnet_scripted.pt'));
      const cka = new CKA(m1, m2, { model1Layers: json.model1Layers, model2Layers: json.model2Layers });
      await cka.compare(samples);
      const api = cka.export();
      assert.deepEqual(json.cka, api.cka);

      // ...and as the plain float64 reference on features extracted per batch.
      const feats1 = [];
      const feats2 = [];
      for (const batch of samples) {
        feats1.push(await m1.extract(batch, json.model1Layers));
        feats2.push(await m2.extract(batch, json.model2Layers));
      }
      const reference = referenceCka(feats1, feats2, json.model1Layers, json.model2Layers);
      assert.ok(maxRelativeError(json.cka, reference, 1e-3) < 1e-4);
      m1.dispose();
      m2.dispose();
    });

    it('writes the CSV with layer names as row and column headers', () => {
      const json = JSON.parse(fs.readFileSync(outputs.out, 'utf8'));
      const lines = fs.readFileSync(outputs.csv, 'utf8').trimEnd().split('\r\n');
      assert.equal(lines.length, 6);
      assert.deepEqual(lines[0].split(','), ['traced \\ scripted', ...json.model2Layers]);
      lines.slice(1).forEach((line, i) => {
        const [name, ...cells] = line.split(',');
        assert.equal(name, json.model1Layers[i]);
        assert.deepEqual(
          cells.map((c) => (c === '' ? null : Number(c))),
          json.cka[i],
        );
      });
    });

    it('writes an SVG that parses and the report', async () => {
      const svg = fs.readFileSync(outputs.svg);
      const meta = await sharp(svg).metadata();
      assert.equal(meta.format, 'svg');
      assert.ok(meta.width > 100 && meta.height > 100);
      assert.match(svg.toString(), /CLI test/);
      const html = fs.readFileSync(outputs.html, 'utf8');
      assert.match(html, /^<!DOCTYPE html>/i);
      assert.match(html, /block3\.conv/);
      assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href="http/);
    });

    it('plot turns results.json into PNG, SVG and HTML', async () => {
      for (const name of ['again.png', 'again.svg', 'again.html']) {
        const out = path.join(dir, name);
        const { status, stdout, stderr } = await run(['plot', outputs.out, '--out', out, '--title', 'Replotted']);
        assert.equal(status, 0, stderr);
        assert.match(stdout, new RegExp(`wrote .*${name}`));
      }
      const png = fs.readFileSync(path.join(dir, 'again.png'));
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const meta = await sharp(png).metadata();
      assert.equal(meta.format, 'png');
      assert.match(fs.readFileSync(path.join(dir, 'again.svg'), 'utf8'), /Replotted/);
    });

    it('--quiet prints nothing, --data2 feeds model 2, --limit and --shuffle apply', async () => {
      const out = path.join(dir, 'quiet.json');
      const { status, stdout, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        npy,
        '--data2',
        npy,
        '--layers1',
        'stem',
        '--layers2',
        'stem',
        '--limit',
        '100',
        '--batch-size',
        '50',
        '--shuffle',
        '--seed',
        '3',
        '--quiet',
        '--threads',
        '1',
        '--sequential',
        '--out',
        out,
      ]);
      assert.equal(status, 0, stderr);
      assert.equal(stdout, '');
      assert.equal(stderr, '');
      const json = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.equal(json.samples, 100);
      assert.equal(json.batches, 2);
      assert.equal(json.dataset2Name, 'random.npy');
      assert.equal(json.cli.data2, npy);
      assert.equal(json.cli.threads, 1);
      assert.equal(json.cli.concurrent, false);
      // The same model weights' stem on the same (shuffled) data: traced and scripted differ in weights.
      assert.ok(json.cka[0][0] > 0 && json.cka[0][0] <= 1);
    });

    describe('layers left out of the default layers (TransformerEncoderLayers run fused)', () => {
      const SUBMODULES = 'self_attn,self_attn.out_proj,linear1,dropout,linear2,norm1,norm2,dropout1,dropout2';
      const SUMMARY =
        "warning: 18 layers of model 'vit' are left out of the comparison; did not run during batch 0 (18): " +
        `encoder.layers.*.{${SUBMODULES}} (2 each)`;
      const args = () => [
        'compare',
        fixture('transformer_scripted.pt'),
        fixture('convnet_traced.pt'),
        '--data',
        npy,
        '--limit',
        '32',
        '--batch-size',
        '16',
        '--name1',
        'vit',
      ];
      const warningLines = (stderr) => stderr.split('\n').filter((line) => !/^batch \d+\/\d+/.test(line) && line);

      it('prints one line for the model, pointing to --verbose', async () => {
        const { status, stderr } = await run(args());
        assert.equal(status, 0, stderr);
        assert.deepEqual(warningLines(stderr), [`${SUMMARY} (TORCH_CKA_LAYER_LEFT_OUT; --verbose lists them)`]);
      });

      it('--verbose lists each left-out layer with its reason on its own line', async () => {
        const { status, stdout, stderr } = await run([...args(), '--verbose']);
        assert.equal(status, 0, stderr);
        const each = [0, 1].flatMap((i) =>
          SUBMODULES.split(',').map((s) => `  encoder.layers.${i}.${s}: it did not run during batch 0`),
        );
        assert.deepEqual(warningLines(stderr), [`${SUMMARY} (TORCH_CKA_LAYER_LEFT_OUT)`, ...each]);
        assert.match(stdout, /CKA of 6 x 16 layers over 32 samples in 2 batches/);
      });

      it('--quiet prints nothing, --verbose or not; compare --help documents --verbose', async () => {
        const quiet = await run([...args(), '--verbose', '--quiet']);
        assert.equal(quiet.status, 0, quiet.stderr);
        assert.equal(quiet.stdout + quiet.stderr, '');
        const help = await run(['compare', '--help']);
        assert.match(help.stdout, /--verbose\s+list each layer left out of the default layers, with why/);
      });
    });
  });

  describe('compare on other data formats', () => {
    it('reads a folder of images with --resize and --normalize imagenet', async () => {
      const out = path.join(dir, 'images.json');
      const images = path.join(__dirname, 'fixtures', 'data', 'images');
      const { status, stderr, stdout } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        images,
        '--resize',
        '8x8',
        '--normalize',
        'imagenet',
        '--layers1',
        'stem,fc',
        '--layers2',
        'stem,fc',
        '--out',
        out,
      ]);
      assert.equal(status, 0, stderr);
      assert.match(stdout, /data: images: 6 samples of float32 \[3, 8, 8\]/);
      const json = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.equal(json.samples, 6);
      assert.equal(json.dataset1Name, 'images');
    });

    it('images of several sizes without --resize exit 1 with ERR_DATA_SHAPE', async () => {
      const images = path.join(__dirname, 'fixtures', 'data', 'mixed');
      const { status, stderr } = await run([
        'compare',
        fixture('convnet_traced.pt'),
        fixture('convnet_scripted.pt'),
        '--data',
        images,
        '--quiet',
      ]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /\[ERR_DATA_SHAPE\]$/);
    });
  });

  describe('layers', () => {
    it('prints the named submodules as a table', async () => {
      const { status, stdout } = await run(['layers', fixture('convnet_traced.pt')]);
      assert.equal(status, 0);
      assert.match(stdout, /convnet_traced: \d+ named submodules/);
      for (const { name, type } of convnet.layers) assert.match(stdout, new RegExp(`^${name}\\s+${type}$`, 'm'));
    });

    it('--json prints what PyTorch listed', async () => {
      const { status, stdout } = await run(['layers', fixture('convnet_traced.pt'), '--json']);
      assert.equal(status, 0);
      assert.deepEqual(JSON.parse(stdout), convnet.layers);
    });

    it('a file that is not TorchScript exits 1 with ERR_MODEL_FORMAT', async () => {
      const junk = path.join(dir, 'junk.pt');
      fs.writeFileSync(junk, 'not a zip');
      const { status, stderr } = await run(['layers', junk]);
      assert.equal(status, 1);
      assert.match(errorLine(stderr), /junk\.pt' is not a zip archive.*\[ERR_MODEL_FORMAT\]$/);
      assert.equal(stderr.trim().split('\n').length, 1);
    });
  });

  describe('demo', () => {
    it('compares the shipped models and writes all its files', async () => {
      const out = path.join(dir, 'demo');
      const { status, stdout, stderr } = await run(['demo', '--out', out]);
      assert.equal(status, 0, stderr);
      assert.match(stdout, /CNN layer\s+best match in MLP\s+CKA/);
      assert.match(stdout, /over 360 samples in 6 batches/);
      for (const name of ['results.json', 'results.csv', 'heatmap.svg', 'heatmap.png', 'report.html']) {
        assert.ok(fs.statSync(path.join(out, name)).size > 0, name);
      }
      const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
      const demo = require('../demo/demo.json');
      const names = (i) => demo.models[i].layers.map((l) => l.name);
      assert.ok(json.model1Layers.every((name) => names(0).includes(name.replace(/#\d+$/, ''))));
      assert.ok(json.model2Layers.every((name) => names(1).includes(name.replace(/#\d+$/, ''))));
      for (const row of json.cka) for (const v of row) assert.ok(v === null || (v >= 0 && v <= 1 + 1e-6));
      const png = await sharp(path.join(out, 'heatmap.png')).metadata();
      assert.equal(png.format, 'png');
    });
  });
});

describe('Progress', () => {
  const sink = (isTTY) => {
    const chunks = [];
    return { isTTY, chunks, write: (text) => chunks.push(text) };
  };

  // A terminal redraws unless TERM says it cannot (dumb): each test sets TERM.
  let term;
  beforeEach(() => {
    term = process.env.TERM;
    process.env.TERM = 'xterm-256color';
  });
  afterEach(() => {
    if (term === undefined) delete process.env.TERM;
    else process.env.TERM = term;
  });

  it('redraws one line on a terminal with batches, samples/s and ETA', () => {
    let now = 0;
    const stream = sink(true);
    const progress = new Progress(stream, { total: 4, now: () => now });
    now = 1000;
    progress.update(1, 64);
    now = 2000;
    progress.update(2, 128);
    progress.done();
    assert.ok(stream.chunks.every((c) => c.startsWith('\r')));
    assert.match(stream.chunks[0], /\[######\.{18}\] batch 1\/4 \(25%\), 64\.0 samples\/s, ETA 0:03/);
    assert.match(stream.chunks.at(-1), /batch 2\/4 \(50%\), 64\.0 samples\/s, ETA 0:02.*\n$/);
  });

  it('writes a plain line every interval when not a terminal, and nothing when quiet', () => {
    let now = 0;
    const stream = sink(false);
    const progress = new Progress(stream, { total: 10, interval: 5, now: () => now });
    for (let b = 1; b <= 10; b += 1) {
      now = b * 1000;
      progress.update(b, b * 10);
    }
    // At 1 s (first), 6 s (5 s later) and the last batch.
    assert.equal(stream.chunks.length, 3);
    assert.ok(stream.chunks.every((c) => c.endsWith('\n') && !c.includes('\r')));
    assert.match(stream.chunks[2], /^batch 10\/10 \(100%\)/);

    const quiet = sink(true);
    const silent = new Progress(quiet, { total: 2, quiet: true });
    silent.update(1, 4);
    silent.done();
    assert.deepEqual(quiet.chunks, []);
  });

  it('writes plain lines on a terminal whose TERM is dumb', () => {
    process.env.TERM = 'dumb';
    let now = 0;
    const stream = sink(true);
    const progress = new Progress(stream, { total: 2, now: () => now });
    now = 1000;
    progress.update(1, 64);
    now = 2000;
    progress.update(2, 128);
    assert.ok(stream.chunks.length > 0);
    assert.ok(stream.chunks.every((c) => c.endsWith('\n') && !c.includes('\r')));
  });
});

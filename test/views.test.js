'use strict';
// Feature views (issue 15 section 1) against the float64 references of
// test/fixtures/generate/make-view-fixtures.py (numpy, from eager features).
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel, validateResult } = require('..');
const { fixture, hsic1, randomBatches, referenceCka, writeNpy } = require('./helpers');

const VIEWS = JSON.parse(fs.readFileSync(fixture('views.json'), 'utf8'));
const CLI = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const TOLERANCE = 1e-5;
const quiet = { onWarning: () => {} };

const batches = (key) => VIEWS.batches[key].map((b) => ({ data: Float32Array.from(b.data), shape: b.shape }));
const load = (name) => loadModel(fixture(name));

function maxDifference(actual, expected) {
  let worst = 0;
  expected.forEach((row, i) =>
    row.forEach((value, j) => {
      worst = Math.max(worst, Math.abs(actual[i][j] - value));
    }),
  );
  return worst;
}

function run(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 1 << 26 }, (error, stdout, stderr) =>
      resolve({ status: error ? error.code : 0, stdout, stderr }),
    );
  });
}

/** A view applied plainly in float64 to an extracted (N, ...) tensor, as an (N, d) tensor. */
function viewed(tensor, view) {
  const [n, ...rest] = tensor.shape;
  const x = Float64Array.from(tensor.data, Number);
  const d = rest.reduce((a, b) => a * b, 1);
  if (view === 'flatten' || (view === 'spatial-mean' && rest.length === 1)) return { data: x, shape: [n, d] };
  // (n, groups, inner): spatial-mean averages over inner (the positions), the token views pick or average over groups.
  const [groups, inner] = view === 'spatial-mean' ? [rest[0], d / rest[0]] : [rest[0], rest[1]];
  const width = view === 'spatial-mean' ? groups : inner;
  const out = new Float64Array(n * width);
  for (let i = 0; i < n; i += 1) {
    for (let g = 0; g < groups; g += 1) {
      for (let f = 0; f < inner; f += 1) {
        const value = x[i * d + g * inner + f];
        if (view === 'spatial-mean') out[i * width + g] += value / inner;
        else if (view === 'token-mean') out[i * width + f] += value / groups;
        else {
          const k = Number(view.slice(6));
          if (g === (k < 0 ? groups + k : k)) out[i * width + f] = value;
        }
      }
    }
  }
  return { data: out, shape: [n, width] };
}

const optionsOf = (c, extra = {}) => ({
  ...quiet,
  model1Layers: c.layers,
  model2Layers: c.layers,
  model1Views: c.model1Views,
  model2Views: c.model2Views,
  ...extra,
});

describe('feature views', () => {
  describe('against the numpy float64 reference', () => {
    for (const name of Object.keys(VIEWS.cases)) {
      const c = VIEWS.cases[name];
      it(`${name}: ${c.model} scripted vs traced, views ${JSON.stringify(c.model1Views)} / ${JSON.stringify(c.model2Views)}`, async () => {
        const [m1, m2] = await Promise.all([load(`${c.model}_scripted.pt`), load(`${c.model}_traced.pt`)]);
        const cka = new CKA(m1, m2, optionsOf(c));
        await cka.compare(batches(c.batches));
        const r = cka.export();
        assert.deepEqual(r.model1Layers, c.layers);
        assert.deepEqual(r.model1Views, c.views1);
        assert.deepEqual(r.model2Views, c.views2);
        assert.ok(maxDifference(r.cka, c.cka) < TOLERANCE, `max difference ${maxDifference(r.cka, c.cka)}`);
      });
    }

    it('a ViT (fused TransformerEncoderLayers, transformer_scripted.pt) against a CNN: the plain TS reference from extracted features', async () => {
      const [vit, cnn] = await Promise.all([load('transformer_scripted.pt'), load('convnet_traced.pt')]);
      const rows1 = ['patch', 'encoder.layers.0', 'encoder.layers.1', 'norm', 'head'];
      const rows2 = ['stem', 'block1', 'block2.conv', 'relu', 'fc'];
      const model1Views = {
        patch: 'spatial-mean',
        'encoder.layers.0': 'token:0',
        'encoder.**': 'token:-1',
        norm: 'token-mean',
      };
      const model2Views = {
        'block*': 'spatial-mean',
        '**.conv': 'spatial-mean',
        stem: 'spatial-mean',
        relu: 'spatial-mean',
      };
      const views1 = ['spatial-mean', 'token:0', 'token:-1', 'token-mean', 'flatten'];
      const data = randomBatches(15, [8, 6, 10], [3, 8, 8]);
      const cka = new CKA(vit, cnn, { ...quiet, model1Layers: rows1, model2Layers: rows2, model1Views, model2Views });
      await cka.compare(data);
      const r = cka.export();
      assert.deepEqual(r.model1Views, views1);
      // relu runs three times: relu, relu#2 and relu#3 all take its view.
      const columns = r.model2Layers;
      assert.deepEqual(columns, ['stem', 'block1', 'block2.conv', 'relu', 'relu#2', 'relu#3', 'fc']);
      const views2 = columns.map((name) => (name === 'fc' ? 'flatten' : 'spatial-mean'));
      assert.deepEqual(r.model2Views, views2);
      const features = async (model, layers, rows, views) => {
        const out = [];
        for (const batch of data) {
          const raw = await model.extract(batch, layers);
          out.push(Object.fromEntries(rows.map((name, i) => [name, viewed(raw[name], views[i])])));
        }
        return out;
      };
      const expected = referenceCka(
        await features(vit, rows1, rows1, views1),
        await features(cnn, rows2, columns, views2),
        rows1,
        columns,
      );
      assert.ok(maxDifference(r.cka, expected) < TOLERANCE, `max difference ${maxDifference(r.cka, expected)}`);
      // The views change the values: flatten gives another matrix.
      const flat = new CKA(vit, cnn, { ...quiet, model1Layers: rows1, model2Layers: rows2 });
      await flat.compare(data);
      assert.ok(maxDifference(flat.export().cka, expected) > 0.01);
    });

    it('one model object on both sides with other views per side (no shared Grams)', async () => {
      const c = VIEWS.cases.image;
      const m = await load('viewnet_scripted.pt');
      const cka = new CKA(m, m, optionsOf(c));
      await cka.compare(batches('image'));
      const r = cka.export();
      assert.ok(maxDifference(r.cka, c.cka) < TOLERANCE, `max difference ${maxDifference(r.cka, c.cka)}`);
    });

    it('two rows with one tensor (block and block.1) share a Gram only under the same view', async () => {
      const c = VIEWS.cases.image;
      const m = await load('viewnet_traced.pt');
      // Same view on both: the Gram is reused.
      const same = new CKA(m, m, {
        ...quiet,
        model1Layers: ['block.1', 'block'],
        model1Views: { 'block*': 'spatial-mean' },
      });
      await same.compare(batches('image'));
      assert.ok(same.stats().reusedGrams > 0);
      // Different views: not reused, and the rows differ as the reference says.
      const other = new CKA(m, m, {
        ...quiet,
        model1Layers: ['block.1', 'block'],
        model2Layers: c.layers,
        model1Views: { block: 'spatial-mean' },
        model2Views: c.model2Views,
      });
      await other.compare(batches('image'));
      assert.equal(other.stats().reusedGrams, 0);
      const r = other.export();
      assert.deepEqual(r.model1Views, ['flatten', 'spatial-mean']);
      assert.ok(maxDifference(r.cka, [c.cka[1], c.cka[2]]) < TOLERANCE);
    });

    it("rows with '#k' take their module's view", async () => {
      const m = await load('viewnet_scripted.pt');
      const cka = new CKA(m, m, { ...quiet, model1Layers: ['tok'], model1Views: { 'tok#1': 'token:0' } });
      await cka.compare(batches('image'));
      assert.deepEqual(cka.export().model1Views, ['token:0']);
      assert.deepEqual(cka.export().model2Views.length, m.layers().length);
    });
  });

  describe('a token count that changes between batches', () => {
    it('fails with flatten (ERR_LAYER_SHAPE) and the message suggests a view', async () => {
      const m = await load('tokennet_scripted.pt');
      const cka = new CKA(m, m, { ...quiet, model1Layers: ['proj'], model2Layers: ['out'] });
      await assert.rejects(cka.compare(batches('tokens')), (error) => {
        assert.equal(error.code, 'ERR_LAYER_SHAPE');
        assert.match(error.message, /batch 1/);
        assert.match(error.message, /layer 'proj' has shape \[6, 7, 6\]/);
        assert.match(error.message, /\[n, 5, 6\]/);
        assert.match(error.message, /--view1 'proj=token-mean'/);
        assert.match(error.message, /model1Views/);
        return true;
      });
      assert.equal(cka.export !== undefined, true);
    });

    it('names --view2 for model 2, and works with token-mean there', async () => {
      const [m1, m2] = await Promise.all([load('tokennet_scripted.pt'), load('tokennet_traced.pt')]);
      const failing = new CKA(m1, m2, { ...quiet, model1Layers: ['out'], model2Layers: ['mix'] });
      await assert.rejects(
        failing.compare(batches('tokens')),
        /ERR_LAYER_SHAPE|--view2 'mix=token-mean'.*model2Views/s,
      );
      await assert.rejects(failing.compare(batches('tokens')), (e) => /--view2 'mix=token-mean'/.test(e.message));
      const c = VIEWS.cases.tokens;
      const working = new CKA(m1, m2, {
        ...quiet,
        model1Layers: ['out'],
        model2Layers: ['mix'],
        model2Views: { mix: 'token:-1' },
      });
      await working.compare(batches('tokens'));
      const r = working.export();
      assert.equal(r.batches, 3);
      assert.ok(Math.abs(r.cka[0][0] - c.cka[2][1]) < TOLERANCE, `${r.cka[0][0]} vs ${c.cka[2][1]}`);
    });
  });

  describe('errors', () => {
    it('a view that does not fit: ERR_VIEW_SHAPE at the first batch naming model, layer, view and shape', async () => {
      const [v, t] = await Promise.all([load('viewnet_scripted.pt'), load('tokennet_scripted.pt')]);
      const cases = [
        [
          v,
          { 'block.0': 'token-mean' },
          'image',
          /Model 'viewnet_scripted', batch 0: View 'token-mean' of layer 'block.0' does not fit its output of shape \[8, 4, 6, 6\]/,
        ],
        [t, { proj: 'token:5' }, 'tokens', /View 'token:5' of layer 'proj' .*\[8, 5, 6\].*out of range for 5 token/],
        [t, { proj: 'token:-6' }, 'tokens', /View 'token:-6' of layer 'proj'.*out of range/],
        [
          t,
          { score: 'spatial-mean' },
          'tokens',
          /View 'spatial-mean' of layer 'score' does not fit its output of shape \[8\]/,
        ],
        [v, { head: 'token:0' }, 'image', /View 'token:0' of layer 'head' .*shape \[8, 3\]/],
      ];
      for (const [model, views, key, pattern] of cases) {
        const cka = new CKA(model, model, { ...quiet, model2Views: views });
        await assert.rejects(cka.compare(batches(key)), (error) => {
          assert.equal(error.code, 'ERR_VIEW_SHAPE', error.message);
          assert.match(error.message, pattern);
          assert.match(error.message, /--view2|model2Views/);
          return true;
        });
        assert.throws(() => cka.export(), { code: 'ERR_NO_DATA' });
      }
    });

    it('token:K past the tokens of a later batch fails there (ERR_VIEW_SHAPE, batch 1)', async () => {
      const t = await load('tokennet_traced.pt');
      // 5, 7, 6 tokens: token 4 fits every batch; token 6 the 7 tokens of the first batch below, not the 6 of the next.
      const layers = { model1Layers: ['proj'], model2Layers: ['out'] };
      const cka = new CKA(t, t, { ...quiet, ...layers, model1Views: { proj: 'token:4' } });
      await cka.compare(batches('tokens'));
      assert.equal(cka.export().batches, 3);
      const late = new CKA(t, t, { ...quiet, ...layers, model1Views: { proj: 'token:6' } });
      await assert.rejects(late.compare(batches('tokens').slice(1)), (error) => {
        assert.equal(error.code, 'ERR_VIEW_SHAPE');
        assert.match(error.message, /batch 1/);
        return true;
      });
    });

    it('bad view options: ERR_INVALID_ARG naming the option', async () => {
      const m = await load('viewnet_scripted.pt');
      const bad = [
        [
          { model1Views: { tok: 'mean' } },
          /model1Views\['tok'\].*'flatten', 'spatial-mean', 'token-mean' or 'token:K'/,
        ],
        [{ model2Views: { tok: 'token:x' } }, /model2Views\['tok'\]/],
        [{ model1Views: { tok: 'token:' } }, /model1Views/],
        [{ model1Views: { tok: 3 } }, /model1Views\['tok'\]/],
        [{ model1Views: 'token-mean' }, /model1Views to be an object/],
        [{ model1Views: ['token-mean'] }, /model1Views to be an object/],
        [{ model1Views: { 'blo[ck': 'flatten' } }, /without a closing/],
      ];
      for (const [options, pattern] of bad) {
        assert.throws(
          () => new CKA(m, m, { ...quiet, ...options }),
          (error) => {
            assert.equal(error.code, 'ERR_INVALID_ARG', error.message);
            assert.match(error.message, pattern);
            return true;
          },
        );
      }
    });

    it('a view pattern or name that matches no layer: ERR_UNKNOWN_LAYER naming it, the option and the model', async () => {
      const m = await load('viewnet_scripted.pt');
      for (const options of [
        { model1Views: { 'nosuch.*': 'token-mean' } },
        { model2Views: { tok: 'flatten', toke: 'token:0' } },
      ]) {
        const option = Object.keys(options)[0];
        assert.throws(() => new CKA(m, m, { ...quiet, ...options }), {
          code: 'ERR_UNKNOWN_LAYER',
          message: new RegExp(
            `options\\.${option} entry '(nosuch\\.\\*|toke)' matches no layer of model 'viewnet_scripted'`,
          ),
        });
      }
    });
  });

  describe('checkpoints', () => {
    let dir;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-views-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('resumes with the same views; refuses other views (ERR_CHECKPOINT_MISMATCH)', async () => {
      const c = VIEWS.cases.image;
      const [m1, m2] = await Promise.all([load('viewnet_scripted.pt'), load('viewnet_traced.pt')]);
      const file = path.join(dir, 'views.json');
      const data = batches('image');
      const first = new CKA(m1, m2, optionsOf(c));
      await first.compare(data.slice(0, 2), undefined, { checkpoint: { path: file, every: 1 } });
      const resumed = new CKA(m1, m2, optionsOf(c));
      const summary = await resumed.compare(data, undefined, { checkpoint: { path: file } });
      assert.equal(summary.resumed, 2);
      assert.ok(maxDifference(resumed.export().cka, c.cka) < TOLERANCE);

      const other = new CKA(m1, m2, optionsOf(c, { model1Views: { ...c.model1Views, tok: 'token:1' } }));
      await assert.rejects(other.compare(data, undefined, { checkpoint: { path: file } }), (error) => {
        assert.equal(error.code, 'ERR_CHECKPOINT_MISMATCH');
        assert.match(error.message, /model 1's views/);
        return true;
      });
      const none = new CKA(m1, m2, optionsOf(c, { model2Views: undefined }));
      await assert.rejects(none.compare(data, undefined, { checkpoint: { path: file } }), /model 2's views/);
    });
  });

  describe('result files', () => {
    it('a result without views (an older file) reads as flatten; a wrong length is refused', () => {
      const old = {
        model1Name: 'a',
        model2Name: 'b',
        model1Layers: ['x', 'y'],
        model2Layers: ['z'],
        dataset1Name: 'd',
        dataset2Name: 'd',
        cka: [[1], [0.5]],
        samples: 8,
        batches: 1,
      };
      const read = validateResult(old);
      assert.deepEqual(read.model1Views, ['flatten', 'flatten']);
      assert.deepEqual(read.model2Views, ['flatten']);
      assert.deepEqual(validateResult({ ...old, model1Views: ['token:0', 'flatten'] }).model1Views, [
        'token:0',
        'flatten',
      ]);
      assert.throws(() => validateResult({ ...old, model1Views: ['flatten'] }), { code: 'ERR_INVALID_RESULT' });
    });
  });

  describe('CLI --view, --view1, --view2', function () {
    this.timeout(120000);
    let dir;
    let npy;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-views-cli-'));
      const image = batches('image');
      const all = new Float32Array(image.reduce((total, b) => total + b.data.length, 0));
      let offset = 0;
      for (const b of image) {
        all.set(b.data, offset);
        offset += b.data.length;
      }
      npy = path.join(dir, 'image.npy');
      writeNpy(npy, all, [24, 3, 6, 6]);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const base = () => [
      'compare',
      fixture('viewnet_scripted.pt'),
      fixture('viewnet_traced.pt'),
      '--data',
      npy,
      '--batch-size',
      '8',
      '--layers1',
      VIEWS.cases.image.layers.join(','),
      '--layers2',
      VIEWS.cases.image.layers.join(','),
      '--quiet',
    ];

    it('--view1 and --view2 (repeated) give the reference and record the views in results.json', async () => {
      const c = VIEWS.cases.image;
      const out = path.join(dir, 'image-results.json');
      const views = [
        ...Object.entries(c.model1Views).flatMap(([p, v]) => ['--view1', `${p}=${v}`]),
        ...Object.entries(c.model2Views).flatMap(([p, v]) => ['--view2', `${p}=${v}`]),
      ];
      const { status, stderr } = await run([...base(), ...views, '--out', out]);
      assert.equal(status, 0, stderr);
      const r = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.deepEqual(r.model1Views, c.views1);
      assert.deepEqual(r.model2Views, c.views2);
      assert.ok(maxDifference(r.cka, c.cka) < TOLERANCE);
    });

    it('--view applies to both models after their own --view1/--view2 (first match wins)', async () => {
      const c = VIEWS.cases.patterns;
      const out = path.join(dir, 'patterns-results.json');
      const args = ['--view1', 'block.*=spatial-mean', '--view2', 'tok=token:-1', '--view2', '**=spatial-mean'];
      const { status, stderr } = await run([...base(), ...args, '--view', 't?k=token:-1', '--out', out]);
      assert.equal(status, 0, stderr);
      const r = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.deepEqual(r.model1Views, c.views1);
      assert.deepEqual(r.model2Views, c.views2);
      assert.ok(maxDifference(r.cka, c.cka) < TOLERANCE);
    });

    for (const [args, pattern] of [
      [['--view1', 'block'], /--view1 PATTERN=VIEW.*'--view1 block'/],
      [['--view2', '=token-mean'], /--view2 PATTERN=VIEW/],
      [['--view', 'tok=pool'], /--view PATTERN=VIEW.*'pool' is not one/],
      [['--view1', 'tok='], /--view1 PATTERN=VIEW/],
    ]) {
      it(`'${args.join(' ')}' is a usage error naming the argument (ERR_USAGE)`, async () => {
        const { status, stderr } = await run([...base(), ...args]);
        assert.equal(status, 2, stderr);
        assert.match(stderr, pattern);
        assert.match(stderr, /\[ERR_USAGE\]$/m);
      });
    }

    it('--view1 naming no layer of model 1, or --view naming no layer of either model: ERR_UNKNOWN_LAYER', async () => {
      for (const [args, pattern] of [
        [['--view1', 'nosuch=token-mean'], /options\.model1Views entry 'nosuch' matches no layer/],
        [['--view', 'nosuch.*=token-mean'], /--view entry 'nosuch\.\*' matches no layer of either model/],
      ]) {
        const { status, stderr } = await run([...base(), ...args]);
        assert.notEqual(status, 0);
        assert.match(stderr, pattern);
        assert.match(stderr, /\[ERR_UNKNOWN_LAYER\]$/m);
      }
    });

    it('a view that does not fit fails the run with ERR_VIEW_SHAPE', async () => {
      const { status, stderr } = await run([...base(), '--view1', 'block.0=token-mean']);
      assert.notEqual(status, 0);
      assert.match(stderr, /View 'token-mean' of layer 'block.0'.*\[8, 4, 6, 6\].*\[ERR_VIEW_SHAPE\]/);
    });
  });
});

describe('views feed every measure', () => {
  // Plain float64 kernels from the viewed features, as measures.md defines them.
  function kernels(x, n, d, measure, sigma) {
    const d2 = new Float64Array(n * n);
    for (let i = 0; i < n; i += 1) {
      for (let j = 0; j < n; j += 1) {
        let s = 0;
        for (let f = 0; f < d; f += 1) s += (x[i * d + f] - x[j * d + f]) ** 2;
        d2[i * n + j] = s;
      }
    }
    if (measure === 'dcor') return d2.map(Math.sqrt);
    if (measure === 'rbf_cka') return d2.map((v) => Math.exp(-v / (2 * sigma * sigma)));
    const k = new Float64Array(n * n); // linear: the centred Gram
    const mean = new Float64Array(d);
    for (let i = 0; i < n; i += 1) for (let f = 0; f < d; f += 1) mean[f] += x[i * d + f] / n;
    for (let i = 0; i < n; i += 1) {
      for (let j = 0; j < n; j += 1) {
        let s = 0;
        for (let f = 0; f < d; f += 1) s += (x[i * d + f] - mean[f]) * (x[j * d + f] - mean[f]);
        k[i * n + j] = s;
      }
    }
    return k;
  }
  function median(values) {
    const sorted = Float64Array.from(values).sort();
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  it('rbf_cka and dcor on token-mean and token:-1 views match plain float64 kernels of the viewed features', async () => {
    const model = await loadModel(fixture(path.join('measures', 'features_scripted.pt')));
    try {
      const [T, D] = [5, 10];
      const data = randomBatches(41, [9, 7, 12], [T, D]);
      const measures = ['cka', 'rbf_cka', 'dcor'];
      const cka = new CKA(model, model, {
        ...quiet,
        model1Layers: ['id'],
        model2Layers: ['rot'], // an orthogonal map plus a translation of the input: every measure is invariant to it
        model1Views: { id: 'token-mean' },
        model2Views: { rot: 'token:-1' },
        measures,
      });
      await cka.compare(data);
      const r = cka.export();
      assert.deepEqual([r.model1Views, r.model2Views], [['token-mean'], ['token:-1']]);
      const features = data.map((b) => [viewed(b, 'token-mean'), viewed(b, 'token:-1')]);
      const sigma = features[0].map((f) => {
        const n = f.shape[0];
        return 0.5 * Math.sqrt(median(kernels(f.data, n, D, 'dcor').map((v) => v * v)));
      });
      for (const measure of measures) {
        let [xy, xx, yy] = [0, 0, 0];
        for (const [a, b] of features) {
          const n = a.shape[0];
          const k = kernels(a.data, n, D, measure, sigma[0]);
          const l = kernels(b.data, n, D, measure, sigma[1]);
          [xy, xx, yy] = [xy + hsic1(k, l, n), xx + hsic1(k, k, n), yy + hsic1(l, l, n)];
        }
        const expected = xy / Math.sqrt(xx * yy);
        assert.ok(
          Math.abs(r.measures[measure][0][0] - expected) < TOLERANCE,
          `${measure}: ${r.measures[measure][0][0]} vs ${expected}`,
        );
      }
      assert.ok(Math.abs(r.rbf.sigma1[0] - sigma[0]) < 1e-5 * sigma[0], `${r.rbf.sigma1[0]} vs ${sigma[0]}`);
      assert.ok(Math.abs(r.rbf.sigma2[0] - sigma[1]) < 1e-5 * sigma[1], `${r.rbf.sigma2[0]} vs ${sigma[1]}`);
    } finally {
      model.dispose();
    }
  });
});

'use strict';
const assert = require('node:assert/strict');

const { CKA, loadModel } = require('..');
const { fixture, randomBatches, warningSink } = require('./helpers');

const load = (name) => loadModel(fixture(name));

describe('CKA errors', () => {
  let mlp;
  let mlp2;
  let conv;
  let odd;
  before(async () => {
    [mlp, mlp2, conv, odd] = await Promise.all([
      load('mlp_scripted.pt'),
      load('mlp_traced.pt'),
      load('convnet_traced.pt'),
      load('odd_scripted.pt'),
    ]);
  });

  describe('at set-up', () => {
    it('an unknown layer lists the closest names', () => {
      assert.throws(() => new CKA(mlp, mlp2, { model1Layers: ['fc1', 'fc3'] }), {
        name: 'RangeError',
        code: 'ERR_UNKNOWN_LAYER',
        message: /Model 'mlp_scripted' has no layer 'fc3'; closest names: 'fc1', 'fc2'/,
      });
      assert.throws(() => new CKA(mlp, conv, { model2Layers: ['block1.convv'] }), {
        code: 'ERR_UNKNOWN_LAYER',
        message: /'convnet_traced' has no layer 'block1\.convv'; closest names: 'block1\.conv'/,
      });
      assert.throws(() => new CKA(mlp, conv, { model2Layers: ['relu#0'] }), { code: 'ERR_UNKNOWN_LAYER' });
    });

    it('a layer listed twice, or covered twice, is refused', () => {
      assert.throws(() => new CKA(mlp, mlp2, { model1Layers: ['fc1', 'fc1'] }), {
        code: 'ERR_DUPLICATE_LAYER',
        message: /'fc1' is listed twice/,
      });
      assert.throws(() => new CKA(mlp, conv, { model2Layers: ['relu', 'relu#2'] }), {
        code: 'ERR_DUPLICATE_LAYER',
        message: /'relu#2' is already covered by 'relu'/,
      });
    });

    it('a layer whose output holds no tensor is refused at set-up, naming its type', () => {
      assert.throws(() => new CKA(odd, mlp, { model1Layers: ['count'] }), {
        code: 'ERR_NO_TENSOR_OUTPUT',
        message: /'count' \(Count\) of model 'odd_scripted' returns 'int'/,
      });
    });

    it('a container without forward is refused at set-up', () => {
      assert.throws(() => new CKA(odd, mlp, { model1Layers: ['items'] }), {
        code: 'ERR_LAYER_NOT_CALLABLE',
        message: /'items' \(ModuleList\).*no forward method/,
      });
    });

    it('bad options are TypeErrors and RangeErrors that say what came', () => {
      assert.throws(() => new CKA(mlp, mlp2, { model1Layers: 'fc1' }), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG',
        message: /array of layer names for options\.model1Layers but received "fc1"/,
      });
      assert.throws(() => new CKA(mlp, mlp2, { precision: 'float16' }), {
        name: 'RangeError',
        message: /'float64', 'float32' for options\.precision but received "float16"/,
      });
      assert.throws(() => new CKA(mlp, {}), { name: 'TypeError', message: /model2 to be a Model/ });
    });

    it('an empty layer list is ERR_NO_LAYERS (leaving the option out means every layer)', () => {
      assert.throws(() => new CKA(mlp, mlp2, { model2Layers: [] }), {
        name: 'RangeError',
        code: 'ERR_NO_LAYERS',
        message: /options\.model2Layers is an empty list: name at least one layer of model 'mlp_traced'/,
      });
    });

    it('a disposed model is refused', async () => {
      const gone = await load('mlp_scripted.pt');
      gone.dispose();
      assert.throws(() => new CKA(gone, mlp2), { code: 'ERR_DISPOSED' });
    });

    it('a model without submodules (frozen) is ERR_NO_LAYERS with a hint', async () => {
      const frozen = await load('frozen_scripted.pt');
      assert.deepEqual(frozen.layers(), []);
      assert.throws(() => new CKA(frozen, mlp), {
        code: 'ERR_NO_LAYERS',
        message: /no submodules at all: torch\.jit\.freeze/,
      });
    });

    it('export before any batch is ERR_NO_DATA', () => {
      assert.throws(() => new CKA(mlp, mlp2).export(), { code: 'ERR_NO_DATA', message: /No batch has been compared/ });
    });
  });

  describe('at run time', () => {
    it('a chosen layer that never runs is an error naming it and the batch', async () => {
      const cka = new CKA(odd, mlp, { model1Layers: ['final', 'unused'] });
      await assert.rejects(cka.compare(randomBatches(1, [6], [6]), randomBatches(2, [6], [12])), {
        code: 'ERR_LAYER_NOT_RUN',
        message: /'unused' of model 'odd_scripted' did not run during batch 0/,
      });
    });

    it('a picked call beyond the calls made is an error saying how often the module ran', async () => {
      const cka = new CKA(conv, conv, { model1Layers: ['relu#4'], model2Name: 'x' });
      await assert.rejects(cka.compare(randomBatches(3, [5], [3, 8, 8])), {
        code: 'ERR_LAYER_NOT_RUN',
        message: /'relu#4'.*did not run during batch 0: 'relu' ran 3 time/,
      });
    });

    it('a layer output without the batch as first dimension is ERR_LAYER_SHAPE naming it', async () => {
      const dyn = await load('dynamic_scripted.pt');
      const cka = new CKA(dyn, mlp, { model1Layers: ['flip'] });
      await assert.rejects(cka.compare(randomBatches(14, [4], [6]), randomBatches(15, [4], [12])), {
        code: 'ERR_LAYER_SHAPE',
        message:
          /Model 'dynamic_scripted', batch 0: Output of layer 'flip' has shape \[6, 4\]; expected the batch size 4 as its first dimension/,
      });
    });

    it('by default, a layer without a batch dimension is left out with a warning saying why', async () => {
      const dyn = await load('dynamic_scripted.pt');
      const sink = warningSink();
      const cka = new CKA(dyn, dyn, { model2Name: 'd2', ...sink });
      await cka.compare(randomBatches(22, [4], [6]));
      assert.deepEqual(cka.export().model1Layers, ['lin', 'again', 'out']);
      // One warning per model (the same model on the same data: model 2 leaves out what model 1 does).
      const leftOut = sink.warnings.filter((w) => w.code === 'TORCH_CKA_LAYER_LEFT_OUT');
      assert.deepEqual(
        leftOut.map((w) => w.model),
        ['model1', 'model2'],
        JSON.stringify(sink.warnings),
      );
      assert.equal(
        leftOut[0].message,
        "1 layer of model 'dynamic_scripted' is left out of the comparison; output has no batch dimension (1): flip",
      );
      assert.match(leftOut[1].message, /^1 layer of model 'd2' is left out/);
      for (const w of leftOut) {
        assert.deepEqual(w.layers, [
          {
            name: 'flip',
            code: 'ERR_LAYER_SHAPE',
            reason: "Output of layer 'flip' has shape [6, 4]; expected the batch size 4 as its first dimension",
          },
        ]);
      }
    });

    it('a module that runs more often than in the first batch is ERR_LAYER_CALL_COUNT', async () => {
      // dynamic_scripted's `again` runs once for an even n and twice for an odd n.
      const dyn = await load('dynamic_scripted.pt');
      const cka = new CKA(dyn, dyn, { model1Layers: ['again', 'out'], model2Layers: ['out'], model2Name: 'd2' });
      await cka.compare(randomBatches(16, [6], [6]));
      assert.deepEqual(cka.export().model1Layers, ['again', 'out']);
      await assert.rejects(cka.compare(randomBatches(17, [5], [6])), {
        code: 'ERR_LAYER_CALL_COUNT',
        message: /'again' ran more often than in the first batch \(1 time\(s\)\)/,
      });
      assert.equal(cka.export().batches, 1);
    });

    it('a call row that a later batch does not make is ERR_LAYER_NOT_RUN naming the batch', async () => {
      const dyn = await load('dynamic_scripted.pt');
      const cka = new CKA(dyn, dyn, { model1Layers: ['again'], model2Layers: ['out'], model2Name: 'd2' });
      await cka.compare(randomBatches(18, [5], [6]));
      assert.deepEqual(cka.export().model1Layers, ['again', 'again#2']);
      await assert.rejects(cka.compare(randomBatches(19, [6], [6])), {
        code: 'ERR_LAYER_NOT_RUN',
        message: /'again#2' of model 'dynamic_scripted' did not run during batch 1 \(layer 'again' ran 1 time\(s\)\)/,
      });
    });

    it('two streams with different n in one step is an error naming the step', async () => {
      const cka = new CKA(mlp, mlp2);
      await assert.rejects(cka.compare(randomBatches(4, [5, 5], [12]), randomBatches(5, [5, 6], [12])), {
        name: 'RangeError',
        code: 'ERR_BATCH_SIZE_MISMATCH',
        message: /Step 1: data 1 gave 5 samples but data 2 gave 6/,
      });
      assert.equal(cka.export().batches, 1);
    });

    it('a batch the model cannot take is ERR_FORWARD_FAILED naming the model and batch', async () => {
      const cka = new CKA(mlp, mlp2);
      await assert.rejects(cka.compare(randomBatches(6, [5], [7])), {
        code: 'ERR_FORWARD_FAILED',
        message:
          /Model 'mlp_scripted' failed on batch 0, given float32 \[5, 7\].*shapes cannot be multiplied \(5x7 and 12x32\)/,
      });
    });

    it("a batch of the wrong shape or dtype says what was given, with libtorch's error and no tracebacks", async () => {
      await assert.rejects(
        new CKA(conv, conv, { onWarning: () => {} }).compare([{ data: new Float32Array(6 * 64), shape: [6, 8, 8] }]),
        {
          code: 'ERR_FORWARD_FAILED',
          message:
            /^Model 'convnet_traced' failed on batch 0, given float32 \[6, 8, 8\] \(the batch's shape may not be what the model takes\): RuntimeError: Expected 4-dimensional input for 4-dimensional weight \[8, 3, 3, 3\], but got 3-dimensional input of size \[6, 8, 8\] instead$/,
        },
      );
      await assert.rejects(new CKA(mlp, mlp2).compare([{ data: new Float64Array(6 * 12), shape: [6, 12] }]), {
        code: 'ERR_FORWARD_FAILED',
        message:
          /^Model 'mlp_scripted' failed on batch 0, given float64 \[6, 12\] \(the batch's dtype may not be what the model takes\): RuntimeError: mat1 and mat2 must have the same dtype$/,
      });
    });

    it('a batch that is not tensor-like is a TypeError naming it', async () => {
      const cka = new CKA(mlp, mlp2);
      await assert.rejects(cka.compare([randomBatches(7, [5], [12])[0], 'oops']), {
        name: 'TypeError',
        code: 'ERR_INVALID_BATCH',
        message: /batch 1 of data1 to be a Tensor or \{ data: TypedArray, shape: number\[\] \} but received "oops"/,
      });
      await assert.rejects(cka.compare(42), { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /Iterable/ });
    });

    it('NaN in a layer output is ERR_NON_FINITE naming the layer and batch, and adds nothing', async () => {
      const cka = new CKA(mlp, mlp2);
      const good = randomBatches(8, [6], [12]);
      await cka.compare(good);
      const before = cka.export();
      const bad = randomBatches(9, [6], [12])[0];
      bad.data[3] = Number.NaN;
      await assert.rejects(cka.compare([bad]), {
        code: 'ERR_NON_FINITE',
        message: /layer 'fc1' of model 'mlp_scripted' on batch 1; nothing from this batch was added/,
      });
      assert.deepEqual(cka.export(), before);
    });

    it('a model disposed between compare() calls is ERR_DISPOSED on the next', async () => {
      const own = await load('mlp_scripted.pt');
      const cka = new CKA(own, mlp2);
      await cka.compare(randomBatches(20, [6], [12]));
      own.dispose();
      await assert.rejects(cka.compare(randomBatches(21, [6], [12])), {
        code: 'ERR_DISPOSED',
        message: /mlp_scripted\.pt' has been disposed/,
      });
      assert.equal(cka.export().batches, 1);
    });

    it('a second compare() while one runs is rejected with ERR_BUSY, and the first completes', async () => {
      const cka = new CKA(mlp, mlp2);
      const first = cka.compare(randomBatches(10, [6, 6, 6], [12]));
      await assert.rejects(cka.compare(randomBatches(11, [6], [12])), { code: 'ERR_BUSY' });
      assert.throws(() => cka.export(), { code: 'ERR_BUSY' });
      await first;
      assert.equal(cka.export().batches, 3);
    });

    it('a data source that throws mid-way rejects with its error; the object stays usable', async () => {
      const cka = new CKA(mlp, mlp2);
      const batches = randomBatches(12, [6, 6], [12]);
      function* failing() {
        yield batches[0];
        throw new Error('disk on fire');
      }
      await assert.rejects(cka.compare(failing()), /disk on fire/);
      await cka.compare([batches[1]]);
      assert.equal(cka.export().batches, 2);
    });

    it('an aborted signal stops before the next batch (one batch in flight); the object stays usable', async () => {
      const cka = new CKA(mlp, mlp2, { workers: 1 });
      const controller = new AbortController();
      const batches = randomBatches(13, [6, 6, 6, 6], [12]);
      await assert.rejects(
        cka.compare(batches, undefined, { signal: controller.signal, onProgress: () => controller.abort() }),
        { name: 'AbortError', code: 'ABORT_ERR' },
      );
      assert.equal(cka.export().batches, 1);
      await cka.compare(batches.slice(1));
      assert.equal(cka.export().batches, 4);
    });

    it('with two batches in flight, an abort keeps the pair that was running and counts it', async () => {
      const cka = new CKA(mlp, mlp2, { workers: 2 });
      const controller = new AbortController();
      const batches = randomBatches(13, [6, 6, 6, 6], [12]);
      const seen = [];
      await assert.rejects(
        cka.compare(batches, undefined, {
          signal: controller.signal,
          onProgress: (p) => {
            seen.push(p.batches);
            controller.abort();
          },
        }),
        { name: 'AbortError', code: 'ABORT_ERR' },
      );
      // Batches 0 and 1 ran together and were both added; each was reported.
      assert.deepEqual(seen, [1, 2]);
      assert.equal(cka.export().batches, 2);
      await cka.compare(batches.slice(2));
      assert.equal(cka.export().batches, 4);
    });

    it('an abort during a running batch drops that batch: the sums stay as before it', async () => {
      const [c1, c2] = await Promise.all([load('convnet_traced.pt'), load('convnet_scripted.pt')]);
      const cka = new CKA(c1, c2, { threads: 1, model1Name: 'a', model2Name: 'b' });
      const small = randomBatches(50, [8, 8], [3, 8, 8]);
      await cka.compare(small);
      const before = cka.export();
      // A batch large enough to be running in native code when the signal fires.
      const controller = new AbortController();
      const started = performance.now();
      const run = cka.compare(randomBatches(51, [2048], [3, 8, 8]), undefined, { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('user pressed stop')), 100);
      const error = await run.then(
        () => assert.fail('compare() finished before the abort'),
        (e) => e,
      );
      assert.equal(error.name, 'AbortError');
      assert.equal(error.code, 'ABORT_ERR');
      assert.equal(error.cause.message, 'user pressed stop');
      assert.deepEqual(cka.export(), before);
      // Stopped at a layer, not at the end of the batch: well under a full batch's time.
      const full = performance.now();
      const reference = new CKA(c1, c2, { threads: 1, model1Name: 'a', model2Name: 'b' });
      await reference.compare(randomBatches(51, [2048], [3, 8, 8]));
      const batchMs = performance.now() - full;
      const abortMs = full - started;
      assert.ok(abortMs < 100 + batchMs, `abort took ${abortMs.toFixed(0)} ms, a batch ${batchMs.toFixed(0)} ms`);
      // Still usable, and the dropped batch can be compared again.
      await cka.compare(randomBatches(52, [8], [3, 8, 8]));
      assert.equal(cka.export().batches, 3);
    });

    it('skipNonFinite skips a batch with NaN in a layer, with a warning naming it, and adds nothing', async () => {
      const sink = warningSink();
      const cka = new CKA(mlp, mlp2, { skipNonFinite: true, onWarning: sink.onWarning });
      const [good1, bad, good2] = randomBatches(14, [6, 6, 6], [12]);
      bad.data[5] = Number.POSITIVE_INFINITY;
      const summary = await cka.compare([good1, bad, good2]);
      assert.deepEqual({ batches: summary.batches, skipped: summary.skipped }, { batches: 2, skipped: 1 });
      const expected = new CKA(mlp, mlp2, { onWarning: () => {} });
      await expected.compare([good1, good2]);
      assert.deepEqual(cka.export().cka, expected.export().cka);
      assert.ok(
        sink.warnings.some(
          (w) =>
            w.code === 'TORCH_CKA_SKIPPED_BATCH' &&
            /Skipped batch 1: non-finite values.*layer 'fc1' of model 'mlp_scripted'/.test(w.message),
        ),
        JSON.stringify(sink.warnings),
      );
      assert.throws(() => new CKA(mlp, mlp2, { skipNonFinite: 'yes' }), { code: 'ERR_INVALID_ARG' });
    });

    it('warnings go to process.emitWarning by default', async () => {
      const seen = [];
      const listener = (w) => seen.push(w);
      process.on('warning', listener);
      try {
        new CKA(mlp, mlp); // eslint-disable-line no-new
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('warning', listener);
      }
      assert.ok(seen.some((w) => w.name === 'TorchCkaWarning' && w.code === 'TORCH_CKA_SAME_NAMES'));
    });

    it('uses warningSink-style handlers when given', () => {
      const sink = warningSink();
      new CKA(mlp, mlp, sink); // eslint-disable-line no-new
      assert.equal(sink.warnings.length, 1);
    });
  });
});

describe('the error catalogue', () => {
  const fs = require('node:fs');
  const path = require('node:path');
  const { ErrorCodes } = require('..');
  const root = path.join(__dirname, '..');

  it('docs/errors.md documents every code, and the native code uses no code the TypeScript side lacks', () => {
    const doc = fs.readFileSync(path.join(root, 'docs', 'errors.md'), 'utf8');
    const codes = Object.values(ErrorCodes);
    const missing = codes.filter((code) => !doc.includes(`| \`${code}\` |`));
    assert.deepEqual(missing, [], 'codes without a row in docs/errors.md');
    const native = fs.readFileSync(path.join(root, 'native', 'core', 'error_codes.h'), 'utf8');
    const used = [...native.matchAll(/= "((?:ERR_|ABORT_)[A-Z_]+)"/g)].map((m) => m[1]);
    assert.ok(used.length > 20);
    assert.deepEqual(
      used.filter((code) => !codes.includes(code)),
      [],
      'native codes missing from ts/errors.ts',
    );
  });

  it('an addon that cannot be loaded is ERR_NATIVE_LOAD with how to rebuild', () => {
    const { execFileSync } = require('node:child_process');
    const script = `try { require(${JSON.stringify(root)}).runtimeInfo(); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`;
    const out = execFileSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, TORCH_CKA_NATIVE: path.join(root, 'no-such-addon.node') },
    });
    const result = JSON.parse(out);
    assert.equal(result.code, 'ERR_NATIVE_LOAD');
    assert.match(
      result.message,
      /Could not load the torch-cka native addon \(.*no-such-addon\.node\): .*npm rebuild torch-cka/s,
    );
  });
});

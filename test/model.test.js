'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { loadModel, Model, Tensor, runtimeInfo } = require('..');
const { fixture, fixtureMeta, randomBatch, normalRng } = require('./helpers');

describe('loadModel', () => {
  for (const meta of fixtureMeta) {
    it(`lists the submodules of ${meta.file} as PyTorch's named_modules() does`, async () => {
      const model = await loadModel(fixture(meta.file));
      assert.deepEqual(model.layers(), meta.layers);
      model.dispose();
    });
  }

  it('names the model after its file and runs on the CPU by default', async () => {
    const model = await loadModel(fixture('mlp_traced.pt'));
    assert.equal(model.name, 'mlp_traced');
    assert.equal(model.device, 'cpu');
    assert.ok(model instanceof Model);
    model.dispose();
  });

  it('reports the libtorch it runs on', () => {
    const info = runtimeInfo();
    assert.match(info.libtorchVersion, /^\d+\.\d+/);
    assert.equal(typeof info.cudaAvailable, 'boolean');
    assert.ok(info.threads >= 1);
  });
});

describe('loadModel errors', () => {
  it('rejects a missing file with ERR_MODEL_NOT_FOUND naming it', async () => {
    await assert.rejects(loadModel('/no/such/model.pt'), {
      code: 'ERR_MODEL_NOT_FOUND',
      message: /'\/no\/such\/model\.pt' does not exist/,
    });
  });

  it('rejects a file that is not TorchScript with ERR_MODEL_FORMAT naming it (see model-files.test.js)', async () => {
    const file = path.join(os.tmpdir(), `torch-cka-not-a-model-${process.pid}.pt`);
    fs.writeFileSync(file, 'this is not a zip archive');
    try {
      await assert.rejects(loadModel(file), {
        code: 'ERR_MODEL_FORMAT',
        message: /not-a-model-\d+\.pt' is not a zip archive, as TorchScript files are/,
      });
    } finally {
      fs.unlinkSync(file);
    }
  });

  it('rejects cuda on a build or machine without CUDA, saying so', async function () {
    if (runtimeInfo().cudaAvailable) this.skip(); // only meaningful without a GPU
    await assert.rejects(loadModel(fixture('mlp_traced.pt'), { device: 'cuda' }), {
      code: 'ERR_DEVICE_UNAVAILABLE',
      message: /CUDA is not available/,
    });
    await assert.rejects(loadModel(fixture('mlp_traced.pt'), { device: 'cuda:1' }), {
      code: 'ERR_DEVICE_UNAVAILABLE',
    });
  });

  it('rejects a malformed device string with a RangeError', async () => {
    await assert.rejects(loadModel(fixture('mlp_traced.pt'), { device: 'gpu' }), {
      name: 'RangeError',
      code: 'ERR_INVALID_DEVICE',
      message: /'cpu', 'cuda' or 'cuda:N' but received 'gpu'/,
    });
  });

  it('rejects a non-string path with a TypeError', async () => {
    await assert.rejects(loadModel(42), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG',
      message: /path but received 42/,
    });
  });
});

describe('Model.extract', () => {
  it('gives every call of a reused module, in call order (traced forward1/forward2)', async () => {
    const model = await loadModel(fixture('convnet_traced.pt'));
    const batch = randomBatch(normalRng(1), 5, [3, 8, 8]);
    const features = await model.extract(batch, ['relu', 'block2', 'fc']);
    assert.deepEqual(Object.keys(features), ['relu', 'relu#2', 'relu#3', 'block2', 'fc']);
    assert.ok(features.relu instanceof Tensor);
    assert.deepEqual(features.relu.shape, [5, 8, 8, 8]);
    assert.deepEqual(features.fc.shape, [5, 5]);
    // relu#2 is the ReLU of block1's output, which differs from the first call.
    assert.notDeepEqual(features.relu.data, features['relu#2'].data);
    assert.ok(features['relu#3'].data.every((v) => v >= 0));
    model.dispose();
  });

  it('selects a single call with name#k', async () => {
    const model = await loadModel(fixture('convnet_scripted.pt'));
    const batch = randomBatch(normalRng(2), 4, [3, 8, 8]);
    const all = await model.extract(batch, ['relu']);
    const second = await model.extract(batch, ['relu#2']);
    assert.deepEqual(Object.keys(second), ['relu#2']);
    assert.deepEqual(second['relu#2'].data, all['relu#2'].data);
    model.dispose();
  });

  it('tells apart instances that share a class', async () => {
    const model = await loadModel(fixture('convnet_scripted.pt'));
    const batch = randomBatch(normalRng(3), 4, [3, 8, 8]);
    const f = await model.extract(batch, ['block1', 'block2', 'block3']);
    assert.notDeepEqual(f.block1.data, f.block2.data);
    assert.notDeepEqual(f.block2.data, f.block3.data);
    model.dispose();
  });

  it('uses the first tensor of tuple and list outputs', async () => {
    const model = await loadModel(fixture('odd_scripted.pt'));
    const batch = randomBatch(normalRng(4), 6, [6]);
    const f = await model.extract(batch, ['pair', 'pair.lin', 'listy']);
    assert.deepEqual(f.pair.data, f['pair.lin'].data); // pair returns (lin(x), lin(x) * 2)
    for (let i = 0; i < f.listy.data.length; i += 1) {
      assert.ok(Math.abs(f.listy.data[i] - (f.pair.data[i] + 1)) < 1e-6); // listy returns [x + 1, x - 1]
    }
    model.dispose();
  });

  it('takes several input tensor types and rejects bad batches', async () => {
    const model = await loadModel(fixture('mlp_scripted.pt'));
    const f = await model.extract(Tensor.from(new Array(4 * 12).fill(0.5), [4, 12]), ['fc1']);
    assert.deepEqual(f.fc1.shape, [4, 32]);
    await assert.rejects(model.extract({ data: new Float32Array(10), shape: [4, 12] }, ['fc1']), {
      name: 'RangeError',
      code: 'ERR_INVALID_BATCH',
      message: /holds 48 elements but its data has 10/,
    });
    await assert.rejects(model.extract([1, 2, 3], ['fc1']), { name: 'TypeError', code: 'ERR_INVALID_BATCH' });
    await assert.rejects(model.extract({ data: new Float32Array(4 * 7), shape: [4, 7] }, ['fc1']), {
      code: 'ERR_FORWARD_FAILED',
      message: /mlp_scripted.*extract/s,
    });
    model.dispose();
  });

  it('refuses a disposed model', async () => {
    const model = await loadModel(fixture('mlp_scripted.pt'));
    model.dispose();
    assert.equal(model.disposed, true);
    assert.throws(() => model.layers(), { code: 'ERR_DISPOSED' });
    await assert.rejects(model.extract(randomBatch(normalRng(5), 4, [12])), { code: 'ERR_DISPOSED' });
  });
});

describe('package entry points', () => {
  it('works from ESM (import) and CommonJS (require) by package name', () => {
    const { spawnSync } = require('node:child_process');
    const root = path.join(__dirname, '..');
    const esm = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { CKA, loadModel, Tensor } from 'torch-cka'; console.log(typeof CKA, typeof loadModel, typeof Tensor.from);",
      ],
      { cwd: root, encoding: 'utf8' },
    );
    assert.equal(esm.stdout.trim(), 'function function function', esm.stderr);
    const cjs = spawnSync(process.execPath, ['-e', "console.log(typeof require('torch-cka').CKA)"], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(cjs.stdout.trim(), 'function', cjs.stderr);
  });
});

describe('Tensor', () => {
  it('wraps a typed array without copying and checks the shape', () => {
    const data = new Float32Array(6);
    const t = Tensor.from(data, [2, 3]);
    assert.equal(t.data, data);
    assert.equal(t.dtype, 'float32');
    assert.equal(Tensor.from(new BigInt64Array(2), [2]).dtype, 'int64');
    assert.throws(() => Tensor.from(data, [4, 2]), { name: 'RangeError', code: 'ERR_INVALID_BATCH' });
    assert.throws(() => Tensor.from(new Int16Array(2), [2]), { name: 'TypeError', code: 'ERR_INVALID_ARG' });
  });
});

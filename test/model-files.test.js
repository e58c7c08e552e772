'use strict';
// Model files from everywhere: every mistake gets its own code and a message
// that names the file and says what it is and what to do. The files are made
// by test/fixtures/generate/make-error-fixtures.py (with PyTorch), except those made here.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel, runtimeInfo } = require('..');
const { fixture, randomBatches } = require('./helpers');

const bad = (name) => fixture(path.join('models-bad', name));
const quoted = (file) => new RegExp(`'${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`);

describe('model files: every bad file has its own error', () => {
  const libtorch = runtimeInfo().libtorchVersion.replace(/\./g, '\\.');
  const cases = [
    ['empty.pt', 'ERR_MODEL_EMPTY', /is empty \(0 bytes\)/],
    ['truncated.pt', 'ERR_MODEL_FORMAT', /cut off or damaged.*zip directory.*missing.*incomplete download/s],
    ['bad_checksum.pt', 'ERR_MODEL_FORMAT', /damaged: record 'archive\/data\/0' does not match its checksum/],
    ['random.pt', 'ERR_MODEL_FORMAT', /not a zip archive.*starts with 07 8a 12 95/],
    ['lfs_pointer.pt', 'ERR_MODEL_FORMAT', /Git LFS pointer.*git lfs pull/],
    ['web_page.pt', 'ERR_MODEL_FORMAT', /an HTML page, not a model/],
    ['other_zip.pt', 'ERR_MODEL_FORMAT', /zip archive but not one PyTorch wrote.*weights\/readme\.txt/],
    [
      'state_dict.pt',
      'ERR_MODEL_NOT_TORCHSCRIPT',
      /torch\.save output holding a state_dict.*torch\.jit\.script\(model\)\.save/,
    ],
    [
      'checkpoint.pt',
      'ERR_MODEL_NOT_TORCHSCRIPT',
      /torch\.save output holding a dict \(a training checkpoint\?\).*torch\.jit\.trace/,
    ],
    ['pickled_module.pt', 'ERR_MODEL_NOT_TORCHSCRIPT', /pickled object of class __main__\.TinyNet.*torch\.jit\.script/],
    ['legacy_state_dict.pt', 'ERR_MODEL_NOT_TORCHSCRIPT', /saved with torch\.save in the pre-1\.6 format.*torch\.jit/],
    [
      'newer_format.pt',
      'ERR_MODEL_VERSION',
      new RegExp(
        `file format version 11, newer than the linked libtorch ${libtorch} reads \\(up to version 10\\).*LIBTORCH=`,
      ),
    ],
    [
      'newer_operator.pt',
      'ERR_MODEL_VERSION',
      new RegExp(
        `libtorch ${libtorch} does not have \\(Unknown builtin op: aten::scaled_dot_product_attention\\).*newer PyTorch`,
      ),
    ],
    ['damaged_pickle.pt', 'ERR_MODEL_LOAD', /as a TorchScript model: Unknown opcode for unpickling/],
    [
      'bad_opcode.pt',
      'ERR_MODEL_FORMAT',
      /in record 'mlp_traced\/constants\.pkl', an opcode at offset 2 needs 2 value\(s\) but the stack has 0/,
    ],
    // libtorch reads a .debug_pkl only to format an error during forward: checked at load all the same.
    [
      'bad_debug_pkl.pt',
      'ERR_MODEL_FORMAT',
      /in record '.*linear\.py\.debug_pkl', an opcode at offset 2 needs 2 value/,
    ],
    [
      'short_tensor_record.pt',
      'ERR_MODEL_FORMAT',
      /record 'mlp_scripted\/data\/0' holds 4 bytes, but the tensor data it stores needs 1536/,
    ],
    [
      'empty_tensor_record.pt',
      'ERR_MODEL_FORMAT',
      /record 'mlp_traced\/data\/0' holds 0 bytes, but the tensor data it stores needs 1920/,
    ],
    // libtorch 1.13's TorchScript importer segfaults on this file; the check in a child process turns that into an error here.
    [
      'crashes_libtorch.pt',
      'ERR_MODEL_LOAD',
      /libtorch crashed reading it \(SIG[A-Z]+\), so the file is damaged or was crafted.*this process is unharmed/,
    ],
  ];
  for (const [file, code, message] of cases) {
    it(`${file}: ${code}`, async () => {
      const error = await loadModel(bad(file)).then(
        () => assert.fail(`${file} loaded`),
        (e) => e,
      );
      assert.equal(error.code, code, error.message);
      assert.match(error.message, quoted(bad(file)));
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /frame #|Exception raised from/);
    });
  }

  it('the check in a child process costs one start for many files, and the option is checked', async () => {
    await assert.rejects(loadModel(fixture('mlp_scripted.pt'), { verify: 'yes' }), {
      code: 'ERR_INVALID_ARG',
      message: /options\.verify/,
    });
    const model = await loadModel(fixture('mlp_scripted.pt'), { verify: false });
    assert.equal(model.layers().length > 0, true);
    model.dispose();
  });

  it('a missing file is ERR_MODEL_NOT_FOUND', async () => {
    await assert.rejects(loadModel(bad('no-such.pt')), {
      code: 'ERR_MODEL_NOT_FOUND',
      message: /no-such\.pt' does not exist/,
    });
  });

  it('a folder, a device and a pipe are ERR_MODEL_UNREADABLE, without hanging on the pipe', async () => {
    await assert.rejects(loadModel(fixture('models-bad')), { code: 'ERR_MODEL_UNREADABLE', message: /is a folder/ });
    await assert.rejects(loadModel('/dev/zero'), { code: 'ERR_MODEL_UNREADABLE', message: /not a regular file/ });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-fifo-'));
    try {
      const fifo = path.join(dir, 'model.pt');
      execFileSync('mkfifo', [fifo]);
      await assert.rejects(loadModel(fifo), { code: 'ERR_MODEL_UNREADABLE', message: /device, pipe or socket/ });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file without read permission is ERR_MODEL_UNREADABLE', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-perm-'));
    try {
      fs.chmodSync(dir, 0o755);
      const file = path.join(dir, 'model.pt');
      fs.copyFileSync(fixture('mlp_scripted.pt'), file);
      fs.chmodSync(file, 0o000);
      let result;
      if (process.getuid?.() === 0) {
        // root reads every file: load it as root without the capabilities
        // that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
        // Not as another user: that user could not enter a checkout in a 0700
        // home (Debian 12's default) or temporary folder.
        try {
          execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
        } catch {
          this.skip();
        }
        const script = `require(${JSON.stringify(path.join(__dirname, '..'))}).loadModel(${JSON.stringify(file)})
          .then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`;
        const argv = ['--bounding-set', '-dac_override,-dac_read_search', process.execPath, '-e', script];
        result = JSON.parse(execFileSync('setpriv', argv, { encoding: 'utf8' }));
      } else {
        result = await loadModel(file).then(
          () => ({}),
          (e) => e,
        );
      }
      assert.equal(result.code, 'ERR_MODEL_UNREADABLE');
      assert.match(result.message, /model\.pt' cannot be read: Permission denied/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('devices: a model made for a GPU, run on the CPU', () => {
  it('is ERR_DEVICE_MISMATCH naming the model, the device and the batch', async function () {
    if (runtimeInfo().cudaAvailable) this.skip(); // with a GPU the forward would work
    const model = await loadModel(bad('cuda_forward.pt'));
    const cka = new CKA(model, model, { onWarning: () => {} });
    await assert.rejects(cka.compare(randomBatches(40, [6], [4])), {
      code: 'ERR_DEVICE_MISMATCH',
      message:
        /Model 'cuda_forward' was loaded on cpu, but its forward uses another device on batch 0.*libtorch said: /s,
    });
    model.dispose();
  });
});

describe('a model that loops without end', () => {
  it('is stopped with ERR_LAYER_CALL_COUNT after 100,000 submodule calls in one pass', async () => {
    const model = await loadModel(bad('endless_loop.pt'));
    const cka = new CKA(model, model, { onWarning: () => {} });
    await assert.rejects(cka.compare(randomBatches(41, [6], [6])), {
      code: 'ERR_LAYER_CALL_COUNT',
      message: /Model 'endless_loop' was stopped on batch 0 after 100000 calls of its submodules in one forward pass/,
    });
    model.dispose();
  });
});

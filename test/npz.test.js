'use strict';
// .npz archives: several inputs from one data file, read into a traced text encoder
// (input_ids and attention_mask, int64; a dict output). Fixtures and the float64 CKA
// references come from test/fixtures/generate/make-npz-fixtures.py (forward hooks on the
// eager modules, numpy); the arrays the readers return are checked against the lists the
// generator wrote, never against the readers' own output.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CKA, loadModel, readNpz, readNpy, openDataset, NpzDataset } = require('..');

const FIXTURES = path.join(__dirname, 'fixtures');
const npz = (name) => path.join(FIXTURES, 'data', 'npz', name);
const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'npz-reference.json'), 'utf8'));
const CLI = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const TOLERANCE = 1e-4;

const toRows = (tensor) => {
  const [n, ...rest] = tensor.shape;
  const width = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: n }, (_, i) => Array.from(tensor.data.subarray(i * width, (i + 1) * width), Number));
};

async function passRows(dataset) {
  const out = [];
  for await (const batch of dataset) {
    assert.ok(Array.isArray(batch), 'a batch of an .npz is an array of tensors');
    const rows = batch.map(toRows);
    rows[0].forEach((_, i) => out.push(rows.map((r) => r[i])));
  }
  return out;
}

function assertClose(actual, expected, what) {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((row, i) =>
    row.forEach((v, j) =>
      assert.ok(Math.abs(v - expected[i][j]) < TOLERANCE, `${what} [${i}][${j}]: ${v} vs ${expected[i][j]}`),
    ),
  );
}

async function assertCode(promise, code, pattern) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

describe('.npz reader', () => {
  it('reads a deflated archive in archive order: int64 batches, one tensor per array', async () => {
    const data = await readNpz(npz('text.npz'), { batchSize: 16 });
    assert.ok(data instanceof NpzDataset);
    assert.equal(data.format, 'npz');
    assert.deepEqual(
      data.inputs.map((i) => [i.name, i.dtype, [...i.sampleShape], i.compression]),
      [
        ['input_ids', 'int64', [ref.seqLen], 'deflated'],
        ['attention_mask', 'int64', [ref.seqLen], 'deflated'],
      ],
    );
    assert.equal(data.length, ref.samples);
    assert.equal(data.batchCount, 3);
    assert.match(data.describe(), /text\.npz: 40 samples of input_ids int64 \[12\], attention_mask int64 \[12\]/);
    const rows = await passRows(data);
    assert.deepEqual(
      rows,
      ref.input_ids.map((ids, i) => [ids, ref.attention_mask[i]]),
    );
  });

  it('reads a stored archive in the order of inputs (with or without .npy), zip64 too', async () => {
    for (const file of ['text_stored.npz', 'zip64.npz']) {
      const data = await readNpz(npz(file), { batchSize: 7, inputs: ['input_ids', 'attention_mask.npy'] });
      assert.deepEqual(
        data.inputs.map((i) => [i.name, i.compression]),
        [
          ['input_ids', 'stored'],
          ['attention_mask', 'stored'],
        ],
      );
      assert.deepEqual(
        await passRows(data),
        ref.input_ids.map((ids, i) => [ids, ref.attention_mask[i]]),
        file,
      );
      const all = await readNpz(npz(file));
      assert.deepEqual(
        all.inputs.map((i) => i.name),
        ['attention_mask', 'labels', 'input_ids'],
      );
    }
  });

  it('shuffles, limits, drops the last batch and resumes like the .npy reader, the inputs kept together', async () => {
    for (const file of ['text.npz', 'text_stored.npz']) {
      const options = { batchSize: 6, shuffle: true, seed: 3, limit: 25, dropLast: true };
      const data = await readNpz(npz(file), { ...options, inputs: ['input_ids', 'attention_mask'] });
      assert.equal(data.batchCount, 4);
      const rows = await passRows(data);
      assert.equal(rows.length, 24);
      // The record order of a shuffled pass is the same as the .npy reader's with the same options.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
      try {
        const index = path.join(dir, 'index.npy');
        writeInt64Npy(
          index,
          Array.from({ length: ref.samples }, (_, i) => i),
        );
        const order = (await passRowsSingle(await readNpy(index, options))).map((r) => r[0]);
        assert.deepEqual(
          rows,
          order.map((i) => [ref.input_ids[i], ref.attention_mask[i]]),
        );
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      // A resumed pass (batches(2)) is the full pass less its first two batches.
      const resumed = [];
      for await (const batch of data.batches(2)) {
        const r = batch.map(toRows);
        r[0].forEach((_, i) => resumed.push(r.map((x) => x[i])));
      }
      assert.deepEqual(resumed, rows.slice(12));
    }
  });

  it('is what openDataset opens for .npz (and for a zip without the extension)', async () => {
    const data = await openDataset(npz('text.npz'), { inputs: ['attention_mask'] });
    assert.ok(data instanceof NpzDataset);
    assert.deepEqual(
      data.inputs.map((i) => i.name),
      ['attention_mask'],
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
    try {
      const renamed = path.join(dir, 'text.data');
      fs.copyFileSync(npz('text.npz'), renamed);
      assert.ok((await openDataset(renamed)) instanceof NpzDataset);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('bad archives: coded errors naming the file and the array', () => {
    it('an array of another length', () =>
      assertCode(
        readNpz(npz('bad_length.npz')),
        'ERR_DATA_SHAPE',
        /bad_length\.npz.*"input_ids" has 40.*"attention_mask" has 39/,
      ));
    it('a missing name lists the names present', () =>
      assertCode(
        readNpz(npz('text.npz'), { inputs: ['input_ids', 'token_type_ids'] }),
        'ERR_DATA_NOT_FOUND',
        /"token_type_ids" in .*text\.npz.*"input_ids", "attention_mask"/,
      ));
    it('a pickled object array', () =>
      assertCode(
        readNpz(npz('object.npz')),
        'ERR_DATA_FORMAT',
        /object\.npz: "meta\.npy".*'\|O'.*pickled object array/,
      ));
    it('an empty archive', () => assertCode(readNpz(npz('empty.npz')), 'ERR_DATA_FORMAT', /empty\.npz.*empty/));
    it('a bad CRC-32', () =>
      assertCode(readNpz(npz('bad_crc.npz')), 'ERR_DATA_FORMAT', /CRC-32 of .*bad_crc\.npz: "input_ids\.npy"/));
    it('an unsupported compression method', () =>
      assertCode(readNpz(npz('bzip2.npz')), 'ERR_DATA_FORMAT', /bzip2\.npz: "input_ids\.npy".*compression method 12/));
    it('a file that is not a zip', () =>
      assertCode(readNpz(path.join(FIXTURES, 'npz-reference.json')), 'ERR_DATA_FORMAT', /zip archive/));
    it('a cut-off archive', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
      try {
        const cut = path.join(dir, 'cut.npz');
        const bytes = fs.readFileSync(npz('text_stored.npz'));
        fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 200));
        await assertCode(readNpz(cut), 'ERR_DATA_TRUNCATED', /cut\.npz/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
    it('a corrupt deflate stream', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
      try {
        const bad = path.join(dir, 'bad.npz');
        const bytes = Buffer.from(fs.readFileSync(npz('text.npz')));
        // The first member's data starts after its local header; damage its middle.
        const start = 30 + bytes.readUInt16LE(26) + bytes.readUInt16LE(28);
        for (let i = start + 20; i < start + 60; i += 1) bytes[i] ^= 0x5a;
        fs.writeFileSync(bad, bytes);
        await assert.rejects(readNpz(bad), (error) => {
          assert.ok(['ERR_DATA_FORMAT', 'ERR_DATA_TRUNCATED'].includes(error.code), error.message);
          assert.match(error.message, /bad\.npz: "input_ids\.npy"/);
          return true;
        });
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
    it('bad inputs options', async () => {
      await assertCode(readNpz(npz('text.npz'), { inputs: 'input_ids' }), 'ERR_INVALID_ARG');
      await assertCode(readNpz(npz('text.npz'), { inputs: [] }), 'ERR_INVALID_ARG');
      await assertCode(readNpz(npz('text.npz'), { inputs: ['input_ids', 'input_ids.npy'] }), 'ERR_INVALID_ARG');
    });
  });
});

describe('.npz into a traced encoder with two int64 inputs and a dict output', () => {
  it('matches the float64 reference from forward hooks (API)', async () => {
    const [a, b] = await Promise.all([
      loadModel(path.join(FIXTURES, 'encoder_traced.pt')),
      loadModel(path.join(FIXTURES, 'encoder_b_traced.pt')),
    ]);
    try {
      for (const [file, inputs] of [
        ['text.npz', undefined],
        ['text_stored.npz', ['input_ids', 'attention_mask']],
      ]) {
        const data = await readNpz(npz(file), { batchSize: ref.batchSize, ...(inputs ? { inputs } : {}) });
        const cka = new CKA(a, b, { model1Layers: ref.layers, model2Layers: ref.layers });
        await cka.compare(data);
        const r = cka.export();
        assert.deepEqual(r.model1Layers, ref.layers);
        assert.equal(r.samples, ref.samples);
        assert.equal(r.batches, 3);
        assertClose(r.cka, ref.cka_a_b, file);
      }
      const self = new CKA(a, a, { model1Layers: ref.layers, model2Layers: ref.layers, model2Name: 'same' });
      await self.compare(await readNpz(npz('text.npz'), { batchSize: ref.batchSize }));
      assertClose(self.export().cka, ref.cka_a_a, 'encoder vs itself');
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('resumes a checkpoint with the same arrays, and refuses one made with other arrays or another order', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
    const a = await loadModel(path.join(FIXTURES, 'encoder_traced.pt'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const open = (inputs) => readNpz(npz('text_stored.npz'), { batchSize: ref.batchSize, inputs });
      const options = { model1Layers: ref.layers, model2Layers: ref.layers, model2Name: 'same' };
      const first = new CKA(a, a, options);
      await first.compare(await open(['input_ids', 'attention_mask']), undefined, {
        checkpoint: { path: file, every: 1 },
      });
      const again = new CKA(a, a, options);
      const summary = await again.compare(await open(['input_ids', 'attention_mask']), undefined, {
        checkpoint: { path: file },
      });
      assert.equal(summary.resumed, 3);
      assertClose(again.export().cka, ref.cka_a_a, 'resumed');
      for (const inputs of [
        ['attention_mask', 'input_ids'],
        ['input_ids', 'labels'],
      ]) {
        await assert.rejects(
          new CKA(a, a, options).compare(await open(inputs), undefined, { checkpoint: { path: file } }),
          {
            code: 'ERR_CHECKPOINT_MISMATCH',
            message: /data 1's inputs/,
          },
        );
      }
    } finally {
      a.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('matches it through the CLI with --inputs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-npz-'));
    try {
      const out = path.join(dir, 'results.json');
      const { status, stdout, stderr } = await runCli([
        'compare',
        path.join(FIXTURES, 'encoder_traced.pt'),
        path.join(FIXTURES, 'encoder_b_traced.pt'),
        '--data',
        npz('text_stored.npz'),
        '--inputs',
        'input_ids,attention_mask',
        '--batch-size',
        String(ref.batchSize),
        '--layers1',
        ref.layers.join(','),
        '--layers2',
        ref.layers.join(','),
        '--out',
        out,
      ]);
      assert.equal(status, 0, stderr);
      assert.match(stdout, /data: text_stored\.npz: 40 samples of input_ids int64 \[12\], attention_mask int64 \[12\]/);
      const results = JSON.parse(fs.readFileSync(out, 'utf8'));
      assertClose(results.cka, ref.cka_a_b, 'CLI');
      // Without --inputs the archive's three arrays go in, in its order: the model refuses them.
      const wrong = await runCli([
        'compare',
        path.join(FIXTURES, 'encoder_traced.pt'),
        path.join(FIXTURES, 'encoder_b_traced.pt'),
        '--data',
        npz('text_stored.npz'),
        '--quiet',
      ]);
      assert.notEqual(wrong.status, 0);
      assert.match(wrong.stderr, /ERR_/);
      const notNpz = await runCli([
        'compare',
        'a.pt',
        'b.pt',
        '--data',
        path.join(FIXTURES, 'data', 'npy', 'values_int64.npy'),
        '--inputs',
        'input_ids',
      ]);
      assert.notEqual(notNpz.status, 0);
      assert.match(notNpz.stderr, /--inputs .*values_int64\.npy is npy data.*ERR_USAGE/);
      const missing = await runCli(['compare', 'a.pt', 'b.pt', '--data', npz('text.npz'), '--inputs', 'input_ids,,x']);
      assert.notEqual(missing.status, 0);
      assert.match(missing.stderr, /ERR_USAGE/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function runCli(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 1 << 26 }, (error, stdout, stderr) =>
      resolve({ status: error ? error.code : 0, stdout, stderr }),
    );
  });
}

async function passRowsSingle(dataset) {
  const out = [];
  for await (const batch of dataset) out.push(...toRows(batch));
  return out;
}

/** A plain (N,) int64 .npy file, written byte by byte. */
function writeInt64Npy(file, values) {
  let header = `{'descr': '<i8', 'fortran_order': False, 'shape': (${values.length},), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(BigInt64Array.from(values, BigInt).buffer);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

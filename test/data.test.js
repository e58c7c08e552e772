'use strict';
// Data readers: .npy, CIFAR-10 binary, IDX (MNIST) and image folders.
// .npy files and images come from test/fixtures/generate/make-data-fixtures.py; IDX and
// CIFAR-10 files are built here byte by byte. Expected values are recomputed
// from the formulas that made the data, never copied from the readers.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const { readNpy, readCifar10, readIdx, readImageFolder, openDataset, Dataset } = require('../dist/data');

const FIXTURES = path.join(__dirname, 'fixtures', 'data');
const npy = (name) => path.join(FIXTURES, 'npy', name);
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));

// ---------------------------------------------------------------------------
// Helpers

async function collect(dataset) {
  const batches = [];
  for await (const batch of dataset) batches.push(batch);
  return batches;
}

/** Samples of a pass as arrays of numbers (bigint kept), one per sample. */
async function samplesOf(dataset) {
  const out = [];
  for await (const batch of dataset) {
    const size = batch.data.length / batch.shape[0];
    for (let s = 0; s < batch.shape[0]; s += 1) out.push(Array.from(batch.data.subarray(s * size, (s + 1) * size)));
  }
  return out;
}

const closeTo = (actual, expected, tolerance, what) => {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i += 1) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tolerance,
      `${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`,
    );
  }
};

/** Open file descriptors of this process (Linux); undefined elsewhere. */
const openFds = () => (fs.existsSync('/proc/self/fd') ? fs.readdirSync('/proc/self/fd').length : undefined);
const tempLeft = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('torch-cka-'));

/** Runs `body` and checks that it leaves no file descriptor or temporary folder behind. */
async function leavesNothingOpen(body) {
  const fds = openFds();
  const temps = tempLeft();
  await body();
  if (fds !== undefined) assert.equal(openFds(), fds, 'a file descriptor was left open');
  assert.deepEqual(tempLeft(), temps, 'a temporary folder was left behind');
}

let tmp;
const tmpFile = (name, bytes) => {
  const file = path.join(tmp, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  return file;
};

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'data-test-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// The formulas of test/fixtures/generate/make-data-fixtures.py.
const VALUE = {
  float32: (i) => ((i * 7) % 13) - 3.5,
  float64: (i) => ((i * 7) % 13) - 3.5,
  uint8: (i) => (i * 37) % 256,
  int64: (i) => BigInt(((i * 7) % 13) - 6) * 1000000000000n + BigInt(i),
};

// IDX: big-endian header 0, 0, type, ndim, then ndim uint32 sizes.
function idxBytes(type, dims, elementBytes, writeElement) {
  const count = dims.reduce((a, b) => a * b, 1);
  const buffer = Buffer.alloc(4 + 4 * dims.length + count * elementBytes);
  buffer[2] = type;
  buffer[3] = dims.length;
  dims.forEach((d, i) => buffer.writeUInt32BE(d, 4 + 4 * i));
  for (let i = 0; i < count; i += 1) writeElement(buffer, 4 + 4 * dims.length + i * elementBytes, i);
  return buffer;
}
const pixel = (i) => (i * 7 + 3) % 256;
const mnistBytes = (n, h, w) => idxBytes(0x08, [n, h, w], 1, (b, at, i) => b.writeUInt8(pixel(i), at));

// CIFAR-10: per record one label byte and 3072 pixel bytes. Record g (global) has
// label g % 10 and pixel p = (g * 7 + p) % 256, so its first pixel tells g (g < 256).
const cifarPixel = (g, p) => (g * 7 + p) % 256;
function cifarBytes(first, count) {
  const buffer = Buffer.alloc(count * 3073);
  for (let r = 0; r < count; r += 1) {
    const g = first + r;
    buffer[r * 3073] = g % 10;
    for (let p = 0; p < 3072; p += 1) buffer[r * 3073 + 1 + p] = cifarPixel(g, p);
  }
  return buffer;
}
const cifarId = (sample) => {
  const first = Math.round(sample[0] * 255);
  for (let g = 0; g < 256; g += 1) if ((g * 7) % 256 === first) return g;
  throw new Error(`no record starts with ${first}`);
};

// ---------------------------------------------------------------------------

describe('data: .npy', () => {
  for (const [dtype, Typed] of [
    ['float32', Float32Array],
    ['float64', Float64Array],
    ['uint8', Uint8Array],
    ['int64', BigInt64Array],
  ]) {
    it(`reads ${dtype} values in the file's dtype, split into batches`, async () => {
      const ds = await readNpy(npy(`values_${dtype}.npy`), { batchSize: 4 });
      assert.ok(ds instanceof Dataset);
      assert.equal(ds.format, 'npy');
      assert.equal(ds.dtype, dtype);
      assert.equal(ds.name, `values_${dtype}.npy`);
      assert.equal(ds.path, npy(`values_${dtype}.npy`));
      assert.deepEqual(ds.sampleShape, [2, 3]);
      assert.equal(ds.length, 10);
      assert.equal(ds.batchCount, 3);
      assert.equal(ds.describe(), `values_${dtype}.npy: 10 samples of ${dtype} [2, 3]`);
      const batches = await collect(ds);
      assert.deepEqual(
        batches.map((b) => b.shape),
        [
          [4, 2, 3],
          [4, 2, 3],
          [2, 2, 3],
        ],
      );
      let i = 0;
      for (const batch of batches) {
        assert.ok(batch.data instanceof Typed);
        assert.equal(batch.dtype, dtype);
        for (const v of batch.data) assert.equal(v, VALUE[dtype](i++));
      }
      assert.equal(i, 60);
    });
  }

  it('reads format versions 2.0 and 3.0 headers', async () => {
    for (const name of ['v2.npy', 'v3.npy']) {
      const ds = await readNpy(npy(name), { batchSize: 100 });
      const [batch] = await collect(ds);
      assert.deepEqual(batch.shape, [10, 2, 3]);
      assert.deepEqual(
        Array.from(batch.data),
        Array.from({ length: 60 }, (_, i) => VALUE.float32(i)),
      );
    }
  });

  it('a 1-d array is samples of shape []', async () => {
    const ds = await readNpy(npy('vector.npy'), { batchSize: 5 });
    assert.deepEqual(ds.sampleShape, []);
    const batches = await collect(ds);
    assert.deepEqual(
      batches.map((b) => b.shape),
      [[5], [2]],
    );
    assert.deepEqual(
      batches.flatMap((b) => Array.from(b.data)),
      Array.from({ length: 7 }, (_, i) => VALUE.float32(i)),
    );
  });

  it('limit and dropLast', async () => {
    const ds = await readNpy(npy('values_float32.npy'), { batchSize: 3, limit: 8, dropLast: true });
    assert.equal(ds.length, 8);
    assert.equal(ds.batchCount, 2);
    const batches = await collect(ds);
    assert.deepEqual(
      batches.map((b) => b.shape[0]),
      [3, 3],
    );
    const kept = await readNpy(npy('values_float32.npy'), { batchSize: 3, limit: 8 });
    assert.equal(kept.batchCount, 3);
    assert.deepEqual(
      (await collect(kept)).map((b) => b.shape[0]),
      [3, 3, 2],
    );
    const big = await readNpy(npy('values_float32.npy'), { limit: 1000 });
    assert.equal(big.length, 10);
    assert.equal(big.batchCount, 1);
    const none = await readNpy(npy('values_float32.npy'), { batchSize: 20, dropLast: true });
    assert.equal(none.batchCount, 0);
    assert.deepEqual(await collect(none), []);
  });

  it('shuffle: a seeded permutation, the same every pass; limit takes a subset of it', async () => {
    // int64 samples are all different: their first element names them.
    const firstOf = (s) => VALUE.int64(s * 6);
    const order = async (opts) => (await samplesOf(await readNpy(npy('values_int64.npy'), opts))).map((x) => x[0]);
    const a = await order({ shuffle: true, seed: 1, batchSize: 3 });
    const b = await order({ shuffle: true, seed: 1, batchSize: 4 });
    const c = await order({ shuffle: true, seed: 2 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const ids = (list) => list.map((v) => Array.from({ length: 10 }, (_, s) => s).find((s) => firstOf(s) === v));
    assert.deepEqual(
      [...ids(a)].sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.notDeepEqual(ids(a), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const limited = await order({ shuffle: true, seed: 1, limit: 4 });
    assert.deepEqual(limited, a.slice(0, 4));
  });

  it('iterating twice gives the same batches; two passes can run at once', async () => {
    const ds = await readNpy(npy('values_float64.npy'), { batchSize: 3, shuffle: true, seed: 5 });
    const first = await samplesOf(ds);
    const second = await samplesOf(ds);
    assert.deepEqual(first, second);
    const [x, y] = await Promise.all([samplesOf(ds), samplesOf(ds)]);
    assert.deepEqual(x, first);
    assert.deepEqual(y, first);
  });

  it('an early break closes the file', async () => {
    await leavesNothingOpen(async () => {
      const ds = await readNpy(npy('values_float32.npy'), { batchSize: 2 });
      for await (const batch of ds) {
        assert.equal(batch.shape[0], 2);
        break;
      }
      const shuffled = await readNpy(npy('values_float32.npy'), { batchSize: 2, shuffle: true });
      const iterator = shuffled[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.return();
    });
  });

  describe('errors', () => {
    it('a missing file is ERR_DATA_NOT_FOUND naming it', async () => {
      await assert.rejects(readNpy(npy('nope.npy')), { code: 'ERR_DATA_NOT_FOUND', message: /nope\.npy/ });
    });

    it('a folder is ERR_DATA_FORMAT', async () => {
      await assert.rejects(readNpy(path.join(FIXTURES, 'npy')), { code: 'ERR_DATA_FORMAT', message: /npy.*folder/ });
    });

    it('a bad magic string', async () => {
      await assert.rejects(readNpy(npy('notnpy.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /Expected .*notnpy\.npy to start with the \.npy magic string .* but found 74 68 69 73 20 69/,
      });
      const empty = tmpFile('empty.npy', Buffer.alloc(0));
      await assert.rejects(readNpy(empty), { code: 'ERR_DATA_FORMAT', message: /empty\.npy.*\(no bytes\)/ });
    });

    it('a cut-off header is ERR_DATA_TRUNCATED', async () => {
      const whole = fs.readFileSync(npy('values_float32.npy'));
      await assert.rejects(readNpy(tmpFile('head.npy', whole.subarray(0, 40))), {
        code: 'ERR_DATA_TRUNCATED',
        message: /head\.npy ends inside its \.npy header/,
      });
    });

    it('an unknown format version', async () => {
      const whole = Buffer.from(fs.readFileSync(npy('values_float32.npy')));
      whole[6] = 4;
      await assert.rejects(readNpy(tmpFile('v4.npy', whole)), {
        code: 'ERR_DATA_FORMAT',
        message: /version 1\.0, 2\.0 or 3\.0 in .*v4\.npy but found 4\.0/,
      });
    });

    it('Fortran order', async () => {
      await assert.rejects(readNpy(npy('fortran.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /Expected C order in .*fortran\.npy but found Fortran order/,
      });
    });

    it('big-endian data', async () => {
      await assert.rejects(readNpy(npy('bigendian.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /bigendian\.npy but found '>f4' \(big-endian/,
      });
    });

    it('dtypes other than float32, float64, uint8, int64', async () => {
      await assert.rejects(readNpy(npy('float16.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /Expected the dtype .*'<f4' \(float32\).* in .*float16\.npy but found '<f2'/,
      });
      await assert.rejects(readNpy(npy('int32.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /int32\.npy but found '<i4'/,
      });
      await assert.rejects(readNpy(npy('structured.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /structured\.npy but found the structured dtype/,
      });
    });

    it('a 0-d array', async () => {
      await assert.rejects(readNpy(npy('scalar.npy')), {
        code: 'ERR_DATA_FORMAT',
        message: /array of samples .* in .*scalar\.npy but found a 0-d array/,
      });
    });

    it('a file shorter than its header promises names the first incomplete record', async () => {
      await assert.rejects(readNpy(npy('truncated.npy')), {
        code: 'ERR_DATA_TRUNCATED',
        message: /truncated\.npy ends inside record 8: its header promises 10 records of 24 bytes/,
      });
    });

    // Found by test/fuzz/fuzz.js: a header length read from the file was
    // allocated before it was checked (up to 4 GiB for a 2.0 header).
    it('a header length past the end of the file is ERR_DATA_TRUNCATED, before anything that size is allocated', async () => {
      const whole = fs.readFileSync(npy('v2.npy'));
      const bad = Buffer.from(whole);
      bad.writeUInt32LE(0xffffffff, 8);
      const file = tmpFile('long-header.npy', bad);
      // The reader's own allocations, through the global it calls.
      const Real = globalThis.Uint8Array;
      let biggest = 0;
      globalThis.Uint8Array = new Proxy(Real, {
        construct(target, args, newTarget) {
          if (typeof args[0] === 'number') biggest = Math.max(biggest, args[0]);
          return Reflect.construct(target, args, newTarget);
        },
      });
      try {
        await assert.rejects(readNpy(file), {
          code: 'ERR_DATA_TRUNCATED',
          message: /long-header\.npy ends inside its \.npy header: it promises 4294967295 header bytes but has 356/,
        });
      } finally {
        globalThis.Uint8Array = Real;
      }
      assert.ok(biggest > 0 && biggest < 65536, `the reader allocated ${biggest} bytes`);
    });

    // Found by test/fuzz/fuzz.js: shape (10**12, 0) made a pass of 10**12 empty batches out of no data.
    it('a sample dimension of 0 is ERR_DATA_FORMAT', async () => {
      const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 0, 3), }";
      const text = header + ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
      const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
      prefix.writeUInt16LE(text.length, 8);
      await assert.rejects(readNpy(tmpFile('empty-samples.npy', Buffer.concat([prefix, Buffer.from(text)]))), {
        code: 'ERR_DATA_FORMAT',
        message: /non-zero sample dimensions in .*empty-samples\.npy but found the shape \(1000000000000, 0, 3\)/,
      });
    });

    it('bad options are ERR_INVALID_ARG', async () => {
      const file = npy('values_float32.npy');
      const cases = [
        [{ batchSize: 0 }, RangeError, /Expected an integer >= 1 for options\.batchSize but received 0/],
        [{ batchSize: 1.5 }, TypeError, /Expected an integer for options\.batchSize but received 1\.5/],
        [{ limit: -1 }, RangeError, /options\.limit/],
        [{ shuffle: 'yes' }, TypeError, /Expected a boolean for options\.shuffle but received "yes"/],
        [{ seed: -1 }, RangeError, /options\.seed/],
        [{ dropLast: 1 }, TypeError, /options\.dropLast/],
        ['fast', TypeError, /Expected an object for options/],
      ];
      for (const [options, Kind, message] of cases) {
        await assert.rejects(readNpy(file, options), (error) => {
          assert.ok(error instanceof Kind, `${JSON.stringify(options)}: ${error.name}`);
          assert.equal(error.code, 'ERR_INVALID_ARG');
          assert.match(error.message, message);
          return true;
        });
      }
      await assert.rejects(readNpy(42), { code: 'ERR_INVALID_ARG', message: /non-empty string for path/ });
    });
  });
});

describe('data: CIFAR-10 binary', () => {
  let folder;
  before(() => {
    // data_batch_10 must come after data_batch_2 (numeric order).
    folder = path.join(tmp, 'cifar');
    tmpFile('cifar/data_batch_1.bin', cifarBytes(0, 5));
    tmpFile('cifar/data_batch_2.bin', cifarBytes(5, 4));
    tmpFile('cifar/data_batch_10.bin', cifarBytes(9, 3));
    tmpFile('cifar/test_batch.bin', cifarBytes(12, 6));
    tmpFile('cifar/readme.txt', 'not a batch');
  });

  it('reads a file as float32 [n, 3, 32, 32] in [0, 1]', async () => {
    const ds = await readCifar10(path.join(folder, 'data_batch_1.bin'), { batchSize: 2 });
    assert.equal(ds.format, 'cifar10');
    assert.equal(ds.dtype, 'float32');
    assert.deepEqual(ds.sampleShape, [3, 32, 32]);
    assert.equal(ds.describe(), 'data_batch_1.bin: 5 samples of float32 [3, 32, 32]');
    const batches = await collect(ds);
    assert.deepEqual(
      batches.map((b) => b.shape),
      [
        [2, 3, 32, 32],
        [2, 3, 32, 32],
        [1, 3, 32, 32],
      ],
    );
    const samples = await samplesOf(ds);
    samples.forEach((sample, g) => {
      const expected = Array.from({ length: 3072 }, (_, p) => cifarPixel(g, p) / 255);
      closeTo(sample, expected, 1e-7, `record ${g}`);
    });
  });

  it('a folder: data_batch_N in numeric order, then test_batch; split picks', async () => {
    const ids = async (opts) => (await samplesOf(await readCifar10(folder, opts))).map(cifarId);
    assert.deepEqual(
      await ids(),
      Array.from({ length: 18 }, (_, g) => g),
    );
    assert.deepEqual(
      await ids({ split: 'train' }),
      Array.from({ length: 12 }, (_, g) => g),
    );
    assert.deepEqual(await ids({ split: 'test' }), [12, 13, 14, 15, 16, 17]);
    const ds = await readCifar10(folder, { split: 'all', batchSize: 4 });
    assert.equal(ds.name, 'cifar');
    assert.equal(ds.length, 18);
    assert.equal(ds.batchCount, 5);
    assert.deepEqual(
      ds.files.map((f) => path.basename(f)),
      ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_10.bin', 'test_batch.bin'],
    );
    // Batches that span two files.
    assert.deepEqual(
      (await collect(ds)).map((b) => b.shape[0]),
      [4, 4, 4, 4, 2],
    );
  });

  it('labels() follow the pass order', async () => {
    const plain = await readCifar10(folder, { limit: 7 });
    assert.deepEqual(Array.from(await plain.labels()), [0, 1, 2, 3, 4, 5, 6]);
    const shuffled = await readCifar10(folder, { shuffle: true, seed: 3, limit: 9 });
    const ids = (await samplesOf(shuffled)).map(cifarId);
    assert.deepEqual(
      Array.from(await shuffled.labels()),
      ids.map((g) => g % 10),
    );
  });

  it('shuffle across files: seeded, each record once; limit takes the first of the same order', async () => {
    const ids = async (opts) => (await samplesOf(await readCifar10(folder, opts))).map(cifarId);
    const a = await ids({ shuffle: true, seed: 7, batchSize: 5 });
    const b = await ids({ shuffle: true, seed: 7, batchSize: 2 });
    const c = await ids({ shuffle: true, seed: 8 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.deepEqual(
      [...a].sort((x, y) => x - y),
      Array.from({ length: 18 }, (_, g) => g),
    );
    assert.deepEqual(
      [...c].sort((x, y) => x - y),
      [...a].sort((x, y) => x - y),
    );
    assert.deepEqual(await ids({ shuffle: true, seed: 7, limit: 5 }), a.slice(0, 5));
    assert.deepEqual(await ids({ shuffle: true, seed: 7, limit: 5, batchSize: 2, dropLast: true }), a.slice(0, 4));
  });

  it('normalize: cifar10 and { mean, std }', async () => {
    const file = path.join(folder, 'data_batch_2.bin');
    const mean = [0.4914, 0.4822, 0.4465];
    const std = [0.247, 0.2435, 0.2616];
    const [sample] = await samplesOf(await readCifar10(file, { normalize: 'cifar10', limit: 1 }));
    const expected = Array.from({ length: 3072 }, (_, p) => {
      const c = Math.floor(p / 1024);
      return (cifarPixel(5, p) / 255 - mean[c]) / std[c];
    });
    closeTo(sample, expected, 1e-5, 'cifar10');
    const [custom] = await samplesOf(await readCifar10(file, { normalize: { mean: [0.5], std: [0.25] }, limit: 1 }));
    closeTo(
      custom,
      Array.from({ length: 3072 }, (_, p) => (cifarPixel(5, p) / 255 - 0.5) / 0.25),
      1e-5,
      'custom',
    );
  });

  it('an early break and an error in the middle of a pass close every file', async () => {
    await leavesNothingOpen(async () => {
      const ds = await readCifar10(folder, { batchSize: 7, shuffle: true });
      for await (const batch of ds) {
        assert.equal(batch.shape[0], 7);
        break;
      }
    });
    const copy = path.join(tmp, 'shrinking');
    fs.mkdirSync(copy);
    fs.copyFileSync(path.join(folder, 'data_batch_1.bin'), path.join(copy, 'data_batch_1.bin'));
    fs.copyFileSync(path.join(folder, 'data_batch_2.bin'), path.join(copy, 'data_batch_2.bin'));
    await leavesNothingOpen(async () => {
      const ds = await readCifar10(copy, { batchSize: 3 });
      // The file shrinks after it was opened: the pass fails and still closes everything.
      fs.truncateSync(path.join(copy, 'data_batch_2.bin'), 3073 * 2 + 100);
      await assert.rejects(collect(ds), {
        code: 'ERR_DATA_TRUNCATED',
        message: /data_batch_2\.bin ends inside record 2/,
      });
    });
  });

  describe('errors', () => {
    it('a size that is not a multiple of 3073 names the file and record', async () => {
      const file = tmpFile('cut/data_batch_1.bin', cifarBytes(0, 4).subarray(0, 3073 * 3 + 10));
      await assert.rejects(readCifar10(file), {
        code: 'ERR_DATA_TRUNCATED',
        message: /data_batch_1\.bin ends inside record 3: CIFAR-10 records are 3073 bytes/,
      });
      await assert.rejects(readCifar10(path.dirname(file)), {
        code: 'ERR_DATA_TRUNCATED',
        message: /data_batch_1\.bin ends inside record 3/,
      });
    });

    it('an empty file', async () => {
      await assert.rejects(readCifar10(tmpFile('zero.bin', Buffer.alloc(0))), {
        code: 'ERR_DATA_FORMAT',
        message: /zero\.bin but it is empty/,
      });
    });

    it('a folder without batch files, or without the split asked for', async () => {
      await assert.rejects(readCifar10(path.join(FIXTURES, 'empty')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /CIFAR-10 binary batches .* in the folder .*empty but found none/,
      });
      const trainOnly = path.join(tmp, 'trainonly');
      tmpFile('trainonly/data_batch_1.bin', cifarBytes(0, 1));
      await assert.rejects(readCifar10(trainOnly, { split: 'test' }), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /\(test_batch\.bin\) in the folder .*trainonly/,
      });
    });

    it('a missing path', async () => {
      await assert.rejects(readCifar10(path.join(tmp, 'missing.bin')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /missing\.bin/,
      });
    });

    it('bad options', async () => {
      await assert.rejects(readCifar10(folder, { split: 'val' }), {
        code: 'ERR_INVALID_ARG',
        message: /Expected one of 'train', 'test', 'all' for options\.split but received "val"/,
      });
      await assert.rejects(readCifar10(folder, { normalize: 'cifar100' }), {
        code: 'ERR_INVALID_ARG',
        message: /options\.normalize but received "cifar100"/,
      });
      await assert.rejects(readCifar10(folder, { normalize: { mean: [0.5, 0.5], std: [0.2, 0.2] } }), {
        code: 'ERR_INVALID_ARG',
        message: /1 or 3 values per statistic for data with 3 channels but received \{ mean, std \} with 2/,
      });
      await assert.rejects(readCifar10(folder, { normalize: { mean: [0.5], std: [0] } }), {
        code: 'ERR_INVALID_ARG',
        message: /positive finite numbers for options\.normalize\.std/,
      });
      await assert.rejects(readCifar10(folder, { normalize: { mean: [0.5, 0.1, 0.2], std: [1] } }), {
        code: 'ERR_INVALID_ARG',
        message: /same length but received 3 and 1/,
      });
    });
  });
});

describe('data: IDX (MNIST)', () => {
  const N = 10;
  const H = 4;
  const W = 3;
  let plain;
  let gz;
  const expectedSample = (s) => Array.from({ length: H * W }, (_, p) => pixel(s * H * W + p) / 255);

  before(() => {
    plain = tmpFile('mnist/train-images-idx3-ubyte', mnistBytes(N, H, W));
    // The gzipped copy is named like a plain one: gzip is told by its magic bytes.
    gz = tmpFile('mnist/gz-images-idx3-ubyte', zlib.gzipSync(mnistBytes(N, H, W)));
  });

  it('ubyte N x H x W gives float32 [n, 1, H, W] in [0, 1]', async () => {
    const ds = await readIdx(plain, { batchSize: 4 });
    assert.equal(ds.format, 'idx');
    assert.equal(ds.dtype, 'float32');
    assert.deepEqual(ds.sampleShape, [1, H, W]);
    assert.equal(ds.describe(), 'train-images-idx3-ubyte: 10 samples of float32 [1, 4, 3]');
    const batches = await collect(ds);
    assert.deepEqual(
      batches.map((b) => b.shape),
      [
        [4, 1, H, W],
        [4, 1, H, W],
        [2, 1, H, W],
      ],
    );
    (await samplesOf(ds)).forEach((sample, s) => closeTo(sample, expectedSample(s), 1e-7, `sample ${s}`));
  });

  it('gzipped (by magic, not name) gives the same samples, streamed or shuffled', async () => {
    const plainSamples = await samplesOf(await readIdx(plain, { batchSize: 3 }));
    assert.deepEqual(await samplesOf(await readIdx(gz, { batchSize: 3 })), plainSamples);
    assert.deepEqual(await samplesOf(await readIdx(gz, { batchSize: 3, limit: 4 })), plainSamples.slice(0, 4));
    const opts = { batchSize: 3, shuffle: true, seed: 4 };
    const shuffledPlain = await samplesOf(await readIdx(plain, opts));
    await leavesNothingOpen(async () => {
      const shuffledGz = await readIdx(gz, opts);
      assert.deepEqual(await samplesOf(shuffledGz), shuffledPlain);
      assert.deepEqual(await samplesOf(shuffledGz), shuffledPlain);
    });
    assert.notDeepEqual(shuffledPlain, plainSamples);
    assert.deepEqual(
      [...shuffledPlain].sort((a, b) => a[0] - b[0] || a[1] - b[1]),
      [...plainSamples].sort((a, b) => a[0] - b[0] || a[1] - b[1]),
    );
  });

  it('an early break closes the file, the gzip stream and the temporary copy', async () => {
    await leavesNothingOpen(async () => {
      for (const opts of [{}, { shuffle: true }]) {
        for (const file of [plain, gz]) {
          const ds = await readIdx(file, { batchSize: 2, ...opts });
          for await (const batch of ds) {
            assert.equal(batch.shape[0], 2);
            break;
          }
        }
      }
    });
    // A temporary copy exists while a shuffled gzip pass runs.
    const ds = await readIdx(gz, { batchSize: 2, shuffle: true });
    const iterator = ds[Symbol.asyncIterator]();
    const before = tempLeft().length;
    await iterator.next();
    assert.equal(tempLeft().length, before + 1);
    await iterator.return();
    assert.equal(tempLeft().length, before);
  });

  it('normalize: mnist and { mean, std }', async () => {
    const [sample] = await samplesOf(await readIdx(plain, { normalize: 'mnist', limit: 1 }));
    closeTo(
      sample,
      expectedSample(0).map((x) => (x - 0.1307) / 0.3081),
      1e-5,
      'mnist',
    );
    const [custom] = await samplesOf(await readIdx(gz, { normalize: { mean: [0.5], std: [0.5] }, limit: 1 }));
    closeTo(
      custom,
      expectedSample(0).map((x) => (x - 0.5) / 0.5),
      1e-5,
      'custom',
    );
    await assert.rejects(readIdx(plain, { normalize: 'imagenet' }), {
      code: 'ERR_INVALID_ARG',
      message: /1 value per statistic for data with 1 channel but received 'imagenet' with 3/,
    });
  });

  it('other IDX types as float32, unscaled; N x D keeps its shape', async () => {
    const cases = [
      [0x09, 1, (b, at, v) => b.writeInt8(v, at), (i) => (i % 200) - 100],
      [0x0b, 2, (b, at, v) => b.writeInt16BE(v, at), (i) => i * 300 - 5000],
      [0x0c, 4, (b, at, v) => b.writeInt32BE(v, at), (i) => i * 100000 - 7],
      [0x0d, 4, (b, at, v) => b.writeFloatBE(v, at), (i) => i * 0.25 - 3],
      [0x0e, 8, (b, at, v) => b.writeDoubleBE(v, at), (i) => i * 0.5 - 1],
    ];
    for (const [type, bytes, write, value] of cases) {
      const file = tmpFile(
        `types/t${type}`,
        idxBytes(type, [3, 2, 2], bytes, (b, at, i) => write(b, at, value(i))),
      );
      const [batch] = await collect(await readIdx(file));
      assert.deepEqual(batch.shape, [3, 1, 2, 2]);
      assert.ok(batch.data instanceof Float32Array);
      assert.deepEqual(
        Array.from(batch.data),
        Array.from({ length: 12 }, (_, i) => Math.fround(value(i))),
        `type ${type}`,
      );
    }
    const flat = tmpFile(
      'types/flat',
      idxBytes(0x08, [4, 5], 1, (b, at, i) => b.writeUInt8(i, at)),
    );
    const ds = await readIdx(flat, { batchSize: 3 });
    assert.deepEqual(ds.sampleShape, [5]);
    assert.deepEqual(
      (await collect(ds)).map((b) => b.shape),
      [
        [3, 5],
        [1, 5],
      ],
    );
  });

  describe('errors', () => {
    it('a labels file', async () => {
      const labels = tmpFile(
        'mnist/train-labels-idx1-ubyte',
        idxBytes(0x08, [6], 1, (b, at, i) => b.writeUInt8(i, at)),
      );
      await assert.rejects(readIdx(labels), {
        code: 'ERR_DATA_FORMAT',
        message: /train-labels-idx1-ubyte is a labels file \(1 dimension: 6 labels\), not images/,
      });
      await assert.rejects(readIdx(tmpFile('mnist/labels.gz', zlib.gzipSync(fs.readFileSync(labels)))), {
        code: 'ERR_DATA_FORMAT',
        message: /labels\.gz \(after gunzip\) is a labels file/,
      });
    });

    it('a bad magic number or data type', async () => {
      const bad = Buffer.from(mnistBytes(2, 2, 2));
      bad[0] = 8;
      await assert.rejects(readIdx(tmpFile('mnist/bad-magic', bad)), {
        code: 'ERR_DATA_FORMAT',
        message: /Expected .*bad-magic to start with an IDX magic number \(00 00 type ndim\) but found 08 00 08 03/,
      });
      const badType = Buffer.from(mnistBytes(2, 2, 2));
      badType[2] = 0x0a;
      await assert.rejects(readIdx(tmpFile('mnist/bad-type', badType)), {
        code: 'ERR_DATA_FORMAT',
        message: /IDX data type .* in .*bad-type but found 0a/,
      });
      await assert.rejects(readIdx(tmpFile('mnist/bad.gz', Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6]))), {
        code: 'ERR_DATA_FORMAT',
        message: /bad\.gz to be valid gzip data/,
      });
    });

    it('a short file names the first incomplete record', async () => {
      const whole = mnistBytes(N, H, W);
      const header = 16;
      const cut = whole.subarray(0, header + 6 * H * W + 5);
      await assert.rejects(readIdx(tmpFile('mnist/short-idx3-ubyte', cut)), {
        code: 'ERR_DATA_TRUNCATED',
        message: /short-idx3-ubyte ends inside record 6: its header promises 10 records of 12 bytes/,
      });
      // A complete gzip stream of too little data, and a cut gzip stream.
      await assert.rejects(readIdx(tmpFile('mnist/short.gz', zlib.gzipSync(cut))), {
        code: 'ERR_DATA_TRUNCATED',
        message: /short\.gz ends inside record 6: .* after gunzip/,
      });
      const big = idxBytes(0x08, [400, 28, 28], 1, (b, at, i) => b.writeUInt8((i * 2654435761) >>> 24, at));
      const gzBig = zlib.gzipSync(big);
      await assert.rejects(readIdx(tmpFile('mnist/cut.gz', gzBig.subarray(0, gzBig.length >> 1))), {
        code: 'ERR_DATA_TRUNCATED',
        message: /cut\.gz ends inside record \d+:/,
      });
      await assert.rejects(readIdx(tmpFile('mnist/header-idx3', whole.subarray(0, 10))), {
        code: 'ERR_DATA_TRUNCATED',
        message: /header-idx3 ends inside its IDX header \(10 of 16 bytes\)/,
      });
    });

    // Found by test/fuzz/fuzz.js: the gzip trailer holds the size mod 2^32, so a
    // header promising 2^32 bytes more than the data passed the check, and a
    // pass then allocated a 1 GiB batch.
    it('a gzipped header that promises 4 GiB more than the data is ERR_DATA_TRUNCATED when opened', async () => {
      // 16 + 4 x 1073741827 = 2^32 + 28: the same as the 28 bytes there are, mod 2^32.
      const data = mnistBytes(1, 4, 3);
      const header = Buffer.from(data.subarray(0, 16));
      header.writeUInt32BE(4, 4);
      header.writeUInt32BE(1, 8);
      header.writeUInt32BE(1073741827, 12);
      const file = tmpFile('mnist/wraps.gz', zlib.gzipSync(Buffer.concat([header, data.subarray(16)])));
      await assert.rejects(readIdx(file, { batchSize: 1 }), {
        code: 'ERR_DATA_TRUNCATED',
        message:
          /wraps\.gz ends inside record 0: its header promises 4 records of 1073741827 bytes .* but it has 28 after gunzip/,
      });
    });

    it('a gzip file cut after it was opened fails the pass and leaves nothing open', async () => {
      const big = idxBytes(0x08, [400, 28, 28], 1, (b, at, i) => b.writeUInt8((i * 2654435761) >>> 24, at));
      const gzBig = zlib.gzipSync(big);
      for (const shuffle of [false, true]) {
        const file = tmpFile(`mnist/changing-${shuffle}.gz`, gzBig);
        await leavesNothingOpen(async () => {
          const ds = await readIdx(file, { batchSize: 50, shuffle });
          fs.writeFileSync(file, gzBig.subarray(0, gzBig.length >> 1));
          await assert.rejects(collect(ds), {
            code: 'ERR_DATA_TRUNCATED',
            message: new RegExp(`changing-${shuffle}\\.gz ends inside record \\d+: the gzip data is cut off`),
          });
        });
      }
    });

    it('a missing file', async () => {
      await assert.rejects(readIdx(path.join(tmp, 'nothing-idx3-ubyte')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /nothing-idx3-ubyte/,
      });
    });
  });
});

describe('data: image folders', () => {
  const images = path.join(FIXTURES, 'images');
  const { order, decoded } = manifest.images;

  /** PIL's decode of an image as C x H x W floats. */
  const pilChw = (name, key) => {
    const hwc = decoded[name][key];
    const h = hwc.length;
    const w = hwc[0].length;
    const c = key === 'gray' ? 1 : 3;
    const out = [];
    for (let ch = 0; ch < c; ch += 1)
      for (let y = 0; y < h; y += 1)
        for (let x = 0; x < w; x += 1) out.push((c === 1 ? hwc[y][x] : hwc[y][x][ch]) / 255);
    return out;
  };

  it('follows symbolic links to folders once, so a link to a parent does not loop', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-links-'));
    try {
      fs.cpSync(images, path.join(dir, 'imgs'), { recursive: true });
      fs.symlinkSync('..', path.join(dir, 'imgs', 'up'));
      fs.symlinkSync(path.join(dir, 'imgs'), path.join(dir, 'imgs', 'self'));
      const ds = await readImageFolder(path.join(dir, 'imgs'));
      assert.equal(ds.length, order.length);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes PNG, JPEG and WebP like PIL, in relative-path order, skipping dot-files and non-images', async () => {
    const ds = await readImageFolder(images, { batchSize: 4 });
    assert.equal(ds.format, 'images');
    assert.equal(ds.length, order.length);
    assert.deepEqual(order, ['a_red.png', 'alpha.PNG', 'b/c/blue.webp', 'b/green.jpg', 'gradient.png', 'gray.png']);
    assert.deepEqual(ds.sampleShape, [3, 8, 8]);
    assert.equal(ds.describe(), 'images: 6 samples of float32 [3, 8, 8]');
    const batches = await collect(ds);
    assert.deepEqual(
      batches.map((b) => b.shape),
      [
        [4, 3, 8, 8],
        [2, 3, 8, 8],
      ],
    );
    const samples = await samplesOf(ds);
    order.forEach((name, i) => {
      const tolerance = name.endsWith('.jpg') ? 3 / 255 : 1e-6;
      closeTo(samples[i], pilChw(name, 'rgb'), tolerance, name);
    });
    // Spot checks against plain numbers: red, alpha dropped, grey repeated.
    assert.equal(samples[0][0], 1);
    assert.equal(samples[0][64], 0);
    closeTo([samples[1][0], samples[1][64], samples[1][128]], [10 / 255, 20 / 255, 30 / 255], 1e-7, 'alpha');
    closeTo([samples[5][0], samples[5][64], samples[5][128]], [128 / 255, 128 / 255, 128 / 255], 1e-7, 'grey');
  });

  it('channels: 1 is PIL\'s convert("L")', async () => {
    const samples = await samplesOf(await readImageFolder(images, { channels: 1 }));
    order.forEach((name, i) => {
      const tolerance = name.endsWith('.jpg') ? 3 / 255 : 1e-6;
      closeTo(samples[i], pilChw(name, 'gray'), tolerance, name);
    });
  });

  it('normalize: imagenet and { mean, std }', async () => {
    const [red] = await samplesOf(await readImageFolder(images, { normalize: 'imagenet', limit: 1 }));
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (let c = 0; c < 3; c += 1) {
      const expected = ((c === 0 ? 1 : 0) - mean[c]) / std[c];
      closeTo(red.slice(c * 64, (c + 1) * 64), new Array(64).fill(expected), 1e-5, `channel ${c}`);
    }
    const [grey] = await samplesOf(
      await readImageFolder(images, { channels: 1, normalize: { mean: [0.5], std: [2] }, limit: 1 }),
    );
    closeTo(grey, new Array(64).fill((76 / 255 - 0.5) / 2), 1e-6, 'grey red');
  });

  it('resize (shorter side) + centerCrop, and resize [h, w], on solid colours', async () => {
    const shapes = path.join(FIXTURES, 'shapes');
    const colour = [200 / 255, 100 / 255, 50 / 255];
    const solid = (sample, h, w) =>
      closeTo(
        sample,
        colour.flatMap((v) => new Array(h * w).fill(v)),
        1e-6,
        `solid ${h}x${w}`,
      );
    const cropped = await readImageFolder(shapes, { resize: 4, centerCrop: 4 });
    assert.deepEqual(cropped.sampleShape, [3, 4, 4]);
    for (const sample of await samplesOf(cropped)) solid(sample, 4, 4);
    const exact = await readImageFolder(shapes, { resize: [5, 7] });
    assert.deepEqual(exact.sampleShape, [3, 5, 7]);
    const batches = await collect(exact);
    assert.deepEqual(batches[0].shape, [2, 3, 5, 7]);
    for (const sample of await samplesOf(exact)) solid(sample, 5, 7);
    const rect = await readImageFolder(shapes, { centerCrop: [2, 3] });
    assert.deepEqual(rect.sampleShape, [3, 2, 3]);
    for (const sample of await samplesOf(rect)) solid(sample, 2, 3);
    // tall.png (6 x 9) comes first: resize 4 makes it 4 wide and 6 high.
    const shorter = await readImageFolder(shapes, { resize: 4, limit: 1 });
    assert.deepEqual(shorter.sampleShape, [3, 6, 4]);
    for (const sample of await samplesOf(shorter)) solid(sample, 6, 4);
  });

  it('a centre crop larger than the image pads with black, as torchvision does', async () => {
    const [red] = await samplesOf(await readImageFolder(images, { centerCrop: 10, limit: 1 }));
    for (let y = 0; y < 10; y += 1) {
      for (let x = 0; x < 10; x += 1) {
        const inside = y >= 1 && y <= 8 && x >= 1 && x <= 8;
        assert.equal(red[y * 10 + x], inside ? 1 : 0, `red at ${y},${x}`);
        assert.equal(red[100 + y * 10 + x], 0, `green at ${y},${x}`);
      }
    }
  });

  it('Resize(6) + CenterCrop(4) is close to torchvision on a gradient', async function () {
    const reference = manifest.torchvisionResize6Crop4;
    if (reference === undefined) this.skip();
    const ds = await readImageFolder(images, { resize: 6, centerCrop: 4 });
    const samples = await samplesOf(ds);
    const index = order.indexOf(path.relative(images, path.join(FIXTURES, reference.file)));
    assert.deepEqual([...ds.sampleShape], reference.shape);
    // sharp's linear kernel is not PIL's bilinear to the last bit.
    closeTo(samples[index], reference.values, 0.02, 'gradient');
  });

  it('shuffle is seeded and visits every image once', async () => {
    const ids = async (opts) =>
      (await samplesOf(await readImageFolder(images, opts))).map((s) =>
        order.findIndex((name) => {
          const ref = pilChw(name, 'rgb');
          return s.every((v, i) => Math.abs(v - ref[i]) <= 3 / 255);
        }),
      );
    const a = await ids({ shuffle: true, seed: 11, batchSize: 4 });
    const b = await ids({ shuffle: true, seed: 11, batchSize: 1 });
    assert.deepEqual(a, b);
    assert.deepEqual(
      [...a].sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5],
    );
    assert.notDeepEqual(a, [0, 1, 2, 3, 4, 5]);
    assert.notDeepEqual(a, await ids({ shuffle: true, seed: 12 }));
  });

  describe('errors', () => {
    it('images of different sizes without resize or crop', async () => {
      const ds = await readImageFolder(path.join(FIXTURES, 'mixed'));
      await assert.rejects(collect(ds), {
        code: 'ERR_DATA_SHAPE',
        message: /Expected every image to be 8 wide and 8 high .* but .*b\.png is 10 wide and 6 high/,
      });
      const resized = await readImageFolder(path.join(FIXTURES, 'shapes'), { resize: 4 });
      await assert.rejects(collect(resized), {
        code: 'ERR_DATA_SHAPE',
        message: /4 wide and 6 high .* but .*wide\.png is 6 wide and 4 high after resize to 4/,
      });
    });

    it('an image that does not decode', async () => {
      const ds = await readImageFolder(path.join(FIXTURES, 'corrupt'), { batchSize: 1 });
      const iterator = ds[Symbol.asyncIterator]();
      assert.deepEqual((await iterator.next()).value.shape, [1, 3, 8, 8]);
      await assert.rejects(iterator.next(), {
        code: 'ERR_IMAGE_DECODE',
        message: /Could not decode the image .*b_bad\.png/,
      });
      // The first image is read when the folder is opened (for the size).
      const onlyBad = path.join(tmp, 'only-bad');
      fs.mkdirSync(onlyBad);
      fs.copyFileSync(path.join(FIXTURES, 'corrupt', 'b_bad.png'), path.join(onlyBad, 'bad.png'));
      await assert.rejects(readImageFolder(onlyBad), { code: 'ERR_IMAGE_DECODE', message: /only-bad.*bad\.png/ });
    });

    it('a folder without images, a file, a missing path', async () => {
      await assert.rejects(readImageFolder(path.join(FIXTURES, 'empty')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /Found no images \(\.jpg, \.jpeg, \.png, \.webp\) in the folder .*empty/,
      });
      await assert.rejects(readImageFolder(path.join(images, 'a_red.png')), {
        code: 'ERR_DATA_FORMAT',
        message: /folder of images at .*a_red\.png but found a file/,
      });
      await assert.rejects(readImageFolder(path.join(tmp, 'no-such-folder')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /no-such-folder/,
      });
    });

    it('bad options', async () => {
      const cases = [
        [{ resize: 0 }, /positive integer or \[height, width\] .* for options\.resize but received 0/],
        [{ resize: [4] }, /options\.resize but received an array/],
        [{ centerCrop: '4' }, /options\.centerCrop but received "4"/],
        [{ channels: 2 }, /Expected 1 or 3 for options\.channels but received 2/],
        [{ channels: 1, normalize: 'imagenet' }, /data with 1 channel but received 'imagenet' with 3/],
        [{ normalize: { mean: 'a', std: [1] } }, /non-empty array of finite numbers for options\.normalize\.mean/],
      ];
      for (const [options, message] of cases) {
        await assert.rejects(readImageFolder(images, options), { code: 'ERR_INVALID_ARG', message });
      }
      // A one-value preset applies to every channel.
      const ds = await readImageFolder(images, { normalize: 'mnist', limit: 1 });
      const [red] = await samplesOf(ds);
      closeTo([red[0], red[64]], [(1 - 0.1307) / 0.3081, (0 - 0.1307) / 0.3081], 1e-5, 'mnist on RGB');
    });
  });
});

describe('data: openDataset', () => {
  let cifarFolder;
  before(() => {
    cifarFolder = path.join(tmp, 'open-cifar');
    tmpFile('open-cifar/test_batch.bin', cifarBytes(0, 3));
    tmpFile('open/t10k-images-idx3-ubyte', mnistBytes(5, 2, 2));
    tmpFile('open/t10k-images-idx3-ubyte.gz', zlib.gzipSync(mnistBytes(5, 2, 2)));
    tmpFile('open/batch.bin', cifarBytes(0, 2));
    tmpFile('open/noext', fs.readFileSync(npy('values_uint8.npy')));
    tmpFile('open/notes.txt', 'hello there');
    tmpFile('open/archive.gz', zlib.gzipSync(Buffer.from('not idx at all')));
  });

  it('picks the reader from the path', async () => {
    const cases = [
      [npy('values_float32.npy'), 'npy', [2, 3]],
      [path.join(tmp, 'open', 'noext'), 'npy', [2, 3]],
      [path.join(tmp, 'open', 'batch.bin'), 'cifar10', [3, 32, 32]],
      [cifarFolder, 'cifar10', [3, 32, 32]],
      [path.join(tmp, 'open', 't10k-images-idx3-ubyte'), 'idx', [1, 2, 2]],
      [path.join(tmp, 'open', 't10k-images-idx3-ubyte.gz'), 'idx', [1, 2, 2]],
      [path.join(FIXTURES, 'images'), 'images', [3, 8, 8]],
    ];
    for (const [target, format, sampleShape] of cases) {
      const ds = await openDataset(target, { batchSize: 2 });
      assert.equal(ds.format, format, target);
      assert.deepEqual([...ds.sampleShape], sampleShape, target);
      assert.equal(ds.batchSize, 2);
      assert.ok((await collect(ds)).length > 0);
    }
  });

  it('passes each reader its options and ignores those that do not apply', async () => {
    const ds = await openDataset(npy('values_float32.npy'), {
      resize: 4,
      normalize: 'imagenet',
      split: 'test',
      limit: 3,
    });
    assert.equal(ds.length, 3);
    assert.equal(ds.dtype, 'float32');
    const images = await openDataset(path.join(FIXTURES, 'shapes'), { resize: [3, 3], split: 'train' });
    assert.deepEqual([...images.sampleShape], [3, 3, 3]);
    const cifar = await openDataset(cifarFolder, { split: 'test', normalize: 'cifar10', channels: 1 });
    assert.equal(cifar.length, 3);
  });

  describe('errors', () => {
    it('a missing path', async () => {
      await assert.rejects(openDataset(path.join(tmp, 'gone')), {
        code: 'ERR_DATA_NOT_FOUND',
        message: /Expected a data file or folder at .*gone but found nothing there/,
      });
    });

    it('an unknown file lists the formats supported', async () => {
      for (const name of ['notes.txt', 'archive.gz']) {
        await assert.rejects(openDataset(path.join(tmp, 'open', name)), {
          code: 'ERR_DATA_FORMAT',
          message: new RegExp(
            `\\.npy file, an \\.npz archive, a CIFAR-10 .* IDX image file .* JPEG/PNG/WebP images but .*${name}`,
          ),
        });
      }
    });

    it('options are checked even where they do not apply', async () => {
      await assert.rejects(openDataset(npy('values_float32.npy'), { resize: -1 }), {
        code: 'ERR_INVALID_ARG',
        message: /options\.resize/,
      });
      await assert.rejects(openDataset(npy('values_float32.npy'), { split: 'x' }), {
        code: 'ERR_INVALID_ARG',
        message: /options\.split/,
      });
    });
  });
});

describe('data: a file that shrinks during a pass', () => {
  // The file is cut (fs.truncate) after the first batch was yielded; the pass
  // goes on, must fail with ERR_DATA_TRUNCATED naming the file and the first
  // record it cannot read, and must close what it opened.
  async function shrinkDuringPass(file, open, cutTo, record, yielded) {
    await leavesNothingOpen(async () => {
      const ds = await open();
      let batches = 0;
      await assert.rejects(
        (async () => {
          for await (const batch of ds) {
            assert.ok(batch.shape[0] > 0);
            batches += 1;
            if (batches === 1) await fs.promises.truncate(file, cutTo);
          }
        })(),
        (error) => {
          assert.equal(error.code, 'ERR_DATA_TRUNCATED');
          assert.ok(error.message.includes(file), error.message);
          const at = Number(/ends inside record (\d+)/.exec(error.message)?.[1]);
          assert.ok(record(at), `record ${at} in: ${error.message}`);
          return true;
        },
      );
      if (yielded === undefined) assert.ok(batches >= 1);
      else assert.equal(batches, yielded, 'the batches before the one that holds the cut');
    });
  }

  for (const shuffle of [false, true]) {
    const how = shuffle ? 'shuffled' : 'in file order';
    // File order fails at the record the cut is in; a shuffled pass at whichever
    // cut-off record its next batch reads first.
    const inside = (cut) => (shuffle ? (r) => r >= cut && r < 10 : (r) => r === cut);
    const before = (n) => (shuffle ? undefined : n);

    it(`.npy, ${how}`, async () => {
      // values_float32.npy: a 128-byte header, then 10 records of 24 bytes.
      const file = tmpFile(`shrink/values-${shuffle}.npy`, fs.readFileSync(npy('values_float32.npy')));
      const options = { batchSize: 3, shuffle, seed: 2 };
      await shrinkDuringPass(file, () => readNpy(file, options), 128 + 24 * 5 + 7, inside(5), before(1));
    });

    it(`IDX (plain), ${how}`, async () => {
      // 16 header bytes, then 10 records of 4 x 3 bytes.
      const file = tmpFile(`shrink/images-${shuffle}-idx3-ubyte`, mnistBytes(10, 4, 3));
      const options = { batchSize: 3, shuffle, seed: 3 };
      await shrinkDuringPass(file, () => readIdx(file, options), 16 + 12 * 6 + 5, inside(6), before(2));
    });

    it(`CIFAR-10, ${how}`, async () => {
      const file = tmpFile(`shrink/cifar-${shuffle}/data_batch_1.bin`, cifarBytes(0, 10));
      const options = { batchSize: 2, shuffle, seed: 4 };
      await shrinkDuringPass(file, () => readCifar10(file, options), 3073 * 4 + 100, inside(4), before(2));
      // A folder: the second file shrinks.
      const folder = path.join(tmp, `shrink/cifar-folder-${shuffle}`);
      tmpFile(`shrink/cifar-folder-${shuffle}/data_batch_1.bin`, cifarBytes(0, 2));
      const second = tmpFile(`shrink/cifar-folder-${shuffle}/data_batch_2.bin`, cifarBytes(2, 8));
      await shrinkDuringPass(second, () => readCifar10(folder, options), 3073 * 3, inside(3), before(2));
    });
  }
  it('a shuffled batch that fails in one file opens no other file after the pass closed', async () => {
    // A batch's reads run at once. Records 3 and 4 follow each other across
    // files b and c, so one read goes on into c (not yet opened) after reading
    // b; meanwhile record 1 of the cut file a fails the batch. The reader used
    // to open c after it had been closed, leaving a descriptor to the garbage
    // collector. Big records give the race time; it is run several times.
    const { RecordReader } = require('../dist/data/records');
    const record = 1 << 20;
    const files = ['a', 'b', 'c'].map((name) => tmpFile(`race/${name}.bin`, Buffer.alloc(2 * record, 1)));
    fs.truncateSync(files[0], record + 10);
    const layout = {
      segments: files.map((file) => ({ file, label: file, offset: 0, count: 2 })),
      recordBytes: record,
      sampleShape: [record],
      decode: (raw) => raw,
    };
    await leavesNothingOpen(async () => {
      for (let i = 0; i < 10; i += 1) {
        const reader = new RecordReader(layout, Uint32Array.from([1, 3, 4, 0, 2, 5]));
        await assert.rejects(reader.read(0, 3), { code: 'ERR_DATA_TRUNCATED', message: /a\.bin ends inside record 1/ });
        await reader.close();
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (openFds() !== undefined) {
          const left = fs.readdirSync('/proc/self/fd').filter((fd) => {
            try {
              return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(path.join(tmp, 'race'));
            } catch {
              return false;
            }
          });
          assert.deepEqual(left, [], `pass ${i} left a file open`);
        }
      }
    });
  });
});

describe('data: Dataset.batches(start), a pass that resumes', () => {
  const same = async (iterable, expected, what) => {
    const got = [];
    for await (const batch of iterable) got.push(batch);
    assert.equal(got.length, expected.length, `${what}: batches`);
    got.forEach((batch, i) => {
      assert.deepEqual(batch.shape, expected[i].shape, `${what}: shape of batch ${i}`);
      assert.equal(batch.dtype, expected[i].dtype, `${what}: dtype of batch ${i}`);
      assert.deepEqual(Array.from(batch.data), Array.from(expected[i].data), `${what}: batch ${i}`);
    });
  };

  /** Byte ranges [position, position + length) that FileHandle reads ask for while `body` runs. */
  async function readsDuring(body) {
    const probe = await fs.promises.open(npy('values_float32.npy'), 'r');
    const proto = Object.getPrototypeOf(probe);
    await probe.close();
    const original = proto.read;
    const reads = [];
    proto.read = function read(buffer, offset, length, position) {
      reads.push([position, position + length]);
      return original.apply(this, arguments);
    };
    try {
      await body();
    } finally {
      proto.read = original;
    }
    return reads;
  }

  it('yields the batches of a full pass from batch `start` on, with shuffle, limit and dropLast', async () => {
    const file = npy('values_int64.npy');
    const variants = [
      { batchSize: 3 },
      { batchSize: 3, shuffle: true, seed: 9 },
      { batchSize: 4, limit: 7 },
      { batchSize: 3, shuffle: true, seed: 2, limit: 8, dropLast: true },
      { batchSize: 1 },
    ];
    for (const options of variants) {
      const ds = await readNpy(file, options);
      const full = await collect(ds);
      assert.equal(full.length, ds.batchCount);
      for (let start = 0; start <= ds.batchCount + 2; start += 1) {
        await same(ds.batches(start), full.slice(start), `${JSON.stringify(options)} from ${start}`);
      }
    }
  });

  it('every reader: CIFAR-10 across files, IDX plain and gzipped, image folders', async () => {
    const cifar = path.join(tmp, 'resume-cifar');
    tmpFile('resume-cifar/data_batch_1.bin', cifarBytes(0, 5));
    tmpFile('resume-cifar/data_batch_2.bin', cifarBytes(5, 4));
    const idx = tmpFile('resume/images-idx3-ubyte', mnistBytes(11, 4, 3));
    const gz = tmpFile('resume/images-idx3-ubyte.gz', zlib.gzipSync(mnistBytes(11, 4, 3)));
    const sources = [
      () => readCifar10(cifar, { batchSize: 2 }),
      () => readCifar10(cifar, { batchSize: 2, shuffle: true, seed: 3 }),
      () => readIdx(idx, { batchSize: 3 }),
      () => readIdx(gz, { batchSize: 3 }),
      () => readIdx(gz, { batchSize: 3, shuffle: true, seed: 1, dropLast: true }),
      () => readImageFolder(path.join(FIXTURES, 'images'), { batchSize: 2 }),
      () => readImageFolder(path.join(FIXTURES, 'images'), { batchSize: 4, shuffle: true, seed: 5 }),
    ];
    for (const open of sources) {
      const ds = await open();
      const full = await collect(ds);
      await leavesNothingOpen(async () => {
        for (let start = 0; start <= ds.batchCount + 1; start += 1) {
          await same(ds.batches(start), full.slice(start), `${ds.name} ${ds.shuffle} from ${start}`);
        }
      });
    }
  });

  it('does not read the records it skips', async () => {
    // values_float32.npy: records of 24 bytes from byte 128 on; batches of 3.
    const ds = await readNpy(npy('values_float32.npy'), { batchSize: 3 });
    const reads = await readsDuring(async () => {
      await collect(ds.batches(2));
    });
    assert.ok(reads.length > 0);
    for (const [from] of reads) assert.ok(from >= 128 + 6 * 24, `a read at byte ${from}, before record 6`);

    const plain = tmpFile('resume/skip-idx3-ubyte', mnistBytes(10, 4, 3));
    const shuffled = await readIdx(plain, { batchSize: 2, shuffle: true, seed: 8 });
    const order = (await collect(shuffled)).map((b) => Array.from(b.data));
    const skipped = new Set();
    // Which records the first three batches hold: each sample's first pixel names it.
    for (const sample of order.slice(0, 3).flatMap((b) => [b.slice(0, 12), b.slice(12)])) {
      skipped.add(
        Array.from({ length: 10 }, (_, s) => s).find((s) => Math.abs(pixel(s * 12) / 255 - sample[0]) < 1e-7),
      );
    }
    const shuffledReads = await readsDuring(async () => {
      await collect(shuffled.batches(3));
    });
    for (const [from, to] of shuffledReads) {
      for (const s of skipped) {
        const [a, b] = [16 + 12 * s, 16 + 12 * (s + 1)];
        assert.ok(to <= a || from >= b, `a read of bytes ${from}-${to} touches skipped record ${s}`);
      }
    }
  });

  it('a start at or past batchCount yields nothing and opens nothing; each iteration is a fresh pass', async () => {
    const ds = await readNpy(npy('values_float32.npy'), { batchSize: 4 });
    await leavesNothingOpen(async () => {
      const reads = await readsDuring(async () => {
        assert.deepEqual(await collect(ds.batches(3)), []);
        assert.deepEqual(await collect(ds.batches(1000)), []);
      });
      assert.deepEqual(reads, []);
    });
    const resumed = ds.batches(1);
    const first = await collect(resumed);
    const second = await collect(resumed);
    assert.equal(first.length, 2);
    assert.deepEqual(
      second.map((b) => Array.from(b.data)),
      first.map((b) => Array.from(b.data)),
    );
  });

  it('an early break or a file cut mid-pass closes everything', async () => {
    const gz = tmpFile('resume/break-idx3-ubyte.gz', zlib.gzipSync(mnistBytes(12, 4, 3)));
    await leavesNothingOpen(async () => {
      for (const options of [{}, { shuffle: true }]) {
        for (const file of [npy('values_float64.npy'), gz]) {
          const ds = await openDataset(file, { batchSize: 2, ...options });
          for await (const batch of ds.batches(1)) {
            assert.equal(batch.shape[0], 2);
            break;
          }
        }
      }
    });
    const file = tmpFile('resume/cut.npy', fs.readFileSync(npy('values_float32.npy')));
    const ds = await readNpy(file, { batchSize: 2 });
    await leavesNothingOpen(async () => {
      fs.truncateSync(file, 128 + 24 * 5);
      await assert.rejects(collect(ds.batches(2)), {
        code: 'ERR_DATA_TRUNCATED',
        message: /cut\.npy ends inside record 5/,
      });
    });
  });

  it('a start that is not a non-negative safe integer is ERR_INVALID_ARG, when called', () => {
    return (async () => {
      const ds = await readNpy(npy('values_float32.npy'));
      const cases = [
        [-1, RangeError, /Expected a non-negative safe integer for start but received -1/],
        [2 ** 53, RangeError, /non-negative safe integer for start but received 9007199254740992/],
        [1.5, TypeError, /Expected a non-negative integer for start but received 1\.5/],
        [NaN, TypeError, /received NaN/],
        ['2', TypeError, /received "2"/],
        [undefined, TypeError, /received undefined/],
        [2n, TypeError, /received 2/],
      ];
      for (const [start, Kind, message] of cases) {
        assert.throws(
          () => ds.batches(start),
          (error) => {
            assert.ok(error instanceof Kind, `${String(start)}: ${error.name}`);
            assert.equal(error.code, 'ERR_INVALID_ARG');
            assert.match(error.message, message);
            return true;
          },
        );
      }
    })();
  });
});

describe('data: feeding CKA.compare', () => {
  it('an .npy reader gives the same CKA as the same batches built by hand', async () => {
    const { CKA, loadModel } = require('../dist');
    const model = await loadModel(path.join(__dirname, 'fixtures', 'convnet_traced.pt'));
    const layers = ['stem', 'block2', 'fc'];
    const dataset = await readNpy(npy('convnet_input.npy'), { batchSize: 8 });
    assert.deepEqual([...dataset.sampleShape], [3, 8, 8]);
    const fromReader = new CKA(model, model, {
      model1Name: 'a',
      model2Name: 'b',
      model1Layers: layers,
      model2Layers: layers,
    });
    const summary = await fromReader.compare(dataset);
    assert.equal(summary.samples, 24);
    assert.equal(summary.batches, 3);

    // The formula of test/fixtures/generate/make-data-fixtures.py, batch by batch.
    const sample = 3 * 8 * 8;
    const batches = [0, 1, 2].map((b) => ({
      data: Float32Array.from({ length: 8 * sample }, (_, k) => {
        const i = b * 8 * sample + k;
        return ((i * 7919) % 1000) / 1000 - 0.5;
      }),
      shape: [8, 3, 8, 8],
    }));
    const byHand = new CKA(model, model, {
      model1Name: 'a',
      model2Name: 'b',
      model1Layers: layers,
      model2Layers: layers,
    });
    await byHand.compare(batches);
    assert.deepEqual(fromReader.export().cka, byHand.export().cka);
    const diagonal = fromReader.export().cka.map((row, i) => row[i]);
    for (const v of diagonal) assert.ok(Math.abs(v - 1) < 1e-6, `diagonal ${v}`);
    model.dispose();
  });
});

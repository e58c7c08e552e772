'use strict';
// Readers stream: memory held while reading a data set many times larger than
// a batch stays near one batch. Measured in a child process started with
// --expose-gc, so that collected batches are not counted.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const MB = 1024 * 1024;
const SAMPLES = 12000;
const FEATURES = 1000; // 4,000 bytes a float32 sample: 48 MB in all

function writeNpy(file) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${SAMPLES}, ${FEATURES}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
  prefix.writeUInt16LE(header.length, 8);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, Buffer.concat([prefix, Buffer.from(header, 'latin1')]));
  const chunk = Buffer.alloc(1000 * FEATURES * 4, 1);
  for (let i = 0; i < SAMPLES / 1000; i += 1) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
}

function writeIdxGz(file) {
  // 12000 images of 64 x 64 ubyte: 48 MB once decompressed.
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(SAMPLES, 4);
  header.writeUInt32BE(64, 8);
  header.writeUInt32BE(64, 12);
  const body = Buffer.alloc(SAMPLES * 64 * 64, 7);
  fs.writeFileSync(file, zlib.gzipSync(Buffer.concat([header, body]), { level: 1 }));
}

const SCRIPT = `
const { openDataset } = require(${JSON.stringify(path.join(__dirname, '..', 'dist'))});
(async () => {
  const [file, shuffle] = [process.argv[1], process.argv[2] === 'shuffle'];
  const data = await openDataset(file, { batchSize: 100, shuffle });
  gc();
  const base = process.memoryUsage();
  let peak = 0, batches = 0, bytes = 0;
  for await (const batch of data) {
    batches += 1;
    bytes = Math.max(bytes, batch.data.byteLength);
    gc();
    const now = process.memoryUsage();
    peak = Math.max(peak, now.arrayBuffers - base.arrayBuffers + now.heapUsed - base.heapUsed);
  }
  console.log(JSON.stringify({ peak, batches, bytes }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe('data: readers stream', function () {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-stream-'));
    writeNpy(path.join(dir, 'big.npy'));
    writeIdxGz(path.join(dir, 'big-images-idx3-ubyte.gz'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases = [
    ['a 48 MB .npy in file order', 'big.npy', ''],
    ['a 48 MB .npy shuffled', 'big.npy', 'shuffle'],
    ['a gzipped IDX file of 48 MB decompressed', 'big-images-idx3-ubyte.gz', ''],
    ['a gzipped IDX file, shuffled (through a temporary file)', 'big-images-idx3-ubyte.gz', 'shuffle'],
  ];
  for (const [title, name, mode] of cases) {
    it(`holds a few batches, not the data set: ${title}`, () => {
      const out = execFileSync(process.execPath, ['--expose-gc', '-e', SCRIPT, path.join(dir, name), mode], {
        encoding: 'utf8',
      });
      const { peak, batches, bytes } = JSON.parse(out);
      assert.equal(batches, SAMPLES / 100);
      // A float32 batch of 100 samples is 400 KB (npy) or 1.6 MB (64x64 IDX); the data set 48 MB.
      assert.ok(
        peak < 8 * MB,
        `peak extra memory ${(peak / MB).toFixed(1)} MB for batches of ${(bytes / MB).toFixed(2)} MB`,
      );
    });
  }
});

'use strict';
// Inputs of the fuzzing harness (test/fuzz/fuzz.js): seeded generators of
// damaged .npy, .npz, IDX, CIFAR-10 and TorchScript files, and a small zip reader and
// writer for the model archives. Everything a case needs follows from
// (target, seed, case index): generateCase() gives the same bytes and options
// in the parent (which saves the input of a finding) and in the child (which
// runs the case).
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');

const FIXTURES = path.join(__dirname, '..', 'fixtures');

// ---------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small seeded uniform generator in [0, 1). */
function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** murmur3's 32-bit finaliser. */
function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hashString(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The generator of one case: independent of every other case. */
class Rng {
  constructor(seed, target, index) {
    const s = Number(seed);
    const folded = ((s % 4294967296) ^ Math.floor(s / 4294967296)) >>> 0;
    this.next = mulberry32(fmix32(fmix32(folded ^ hashString(target)) ^ Math.imul(index + 1, 0x9e3779b1)));
  }

  /** An integer in [0, n). */
  int(n) {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo, hi) {
    return lo + this.int(hi - lo + 1);
  }

  chance(p) {
    return this.next() < p;
  }

  pick(list) {
    return list[this.int(list.length)];
  }

  /** Picks a key of `{ key: weight }`. */
  weighted(table) {
    const entries = Object.entries(table);
    let r = this.next() * entries.reduce((a, [, w]) => a + w, 0);
    for (const [key, w] of entries) {
      r -= w;
      if (r < 0) return key;
    }
    return entries[entries.length - 1][0];
  }

  bytes(n) {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i += 1) out[i] = this.int(256);
    return out;
  }

  /** A 32-bit seed for a generator of its own (batch data, ...). */
  seed() {
    return this.int(4294967296);
  }
}

// ---------------------------------------------------------------------------
// Byte-level mutations

const INTERESTING8 = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];
const INTERESTING16 = [0, 0xffff, 0x7fff, 0x8000, 0x0100, 0x00ff, 1, 0xfffe];
const INTERESTING32 = [0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0xfffffffe, 0x10000, 0xffff, 0x100, 64, 0x40000000];

/** A position, biased towards the start of the file where the headers are. */
function position(rng, length) {
  if (length === 0) return 0;
  return rng.chance(0.5) ? rng.int(Math.min(length, 160)) : rng.int(length);
}

/** One random byte-level mutation; returns the new bytes and what was done. */
function mutateOnce(rng, input) {
  const buf = Buffer.from(input);
  const n = buf.length;
  const op = n === 0 ? rng.pick(['insert', 'extend']) : rng.weighted(MUTATIONS);
  const at = position(rng, n);
  switch (op) {
    case 'bitflip': {
      const flips = rng.range(1, 4);
      for (let k = 0; k < flips; k += 1) {
        const p = k === 0 ? at : position(rng, n);
        buf[p] ^= 1 << rng.int(8);
      }
      return { bytes: buf, op: `bitflip x${flips} @${at}` };
    }
    case 'byte': {
      const value = rng.pick(INTERESTING8);
      buf[at] = value;
      return { bytes: buf, op: `byte @${at} = 0x${value.toString(16)}` };
    }
    case 'word': {
      const wide = rng.chance(0.5) && at + 4 <= n;
      const big = rng.chance(0.5);
      if (wide) {
        const value = rng.pick(INTERESTING32);
        if (big) buf.writeUInt32BE(value, at);
        else buf.writeUInt32LE(value, at);
        return { bytes: buf, op: `u32${big ? 'be' : 'le'} @${at} = 0x${value.toString(16)}` };
      }
      if (at + 2 > n) return { bytes: buf, op: 'word (no room)' };
      const value = rng.pick(INTERESTING16);
      if (big) buf.writeUInt16BE(value, at);
      else buf.writeUInt16LE(value, at);
      return { bytes: buf, op: `u16${big ? 'be' : 'le'} @${at} = 0x${value.toString(16)}` };
    }
    case 'random': {
      const len = Math.min(rng.range(1, 16), n - at);
      rng.bytes(len).copy(buf, at);
      return { bytes: buf, op: `random ${len} @${at}` };
    }
    case 'insert': {
      const len = rng.chance(0.8) ? rng.range(1, 16) : rng.range(17, 4096);
      const chunk = rng.chance(0.5) || n === 0 ? rng.bytes(len) : buf.subarray(rng.int(n), rng.int(n) + len);
      return {
        bytes: Buffer.concat([buf.subarray(0, at), chunk, buf.subarray(at)]),
        op: `insert ${chunk.length} @${at}`,
      };
    }
    case 'delete': {
      const len = Math.min(rng.chance(0.8) ? rng.range(1, 16) : rng.range(17, 4096), n - at);
      return { bytes: Buffer.concat([buf.subarray(0, at), buf.subarray(at + len)]), op: `delete ${len} @${at}` };
    }
    case 'duplicate': {
      const len = Math.min(rng.range(1, 256), n - at);
      const chunk = buf.subarray(at, at + len);
      const to = rng.int(n + 1);
      return {
        bytes: Buffer.concat([buf.subarray(0, to), chunk, buf.subarray(to)]),
        op: `duplicate ${len} @${at} to ${to}`,
      };
    }
    case 'truncate': {
      const to = rng.chance(0.3) ? Math.max(0, n - rng.range(1, 8)) : rng.int(n);
      return { bytes: buf.subarray(0, to), op: `truncate to ${to}` };
    }
    case 'extend': {
      const len = rng.chance(0.7) ? rng.range(1, 64) : rng.range(65, 8192);
      const tail = rng.chance(0.5) ? Buffer.alloc(len) : rng.bytes(len);
      return { bytes: Buffer.concat([buf, tail]), op: `extend ${len}` };
    }
    default:
      throw new Error(`unknown mutation ${op}`);
  }
}

const MUTATIONS = {
  bitflip: 4,
  byte: 4,
  word: 3,
  random: 2,
  insert: 2,
  delete: 2,
  duplicate: 1,
  truncate: 2,
  extend: 1,
};

/** One to a few stacked byte-level mutations. */
function mutateBytes(rng, input) {
  let bytes = input;
  const ops = [];
  const count = rng.chance(0.6) ? 1 : rng.range(2, 5);
  for (let k = 0; k < count; k += 1) {
    const step = mutateOnce(rng, bytes);
    bytes = step.bytes;
    ops.push(step.op);
  }
  return { bytes: Buffer.from(bytes), ops };
}

// ---------------------------------------------------------------------------
// CRC-32 (IEEE, as zip and gzip use it). Node 20's zlib has no crc32.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------
// Zip archives (what torch.jit.save writes): read every entry, write them back.

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;

/**
 * The entries of a zip archive, `{ name, method, data }` with `data`
 * uncompressed, in central-directory order. Zip64 archives whose sizes fit in
 * 32 bits (PyTorch writes the zip64 end records anyway) are read through the
 * plain end record.
 */
function readZip(buffer) {
  let end = -1;
  for (let i = buffer.length - 22; i >= Math.max(0, buffer.length - 22 - 65535); i -= 1) {
    if (buffer.readUInt32LE(i) === END) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error('no end of central directory record');
  const count = buffer.readUInt16LE(end + 10);
  let at = buffer.readUInt32LE(end + 16);
  const entries = [];
  for (let k = 0; k < count; k += 1) {
    if (buffer.readUInt32LE(at) !== CENTRAL) throw new Error(`bad central directory entry ${k}`);
    const method = buffer.readUInt16LE(at + 10);
    const compressedSize = buffer.readUInt32LE(at + 20);
    const nameLength = buffer.readUInt16LE(at + 28);
    const extraLength = buffer.readUInt16LE(at + 30);
    const commentLength = buffer.readUInt16LE(at + 32);
    const local = buffer.readUInt32LE(at + 42);
    const name = buffer.toString('utf8', at + 46, at + 46 + nameLength);
    if (buffer.readUInt32LE(local) !== LOCAL) throw new Error(`bad local header of ${name}`);
    const start = local + 30 + buffer.readUInt16LE(local + 26) + buffer.readUInt16LE(local + 28);
    const raw = buffer.subarray(start, start + compressedSize);
    const data = method === 8 ? zlib.inflateRawSync(raw) : Buffer.from(raw);
    entries.push({ name, method, data });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/**
 * A zip archive of `{ name, method, data }` entries (method 0: stored, 8:
 * deflated) with correct CRCs and sizes. Like PyTorch's writer, it pads the
 * local headers with an extra field so that each entry's data starts at a
 * multiple of 64 bytes.
 */
function writeZip(entries) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const data = entry.method === 8 ? zlib.deflateRawSync(entry.data) : entry.data;
    const crc = crc32(entry.data);
    const pad = (64 - ((offset + 30 + name.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad, 'Z');
    extra.writeUInt16LE(0x4246, 0); // "FB", as PyTorch names its padding
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(entry.method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(entry.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    parts.push(local, name, extra, data);
    const record = Buffer.alloc(46);
    record.writeUInt32LE(CENTRAL, 0);
    record.writeUInt16LE(20, 4);
    record.writeUInt16LE(20, 6);
    record.writeUInt16LE(0, 8);
    record.writeUInt16LE(entry.method, 10);
    record.writeUInt32LE(crc, 16);
    record.writeUInt32LE(data.length, 20);
    record.writeUInt32LE(entry.data.length, 24);
    record.writeUInt16LE(name.length, 28);
    record.writeUInt32LE(offset, 42);
    central.push(record, name);
    offset += local.length + name.length + extra.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}

// ---------------------------------------------------------------------------
// Pickles (protocol 2, as TorchScript archives hold them): a walk over the
// opcodes that finds the integers and strings to change.

/** Argument layout of the opcodes the walk knows: a byte count, or 'line' / 'line2' / 'len1' / 'len4'. */
const OPCODES = {
  0x80: 1, // PROTO
  0x2e: 0, // STOP
  0x28: 0, // MARK
  0x29: 0, // EMPTY_TUPLE
  0x5d: 0, // EMPTY_LIST
  0x7d: 0, // EMPTY_DICT
  0x4e: 0, // NONE
  0x88: 0, // NEWTRUE
  0x89: 0, // NEWFALSE
  0x74: 0, // TUPLE
  0x85: 0, // TUPLE1
  0x86: 0, // TUPLE2
  0x87: 0, // TUPLE3
  0x52: 0, // REDUCE
  0x62: 0, // BUILD
  0x75: 0, // SETITEMS
  0x73: 0, // SETITEM
  0x65: 0, // APPENDS
  0x61: 0, // APPEND
  0x51: 0, // BINPERSID
  0x81: 0, // NEWOBJ
  0x30: 0, // POP
  0x31: 0, // POP_MARK
  0x32: 0, // DUP
  0x71: 1, // BINPUT
  0x72: 4, // LONG_BINPUT
  0x68: 1, // BINGET
  0x6a: 4, // LONG_BINGET
  0x4b: 1, // BININT1
  0x4d: 2, // BININT2
  0x4a: 4, // BININT
  0x47: 8, // BINFLOAT
  0x63: 'line2', // GLOBAL
  0x58: 'len4', // BINUNICODE
  0x54: 'len4', // BINSTRING
  0x42: 'len4', // BINBYTES
  0x55: 'len1', // SHORT_BINSTRING
  0x43: 'len1', // SHORT_BINBYTES
  0x8c: 'len1', // SHORT_BINUNICODE
  0x8a: 'len1', // LONG1
};

/** The opcodes of a pickle: `{ at, op, arg, argAt, argLength }`; stops at STOP or an unknown opcode. */
function walkPickle(bytes) {
  const ops = [];
  let at = 0;
  while (at < bytes.length) {
    const op = bytes[at];
    const shape = OPCODES[op];
    if (shape === undefined) break;
    let argAt = at + 1;
    let argLength;
    if (typeof shape === 'number') {
      argLength = shape;
    } else if (shape === 'len1') {
      argAt = at + 2;
      argLength = bytes[at + 1] ?? 0;
    } else if (shape === 'len4') {
      argAt = at + 5;
      argLength = at + 5 <= bytes.length ? bytes.readUInt32LE(at + 1) : 0;
    } else {
      const first = bytes.indexOf(0x0a, argAt);
      const second = first < 0 ? -1 : bytes.indexOf(0x0a, first + 1);
      if (second < 0) break;
      argLength = second + 1 - argAt;
    }
    if (argAt + argLength > bytes.length) break;
    ops.push({ at, op, argAt, argLength, end: argAt + argLength });
    at = argAt + argLength;
    if (op === 0x2e) break;
  }
  return ops;
}

const PICKLE_INTS = [0, 1, 2, 3, 4, 7, 255, 256, 65535, 65536, 0x7fffffff, -1, -2, -0x80000000, 1 << 20, 100000000];
const PICKLE_STRINGS = [
  '',
  'a',
  'storage',
  'cpu',
  'cuda',
  'FloatStorage',
  'LongStorage',
  'HalfStorage',
  'torch._utils._rebuild_tensor_v2',
  '__torch__.Nope',
  'forward',
  'training',
  '0',
  '99',
  'x'.repeat(300),
];

function binint(value) {
  const out = Buffer.alloc(5);
  out[0] = 0x4a;
  out.writeInt32LE(value | 0, 1);
  return out;
}

function unicode(text) {
  const body = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(5);
  out[0] = 0x58;
  out.writeUInt32LE(body.length, 1);
  return Buffer.concat([out, body]);
}

/** One opcode-aware mutation of a pickle; falls back to byte mutations when the walk finds nothing. */
function mutatePickle(rng, bytes) {
  const ops = walkPickle(bytes);
  if (ops.length < 2) return mutateBytes(rng, bytes);
  const splice = (from, to, insert) => Buffer.concat([bytes.subarray(0, from), insert, bytes.subarray(to)]);
  const ints = ops.filter((o) => o.op === 0x4b || o.op === 0x4d || o.op === 0x4a);
  const strings = ops.filter((o) => o.op === 0x58 || o.op === 0x8c || o.op === 0x55 || o.op === 0x54);
  const memo = ops.filter((o) => o.op === 0x68 || o.op === 0x6a || o.op === 0x71 || o.op === 0x72);
  const kind = rng.weighted({ int: 5, string: 3, length: 2, memo: 2, drop: 2, duplicate: 1, swap: 2, opcode: 1 });
  if (kind === 'int' && ints.length > 0) {
    const o = rng.pick(ints);
    const value = rng.chance(0.7) ? rng.pick(PICKLE_INTS) : rng.int(4294967296) | 0;
    return { bytes: splice(o.at, o.end, binint(value)), ops: [`pickle int @${o.at} = ${value}`] };
  }
  if (kind === 'string' && strings.length > 0) {
    const o = rng.pick(strings);
    const text = rng.pick(PICKLE_STRINGS);
    return {
      bytes: splice(o.at, o.end, unicode(text)),
      ops: [`pickle string @${o.at} = ${JSON.stringify(text.slice(0, 20))}`],
    };
  }
  if (kind === 'length' && strings.length > 0) {
    const o = rng.pick(strings);
    const out = Buffer.from(bytes);
    const value = rng.pick([0, 1, 0x7fffffff, 0xffffffff, 0x80000000, o.argLength + 1, Math.max(0, o.argLength - 1)]);
    if (o.op === 0x58 || o.op === 0x54) out.writeUInt32LE(value >>> 0, o.at + 1);
    else out[o.at + 1] = value & 0xff;
    return { bytes: out, ops: [`pickle length @${o.at} = ${value >>> 0}`] };
  }
  if (kind === 'memo' && memo.length > 0) {
    const o = rng.pick(memo);
    const out = Buffer.from(bytes);
    const value = rng.pick([0, 1, 255, 0xffffffff, 0x7fffffff, rng.int(64)]);
    if (o.argLength === 1) out[o.argAt] = value & 0xff;
    else out.writeUInt32LE(value >>> 0, o.argAt);
    return { bytes: out, ops: [`pickle memo @${o.at} = ${value >>> 0}`] };
  }
  const o = rng.pick(ops);
  if (kind === 'drop') return { bytes: splice(o.at, o.end, Buffer.alloc(0)), ops: [`pickle drop op @${o.at}`] };
  if (kind === 'duplicate') {
    return { bytes: splice(o.end, o.end, bytes.subarray(o.at, o.end)), ops: [`pickle duplicate op @${o.at}`] };
  }
  if (kind === 'swap') {
    const p = rng.pick(ops);
    const [a, b] = o.at < p.at ? [o, p] : [p, o];
    if (a === b || a.end > b.at)
      return { bytes: splice(a.at, a.end, Buffer.alloc(0)), ops: [`pickle drop op @${a.at}`] };
    const out = Buffer.concat([
      bytes.subarray(0, a.at),
      bytes.subarray(b.at, b.end),
      bytes.subarray(a.end, b.at),
      bytes.subarray(a.at, a.end),
      bytes.subarray(b.end),
    ]);
    return { bytes: out, ops: [`pickle swap ops @${a.at} and @${b.at}`] };
  }
  // Another opcode in place of this one (its argument bytes then read as opcodes, or the reverse).
  const out = Buffer.from(bytes);
  const codes = Object.keys(OPCODES).map(Number);
  out[o.at] = rng.chance(0.8) ? rng.pick(codes) : rng.int(256);
  return { bytes: out, ops: [`pickle opcode @${o.at} = 0x${out[o.at].toString(16)}`] };
}

// ---------------------------------------------------------------------------
// TorchScript source text

const TEXT_NUMBERS = [
  '0',
  '1',
  '-1',
  '2',
  '3',
  '1000000',
  '2147483647',
  '9223372036854775807',
  '-9223372036854775808',
  '1e308',
  '0.0',
  '1.5',
];
const TEXT_BITS = [
  '(',
  ')',
  '[',
  ']',
  ':',
  ',',
  '.',
  '=',
  '+',
  '-',
  '*',
  '/',
  ' ',
  '\n',
  '\t',
  '#',
  '"',
  "'",
  '\\',
  '_',
];

function mutateText(rng, bytes) {
  const text = bytes.toString('latin1');
  const lines = text.split('\n');
  const kind = rng.weighted({ number: 4, identifier: 4, line: 3, char: 2, truncate: 1, bytes: 1 });
  if (kind === 'number' || kind === 'identifier') {
    const pattern = kind === 'number' ? /\b\d+(\.\d+)?\b/g : /\b[A-Za-z_][A-Za-z0-9_]*\b/g;
    const found = [...text.matchAll(pattern)];
    if (found.length > 0) {
      const m = rng.pick(found);
      const pool = kind === 'number' ? TEXT_NUMBERS : found.map((f) => f[0]);
      const value = rng.pick(pool);
      const out = text.slice(0, m.index) + value + text.slice(m.index + m[0].length);
      return { bytes: Buffer.from(out, 'latin1'), ops: [`text ${kind} @${m.index} ${m[0]} -> ${value}`] };
    }
  }
  if (kind === 'line' && lines.length > 1) {
    const i = rng.int(lines.length);
    const j = rng.int(lines.length);
    const how = rng.pick(['delete', 'duplicate', 'swap']);
    if (how === 'delete') lines.splice(i, 1);
    else if (how === 'duplicate') lines.splice(j, 0, lines[i]);
    else [lines[i], lines[j]] = [lines[j], lines[i]];
    return { bytes: Buffer.from(lines.join('\n'), 'latin1'), ops: [`text line ${how} ${i} ${j}`] };
  }
  if (kind === 'char' && text.length > 0) {
    const at = rng.int(text.length);
    const bit = rng.pick(TEXT_BITS);
    const out = rng.chance(0.5)
      ? text.slice(0, at) + bit + text.slice(at)
      : text.slice(0, at) + bit + text.slice(at + 1);
    return { bytes: Buffer.from(out, 'latin1'), ops: [`text char @${at} ${JSON.stringify(bit)}`] };
  }
  if (kind === 'truncate') {
    const to = rng.int(bytes.length + 1);
    return { bytes: bytes.subarray(0, to), ops: [`text truncate to ${to}`] };
  }
  return mutateBytes(rng, bytes);
}

// ---------------------------------------------------------------------------
// .npy

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
const NPY_DESCRS = { '<f4': 4, '<f8': 8, '|u1': 1, '<u1': 1, '<i8': 8 };
const NPY_OTHER_DESCRS = ['>f4', '<f2', '|b1', '<i4', '<c8', '|O', '<U4', '|V4', "[('a', '<f4')]", '', 'f4', "'"];
const NPY_DIMS = [
  '0',
  '1',
  '2',
  '3',
  '7',
  '255',
  '65536',
  '2147483647',
  '2147483648',
  '4294967296',
  '1000000000000',
  '9007199254740991',
  '9007199254740993',
  '18446744073709551616',
  '-1',
  '-2147483648',
  '3L',
  '2.5',
  '1e3',
  '0x10',
  'None',
  "'a'",
  '',
  ' ',
];

/** A .npy file: header dict text padded to 64 bytes (version 1, 2 or 3), then the data. */
function npyFile({ version = 1, dict, data, pad = true }) {
  const lengthBytes = version === 1 ? 2 : 4;
  let header = dict;
  if (pad) {
    const total = 6 + 2 + lengthBytes + header.length + 1;
    header += ' '.repeat((64 - (total % 64)) % 64);
  }
  header += '\n';
  const body = Buffer.from(header, version === 3 ? 'utf8' : 'latin1');
  const prefix = Buffer.alloc(8 + lengthBytes);
  NPY_MAGIC.copy(prefix, 0);
  prefix[6] = version;
  prefix[7] = 0;
  if (version === 1) prefix.writeUInt16LE(Math.min(body.length, 0xffff), 8);
  else prefix.writeUInt32LE(body.length, 8);
  return Buffer.concat([prefix, body, data]);
}

const npyDict = (descr, fortran, shape) =>
  `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;

/** The parts of a .npy file that parse: { version, descr, fortran, shape, data }, or null. */
function parseNpy(bytes) {
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(NPY_MAGIC)) return null;
  const version = bytes[6];
  const lengthBytes = version === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) return null;
  const headerLength = version === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = 8 + lengthBytes;
  const text = bytes.toString('latin1', start, Math.min(bytes.length, start + headerLength));
  const descr = /'descr':\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(\w+)/.exec(text)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) return null;
  return {
    version,
    descr,
    fortran,
    shape: shape
      .split(',')
      .map((d) => d.trim())
      .filter((d) => d.length > 0),
    data: bytes.subarray(start + headerLength),
  };
}

let npySeedCache;
function npySeeds() {
  if (npySeedCache) return npySeedCache;
  const seeds = [];
  const dir = path.join(FIXTURES, 'data', 'npy');
  for (const name of fs.readdirSync(dir).sort()) {
    seeds.push({ name, bytes: fs.readFileSync(path.join(dir, name)) });
  }
  // Small generated arrays of every supported dtype, a few shapes, all three versions.
  const rng = new Rng(1, 'npy-seeds', 0);
  const shapes = [[5], [4, 3], [3, 2, 2], [6, 1, 2, 2], [0, 3], [2, 1], [9, 5]];
  for (const descr of Object.keys(NPY_DESCRS)) {
    for (const shape of shapes) {
      const version = rng.pick([1, 1, 2, 3]);
      const data = rng.bytes(shape.reduce((a, b) => a * b, NPY_DESCRS[descr]));
      seeds.push({
        name: `gen${descr}${shape.join('x')}v${version}`,
        bytes: npyFile({ version, dict: npyDict(descr, 'False', shape), data }),
      });
    }
  }
  npySeedCache = seeds;
  return seeds;
}

/** A header-aware .npy mutation: one header field changed, the data resized to fit (sometimes). */
function mutateNpyHeader(rng, seed) {
  const parsed = parseNpy(seed) ?? {
    version: 1,
    descr: '<f4',
    fortran: 'False',
    shape: ['4', '3'],
    data: rng.bytes(48),
  };
  let { version, descr, fortran, shape, data } = parsed;
  shape = [...shape];
  const ops = [];
  const field = rng.weighted({ shape: 6, descr: 2, fortran: 1, dict: 2, version: 1, length: 2 });
  if (field === 'shape') {
    const how = rng.weighted({ dim: 4, tuple: 2, drop: 1, add: 1 });
    if (how === 'dim' && shape.length > 0) shape[rng.int(shape.length)] = rng.pick(NPY_DIMS);
    else if (how === 'tuple') shape = Array.from({ length: rng.int(6) }, () => rng.pick(NPY_DIMS.slice(0, 16)));
    else if (how === 'drop') shape.splice(rng.int(Math.max(1, shape.length)), 1);
    else shape.splice(rng.int(shape.length + 1), 0, rng.pick(NPY_DIMS));
    ops.push(`npy shape (${shape.join(', ')})`);
  } else if (field === 'descr') {
    descr = rng.chance(0.5) ? rng.pick(Object.keys(NPY_DESCRS)) : rng.pick(NPY_OTHER_DESCRS);
    ops.push(`npy descr ${descr}`);
  } else if (field === 'fortran') {
    fortran = rng.pick(['True', 'False', '1', 'None', 'false', '']);
    ops.push(`npy fortran_order ${fortran}`);
  } else if (field === 'version') {
    version = rng.pick([0, 1, 2, 3, 4, 255]);
    ops.push(`npy version ${version}`);
  }
  let dict = `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  if (field === 'dict') {
    const how = rng.pick(['drop-key', 'dup-key', 'reorder', 'extra-key', 'garbage', 'quotes', 'nested']);
    if (how === 'drop-key')
      dict = dict.replace(rng.pick([/'descr': '[^']*', /, /'fortran_order': \w*, /, /'shape': \([^)]*\), /]), '');
    else if (how === 'dup-key') dict = dict.replace('}', `'shape': (${rng.pick(NPY_DIMS)},), }`);
    else if (how === 'reorder')
      dict = `{'shape': (${shape.join(', ')},), 'fortran_order': ${fortran}, 'descr': '${descr}'}`;
    else if (how === 'extra-key') dict = dict.replace('{', "{'extra': [1, 2, {'shape': (1,)}], ");
    else if (how === 'garbage') dict = rng.bytes(rng.range(0, 80)).toString('latin1');
    else if (how === 'quotes') dict = dict.replace(/'/g, '"');
    else dict = dict.replace(`'shape': (`, `'shape': ((1, 2), `);
    ops.push(`npy dict ${how}`);
  }
  // Often give the data the length the new header asks for, so the reader gets past the size check.
  const itemBytes = NPY_DESCRS[descr] ?? 4;
  const dims = shape.map(Number);
  const total = dims.reduce((a, b) => a * b, itemBytes);
  if (rng.chance(0.6) && Number.isSafeInteger(total) && total >= 0 && total <= 1 << 13) {
    const extra = rng.chance(0.7) ? 0 : rng.range(-3, 3);
    const want = Math.max(0, total + extra);
    data = want <= data.length ? data.subarray(0, want) : Buffer.concat([data, rng.bytes(want - data.length)]);
    ops.push(`npy data ${want} bytes`);
  }
  let bytes = npyFile({ version: version >= 1 && version <= 3 ? version : 1, dict, data, pad: rng.chance(0.9) });
  if (version < 1 || version > 3) bytes[6] = version;
  if (field === 'length') {
    const lengthBytes = bytes[6] === 1 ? 2 : 4;
    const actual = lengthBytes === 2 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
    const value = rng.pick([0, 1, actual - 1, actual + 1, actual + 64, 0xffff, 0xffffffff, 0x7fffffff, 1 << 20]);
    if (lengthBytes === 2) bytes.writeUInt16LE(Math.max(0, Math.min(0xffff, value)), 8);
    else bytes.writeUInt32LE(Math.max(0, value) >>> 0, 8);
    ops.push(`npy header length ${value}`);
  }
  return { bytes, ops };
}

// ---------------------------------------------------------------------------
// .npz (a zip of .npy arrays, as np.savez and np.savez_compressed write it)

/**
 * An .npz archive of `{ name, method, data }` entries (data uncompressed;
 * method 0 stored, 8 deflated, any other number written as is with the data
 * stored) with correct CRCs and sizes, and where each structure is:
 * `{ bytes, locals: [offset], centrals: [offset], end, end64 }`. With
 * `zip64`, every size and offset goes in zip64 extra fields and zip64 end
 * records, as Python's zipfile writes them past 4 GiB.
 */
function writeNpzArchive(entries, { zip64 = false } = {}) {
  const parts = [];
  const central = [];
  const locals = [];
  const centralAt = [];
  let offset = 0;
  let directoryLength = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const data = entry.method === 8 ? zlib.deflateRawSync(entry.data) : entry.data;
    const crc = entry.crc ?? crc32(entry.data);
    const big = (value) => (zip64 ? 0xffffffff : value);
    const extra64 = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (zip64) {
      extra64.writeUInt16LE(1, 0);
      extra64.writeUInt16LE(16, 2);
      extra64.writeBigUInt64LE(BigInt(entry.data.length), 4);
      extra64.writeBigUInt64LE(BigInt(data.length), 12);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt16LE(entry.method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(big(data.length), 18);
    local.writeUInt32LE(big(entry.data.length), 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra64.length, 28);
    locals.push(offset);
    parts.push(local, name, extra64, data);
    const cextra = zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (zip64) {
      cextra.writeUInt16LE(1, 0);
      cextra.writeUInt16LE(24, 2);
      cextra.writeBigUInt64LE(BigInt(entry.data.length), 4);
      cextra.writeBigUInt64LE(BigInt(data.length), 12);
      cextra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const record = Buffer.alloc(46);
    record.writeUInt32LE(CENTRAL, 0);
    record.writeUInt16LE(zip64 ? 45 : 20, 4);
    record.writeUInt16LE(zip64 ? 45 : 20, 6);
    record.writeUInt16LE(entry.method, 10);
    record.writeUInt32LE(crc, 16);
    record.writeUInt32LE(big(data.length), 20);
    record.writeUInt32LE(big(entry.data.length), 24);
    record.writeUInt16LE(name.length, 28);
    record.writeUInt16LE(cextra.length, 30);
    record.writeUInt32LE(big(offset), 42);
    central.push(record, name, cextra);
    offset += local.length + name.length + extra64.length + data.length;
    directoryLength += record.length + name.length + cextra.length;
  }
  for (let k = 0, at = offset; k < entries.length; k += 1) {
    centralAt.push(at);
    at += central[3 * k].length + central[3 * k + 1].length + central[3 * k + 2].length;
  }
  const tail = [];
  let end64 = -1;
  if (zip64) {
    end64 = offset + directoryLength;
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0);
    record.writeBigUInt64LE(44n, 4);
    record.writeUInt16LE(45, 12);
    record.writeUInt16LE(45, 14);
    record.writeBigUInt64LE(BigInt(entries.length), 24);
    record.writeBigUInt64LE(BigInt(entries.length), 32);
    record.writeBigUInt64LE(BigInt(directoryLength), 40);
    record.writeBigUInt64LE(BigInt(offset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(end64), 8);
    locator.writeUInt32LE(1, 16);
    tail.push(record, locator);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END, 0);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(zip64 ? 0xffffffff : directoryLength, 12);
  end.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  const bytes = Buffer.concat([...parts, ...central, ...tail, end]);
  return { bytes, locals, centrals: centralAt, end: bytes.length - 22, end64 };
}

let npzSeedCache;
/** Seeds: the .npz fixtures (as bytes), and entry lists to re-zip: theirs and generated ones. */
function npzSeeds() {
  if (npzSeedCache) return npzSeedCache;
  const dir = path.join(FIXTURES, 'data', 'npz');
  const files = ['text.npz', 'text_stored.npz', 'zip64.npz'].map((name) => ({
    name,
    bytes: fs.readFileSync(path.join(dir, name)),
  }));
  const lists = [];
  for (const name of ['text.npz', 'text_stored.npz']) {
    lists.push({ name, entries: readZip(fs.readFileSync(path.join(dir, name))) });
  }
  const rng = new Rng(1, 'npz-seeds', 0);
  const tails = [[], [3], [2, 2], [1, 4]];
  for (let k = 0; k < 12; k += 1) {
    const n = rng.pick([1, 2, 3, 5, 9]);
    const count = rng.range(1, 3);
    const method = rng.pick([0, 8]);
    const entries = [];
    for (let a = 0; a < count; a += 1) {
      const descr = rng.pick(Object.keys(NPY_DESCRS));
      const shape = [n, ...rng.pick(tails)];
      const data = rng.bytes(shape.reduce((x, y) => x * y, NPY_DESCRS[descr]));
      const version = rng.pick([1, 1, 2, 3]);
      entries.push({
        name: `arr_${a}.npy`,
        method,
        data: npyFile({ version, dict: npyDict(descr, 'False', shape), data }),
      });
    }
    lists.push({ name: `gen${k}`, entries });
  }
  npzSeedCache = { files, lists };
  return npzSeedCache;
}

const NPZ_NAMES = ['x.npy', 'input_ids.npy', 'arr_0.npy', 'a/', 'notes.txt', '', 'a.npy.npy', '\u00e9.npy', '../x.npy'];

/** An entry-level .npz mutation: an array's .npy header or bytes, or the entries themselves; re-zipped. */
function mutateNpzEntries(rng, seed) {
  const entries = seed.entries.map((e) => ({ ...e }));
  const ops = [];
  const i = rng.int(entries.length);
  const kind = rng.weighted({
    header: 6,
    bytes: 2,
    length: 2,
    remove: 1,
    rename: 1,
    duplicate: 1,
    reorder: 1,
    method: 2,
    crc: 1,
    add: 1,
  });
  if (kind === 'header') {
    const m = mutateNpyHeader(rng, entries[i].data);
    entries[i].data = m.bytes;
    ops.push(`${entries[i].name}: ${m.ops.join(', ')}`);
  } else if (kind === 'bytes') {
    const m = mutateBytes(rng, entries[i].data);
    entries[i].data = m.bytes;
    ops.push(`${entries[i].name}: ${m.ops.join(', ')}`);
  } else if (kind === 'length') {
    // Another first dimension (records cut or added), the data fitted to it.
    const parsed = parseNpy(entries[i].data);
    if (parsed !== null && parsed.shape.length > 0) {
      const shape = [String(Math.max(0, Number(parsed.shape[0]) + rng.pick([-2, -1, 1, 3]))), ...parsed.shape.slice(1)];
      const record = parsed.shape
        .slice(1)
        .map(Number)
        .reduce((a, b) => a * b, NPY_DESCRS[parsed.descr] ?? 4);
      const want = Math.max(0, Number(shape[0]) * record);
      const data =
        want <= parsed.data.length
          ? parsed.data.subarray(0, want)
          : Buffer.concat([parsed.data, rng.bytes(want - parsed.data.length)]);
      entries[i].data = npyFile({ version: parsed.version, dict: npyDict(parsed.descr, parsed.fortran, shape), data });
      ops.push(`${entries[i].name}: first dimension ${shape[0]}`);
    } else ops.push('length (not parsed)');
  } else if (kind === 'remove') {
    ops.push(`remove ${entries[i].name}`);
    entries.splice(i, 1);
  } else if (kind === 'rename') {
    const name = rng.pick(NPZ_NAMES);
    ops.push(`rename ${entries[i].name} -> ${JSON.stringify(name)}`);
    entries[i].name = name;
  } else if (kind === 'duplicate') {
    entries.splice(rng.int(entries.length + 1), 0, { ...entries[i] });
    ops.push(`duplicate ${entries[i].name}`);
  } else if (kind === 'reorder') {
    for (let k = entries.length - 1; k > 0; k -= 1) {
      const j = rng.int(k + 1);
      [entries[k], entries[j]] = [entries[j], entries[k]];
    }
    ops.push('shuffle entries');
  } else if (kind === 'method') {
    entries[i].method = rng.pick([0, 8, 8, 1, 12, 14, 99, 0xffff]);
    ops.push(`${entries[i].name}: method ${entries[i].method}`);
  } else if (kind === 'crc') {
    entries[i].crc = (crc32(entries[i].data) ^ (1 << rng.int(32))) >>> 0;
    ops.push(`${entries[i].name}: wrong CRC`);
  } else {
    entries.splice(rng.int(entries.length + 1), 0, {
      name: rng.pick(NPZ_NAMES),
      method: rng.pick([0, 8]),
      data: rng.bytes(rng.int(64)),
    });
    ops.push('add an entry');
  }
  const zip64 = rng.chance(0.15);
  if (zip64) ops.push('zip64');
  return { ...writeNpzArchive(entries, { zip64 }), ops };
}

/** A zip-structure mutation: one field of a local header, a directory entry or an end record set to an odd value. */
function mutateNpzStructure(rng, archive) {
  const bytes = Buffer.from(archive.bytes);
  const where = rng.weighted({ central: 5, local: 4, end: 2, end64: archive.end64 >= 0 ? 2 : 0, deflate: 3 });
  const value32 = () => rng.pick([...INTERESTING32, rng.int(bytes.length + 64), bytes.length]);
  const value16 = () => rng.pick([...INTERESTING16, rng.int(64)]);
  const set = (at, size, value) => {
    if (at < 0 || at + size > bytes.length) return;
    if (size === 2) bytes.writeUInt16LE(value & 0xffff, at);
    else if (size === 4) bytes.writeUInt32LE(value >>> 0, at);
    else bytes.writeBigUInt64LE(BigInt(value), at);
  };
  let op;
  if (where === 'central' && archive.centrals.length > 0) {
    const at = rng.pick(archive.centrals);
    const [field, off, size] = rng.pick([
      ['signature', 0, 4],
      ['flags', 8, 2],
      ['method', 10, 2],
      ['crc', 16, 4],
      ['compressed size', 20, 4],
      ['size', 24, 4],
      ['name length', 28, 2],
      ['extra length', 30, 2],
      ['comment length', 32, 2],
      ['disk', 34, 2],
      ['local offset', 42, 4],
    ]);
    const value = size === 2 ? value16() : value32();
    set(at + off, size, value);
    op = `central ${field} ${value}`;
  } else if (where === 'local' && archive.locals.length > 0) {
    const at = rng.pick(archive.locals);
    const [field, off, size] = rng.pick([
      ['signature', 0, 4],
      ['flags', 6, 2],
      ['method', 8, 2],
      ['name length', 26, 2],
      ['extra length', 28, 2],
      ['compressed size', 18, 4],
      ['name byte', 30, 1],
    ]);
    if (size === 1) {
      if (at + off < bytes.length) bytes[at + off] ^= 0x20;
    } else set(at + off, size, size === 2 ? value16() : value32());
    op = `local ${field}`;
  } else if (where === 'end') {
    const [field, off, size] = rng.pick([
      ['disk', 4, 2],
      ['entries on disk', 8, 2],
      ['entries', 10, 2],
      ['directory size', 12, 4],
      ['directory offset', 16, 4],
      ['comment length', 20, 2],
    ]);
    const value = size === 2 ? value16() : value32();
    set(archive.end + off, size, value);
    op = `end ${field} ${value}`;
  } else if (where === 'end64') {
    const [field, off] = rng.pick([
      ['entries', 32],
      ['directory size', 40],
      ['directory offset', 48],
      ['locator offset', 56 + 8],
    ]);
    const value = rng.pick([0, 1, 2, 0xffffffff, 2 ** 40, Number.MAX_SAFE_INTEGER, rng.int(bytes.length + 64)]);
    set(archive.end64 + off, 8, value);
    op = `end64 ${field} ${value}`;
  } else {
    // Inside a member's data (a deflate stream when it is deflated): flip bytes, sizes and CRC left as they are.
    const at = archive.locals.length > 0 ? rng.pick(archive.locals) : 0;
    const start = at + 30 + (at + 30 <= bytes.length ? bytes.readUInt16LE(at + 26) + bytes.readUInt16LE(at + 28) : 0);
    const count = rng.range(1, 6);
    for (let k = 0; k < count; k += 1) {
      const p = start + rng.int(96);
      if (p < bytes.length) bytes[p] ^= 1 << rng.int(8);
    }
    op = `member data ${count} bit flips`;
  }
  return { bytes, ops: [op ?? `${where} (none)`] };
}

// ---------------------------------------------------------------------------
// IDX

const IDX_TYPES = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };

function idxFile(type, dims, data) {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = type;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d >>> 0, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

let idxSeedCache;
function idxSeeds() {
  if (idxSeedCache) return idxSeedCache;
  const rng = new Rng(1, 'idx-seeds', 0);
  const seeds = [];
  const shapes = [
    [6, 4, 3],
    [5, 7],
    [4, 3, 2, 2],
    [3, 1, 1],
    [0, 2, 2],
    [10, 28, 28],
    [2, 3, 2, 2, 2],
  ];
  for (const [type, bytes] of Object.entries(IDX_TYPES)) {
    for (const dims of shapes) {
      const data = rng.bytes(dims.reduce((a, b) => a * b, bytes));
      seeds.push({ name: `idx${type}-${dims.join('x')}`, bytes: idxFile(Number(type), dims, data) });
    }
  }
  idxSeedCache = seeds;
  return seeds;
}

const IDX_DIMS = [0, 1, 2, 3, 4, 28, 255, 256, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, 1000000];

function mutateIdxHeader(rng, seed) {
  const type = seed[2];
  let ndim = seed[3];
  const dims = Array.from({ length: ndim }, (_, i) =>
    4 + 4 * i + 4 <= seed.length ? seed.readUInt32BE(4 + 4 * i) : 1,
  );
  let data = seed.subarray(Math.min(seed.length, 4 + 4 * ndim));
  let newType = type;
  const ops = [];
  const field = rng.weighted({ dim: 5, type: 2, ndim: 2 });
  if (field === 'dim' && dims.length > 0) {
    const i = rng.int(dims.length);
    dims[i] = rng.chance(0.7) ? rng.pick(IDX_DIMS) : Math.max(0, dims[i] + rng.range(-2, 2));
    ops.push(`idx dim ${i} = ${dims[i]}`);
  } else if (field === 'type') {
    newType = rng.chance(0.7)
      ? rng.pick(Object.keys(IDX_TYPES).map(Number))
      : rng.pick([0x00, 0x0a, 0x0f, 0xff, rng.int(256)]);
    ops.push(`idx type 0x${newType.toString(16)}`);
  } else {
    ndim = rng.pick([0, 1, 2, 3, 4, 5, 8, 255, rng.int(256)]);
    while (dims.length < ndim) dims.push(rng.pick(IDX_DIMS.slice(0, 9)));
    dims.length = Math.min(dims.length, ndim);
    ops.push(`idx ndim ${ndim}`);
  }
  const itemBytes = IDX_TYPES[newType] ?? 1;
  const total = dims.reduce((a, b) => a * b, itemBytes);
  if (rng.chance(0.6) && total <= 1 << 13) {
    const want = Math.max(0, total + (rng.chance(0.7) ? 0 : rng.range(-3, 3)));
    data = want <= data.length ? data.subarray(0, want) : Buffer.concat([data, rng.bytes(want - data.length)]);
    ops.push(`idx data ${want} bytes`);
  }
  return { bytes: idxFile(newType, dims, data), ops };
}

/** A gzip variant of IDX bytes: gzip of (maybe mutated) data, damaged gzip, a forged trailer, two members, header flags. */
function gzipVariant(rng, plain, ops) {
  const level = rng.pick([0, 1, 6, 9]);
  const how = rng.weighted({ plain: 4, bytes: 3, trailer: 2, members: 1, flags: 1 });
  const gz = zlib.gzipSync(plain, { level });
  if (how === 'plain') {
    ops.push(`gzip level ${level}`);
    return gz;
  }
  if (how === 'bytes') {
    const m = mutateBytes(rng, gz);
    ops.push('gzip', ...m.ops);
    return m.bytes;
  }
  if (how === 'trailer') {
    // The reader trusts ISIZE when it equals the size the header promises.
    const out = Buffer.from(gz);
    const field = rng.pick(['isize', 'crc', 'both']);
    if (field !== 'crc')
      out.writeUInt32LE(
        rng.pick([0, 0xffffffff, (plain.length + rng.range(-4, 4)) >>> 0, rng.int(4294967296)]),
        out.length - 4,
      );
    if (field !== 'isize') out.writeUInt32LE(rng.int(4294967296), out.length - 8);
    ops.push(`gzip forged ${field}`);
    return out;
  }
  if (how === 'members') {
    const cut = rng.int(plain.length + 1);
    ops.push(`gzip two members split at ${cut}`);
    return Buffer.concat([zlib.gzipSync(plain.subarray(0, cut)), zlib.gzipSync(plain.subarray(cut))]);
  }
  // FEXTRA / FNAME / FCOMMENT / FHCRC with content (or without it).
  const out = Buffer.from(gz);
  const flags = rng.int(32);
  out[3] = flags;
  const insert = rng.chance(0.5)
    ? Buffer.alloc(0)
    : Buffer.concat([Buffer.from([rng.int(256), 0]), rng.bytes(rng.int(20)), Buffer.from([0])]);
  ops.push(`gzip flags 0x${flags.toString(16)} + ${insert.length} bytes`);
  return Buffer.concat([out.subarray(0, 10), insert, out.subarray(10)]);
}

// ---------------------------------------------------------------------------
// CIFAR-10

const CIFAR_RECORD = 3073;

function cifarFile(rng, records) {
  const out = rng.bytes(records * CIFAR_RECORD);
  for (let r = 0; r < records; r += 1) out[r * CIFAR_RECORD] = rng.int(10);
  return out;
}

// ---------------------------------------------------------------------------
// Models

let modelSeedCache;
/** The TorchScript fixtures: `{ name, bytes, entries, inputs }`, `inputs` a list of [dtype, shape-without-batch]. */
function modelSeeds() {
  if (modelSeedCache) return modelSeedCache;
  const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'fixtures.json'), 'utf8'));
  const shapes = Object.fromEntries(meta.map((m) => [m.file, m.inputShape]));
  shapes['frozen_scripted.pt'] = [null, 12]; // mlp_scripted, frozen
  const seeds = [];
  for (const name of fs
    .readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.pt'))
    .sort()) {
    const bytes = fs.readFileSync(path.join(FIXTURES, name));
    const shape = shapes[name] ?? [null, 12];
    const inputs = Array.isArray(shape[0])
      ? shape.map((s, i) => [name.startsWith('two_inputs') && i === 0 ? 'int64' : 'float32', s.slice(1)])
      : [['float32', shape.slice(1)]];
    seeds.push({ name, bytes, entries: readZip(bytes), inputs });
  }
  modelSeedCache = seeds;
  return seeds;
}

function mutateEntry(rng, entry) {
  const base = entry.name.split('/').slice(1).join('/');
  if (base.endsWith('.pkl') || base.endsWith('.debug_pkl')) {
    return rng.chance(0.7) ? mutatePickle(rng, entry.data) : mutateBytes(rng, entry.data);
  }
  if (base.endsWith('.py')) return rng.chance(0.8) ? mutateText(rng, entry.data) : mutateBytes(rng, entry.data);
  if (base === 'version' || base === '.data/version' || base.endsWith('/version')) {
    const value = rng.pick([
      '0',
      '1',
      '2',
      '3',
      '5',
      '6',
      '7',
      '8',
      '9',
      '10',
      '99',
      '-1',
      '18446744073709551616',
      'abc',
      '',
      '3\n3',
    ]);
    return { bytes: Buffer.from(`${value}\n`), ops: [`version ${JSON.stringify(value)}`] };
  }
  // Tensor bytes: special floats, or a different size than the pickle says.
  const kind = rng.weighted({ floats: 3, resize: 2, bytes: 2 });
  if (kind === 'floats' && entry.data.length >= 4) {
    const out = Buffer.from(entry.data);
    const special = [NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e-45, 0, -0];
    const count = rng.range(1, 8);
    for (let k = 0; k < count; k += 1) out.writeFloatLE(rng.pick(special), 4 * rng.int(out.length >> 2));
    return { bytes: out, ops: [`tensor ${count} special floats`] };
  }
  if (kind === 'resize') {
    const to = rng.pick([
      0,
      1,
      entry.data.length - 4,
      entry.data.length - 1,
      entry.data.length + 4,
      entry.data.length * 2,
    ]);
    const size = Math.max(0, to);
    const out =
      size <= entry.data.length
        ? entry.data.subarray(0, size)
        : Buffer.concat([entry.data, Buffer.alloc(size - entry.data.length)]);
    return { bytes: Buffer.from(out), ops: [`tensor bytes ${entry.data.length} -> ${size}`] };
  }
  return mutateBytes(rng, entry.data);
}

/** A structure-aware model mutation: one entry's content changed, or entries removed, renamed, duplicated or reordered. */
function mutateArchive(rng, seed) {
  const entries = seed.entries.map((e) => ({ ...e }));
  const ops = [];
  const kind = rng.weighted({ content: 12, remove: 1, rename: 1, duplicate: 1, reorder: 1, method: 1 });
  const pickEntry = () => {
    // Weight the entries that reach libtorch's unpickler and compiler.
    const weights = entries.map((e) =>
      /data\.pkl$|constants\.pkl$/.test(e.name) ? 6 : /\.py$/.test(e.name) ? 3 : /version$/.test(e.name) ? 2 : 1,
    );
    let r = rng.next() * weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < entries.length; i += 1) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return entries.length - 1;
  };
  const i = pickEntry();
  if (kind === 'content') {
    const count = rng.chance(0.75) ? 1 : rng.range(2, 3);
    for (let k = 0; k < count; k += 1) {
      const j = k === 0 ? i : pickEntry();
      const m = mutateEntry(rng, entries[j]);
      entries[j].data = m.bytes;
      ops.push(`${entries[j].name}: ${m.ops.join(', ')}`);
    }
  } else if (kind === 'remove') {
    ops.push(`remove ${entries[i].name}`);
    entries.splice(i, 1);
  } else if (kind === 'rename') {
    const name = entries[i].name;
    const renamed = rng.pick([
      `${name}x`,
      name.replace(/^[^/]*\//, 'other/'),
      name.toUpperCase(),
      name.replace(/\/[^/]*$/, '/'),
    ]);
    entries[i].name = renamed;
    ops.push(`rename ${name} -> ${renamed}`);
  } else if (kind === 'duplicate') {
    const copy = { ...entries[i] };
    if (rng.chance(0.5)) copy.data = mutateEntry(rng, copy).bytes;
    entries.splice(rng.int(entries.length + 1), 0, copy);
    ops.push(`duplicate ${copy.name}`);
  } else if (kind === 'reorder') {
    for (let k = entries.length - 1; k > 0; k -= 1) {
      const j = rng.int(k + 1);
      [entries[k], entries[j]] = [entries[j], entries[k]];
    }
    ops.push('shuffle entries');
  } else {
    entries[i].method = entries[i].method === 8 ? 0 : 8;
    ops.push(`${entries[i].name}: method ${entries[i].method}`);
  }
  return { bytes: writeZip(entries), ops };
}

// ---------------------------------------------------------------------------
// Cases

/** Options every reader takes, drawn for one case. */
function readerOptions(rng, extra = {}) {
  const options = { batchSize: rng.pick([1, 2, 3, 4, 5, 7, 8, 16, 64]) };
  if (rng.chance(0.3)) options.shuffle = true;
  if (rng.chance(0.3)) options.seed = rng.pick([0, 1, 7, 4294967296 + 5, rng.int(1000000)]);
  if (rng.chance(0.2)) options.limit = rng.range(1, 12);
  if (rng.chance(0.2)) options.dropLast = true;
  return { ...options, ...extra };
}

/** What the child does besides a full pass: a resumed pass, an early break, or a file that shrinks mid-pass. */
function passPlan(rng) {
  const plan = {};
  if (rng.chance(0.3)) plan.resumeAt = rng.pick([0, 1, 2, 3, rng.int(20)]);
  if (rng.chance(0.1)) plan.breakAfter = rng.range(0, 2);
  if (rng.chance(0.1)) plan.shrinkTo = rng.next(); // a fraction of the file's size, after the first batch
  return plan;
}

const NORMALIZE = ['none', 'mnist', 'cifar10', 'imagenet', { mean: [0.5], std: [0.25] }];

/**
 * A random file (10%), or a mutated seed: byte-level mutations, or the
 * format-aware ones. Fully random files start with the format's magic half the time.
 */
function randomFile(rng, magic) {
  const body = rng.bytes(rng.chance(0.7) ? rng.int(256) : rng.int(8192));
  return rng.chance(0.5) && magic ? Buffer.concat([magic, body]) : body;
}

const TARGETS = {
  npy(rng) {
    const seeds = npySeeds();
    const seed = rng.pick(seeds);
    const how = rng.weighted({ random: 1, bytes: 4, header: 5 });
    let m;
    if (how === 'random') m = { bytes: randomFile(rng, NPY_MAGIC), ops: ['random file'] };
    else if (how === 'bytes') m = mutateBytes(rng, seed.bytes);
    else m = mutateNpyHeader(rng, seed.bytes);
    if (how === 'header' && rng.chance(0.2)) {
      const more = mutateBytes(rng, m.bytes);
      m = { bytes: more.bytes, ops: [...m.ops, ...more.ops] };
    }
    return {
      seed: how === 'random' ? '(random)' : seed.name,
      ops: m.ops,
      files: [{ name: 'case.npy', bytes: m.bytes }],
      options: {
        reader: rng.chance(0.7) ? 'readNpy' : 'openDataset',
        data: readerOptions(rng),
        plan: passPlan(rng),
      },
    };
  },

  npz(rng) {
    const seeds = npzSeeds();
    const how = rng.weighted({ random: 1, bytes: 3, entries: 6, structure: 5 });
    let m;
    let from;
    if (how === 'random') {
      m = { bytes: randomFile(rng, Buffer.from('PK\x03\x04')), ops: ['random file'] };
      from = '(random)';
    } else if (how === 'bytes') {
      const seed = rng.pick(seeds.files);
      m = mutateBytes(rng, seed.bytes);
      from = seed.name;
    } else {
      const seed = rng.pick(seeds.lists);
      from = seed.name;
      const archive =
        how === 'entries' || rng.chance(0.4)
          ? mutateNpzEntries(rng, seed)
          : { ...writeNpzArchive(seed.entries, { zip64: rng.chance(0.3) }), ops: [] };
      if (how === 'structure') {
        const s = mutateNpzStructure(rng, archive);
        m = { bytes: s.bytes, ops: [...archive.ops, ...s.ops] };
      } else m = archive;
    }
    const extra = {};
    if (rng.chance(0.3)) {
      // Mostly names the seed has (with or without .npy), sometimes one it lacks.
      const own = (seeds.lists.find((l) => l.name === from)?.entries ?? []).map((e) => e.name);
      const names =
        rng.chance(0.8) && own.length > 0
          ? [...own, ...own.map((n) => n.replace(/\.npy$/, ''))]
          : ['input_ids', 'arr_0', 'x', 'missing'];
      const count = rng.range(1, 3);
      extra.inputs = Array.from({ length: count }, () => rng.pick(names));
      if (new Set(extra.inputs.map((n) => n.replace(/\.npy$/, ''))).size !== count) extra.inputs = [extra.inputs[0]];
    }
    return {
      seed: from,
      ops: m.ops,
      files: [{ name: 'case.npz', bytes: m.bytes }],
      options: {
        reader: rng.chance(0.7) ? 'readNpz' : 'openDataset',
        data: readerOptions(rng, extra),
        plan: passPlan(rng),
      },
    };
  },

  idx(rng) {
    const seeds = idxSeeds();
    const seed = rng.pick(seeds);
    const how = rng.weighted({ random: 1, bytes: 4, header: 5 });
    let m;
    if (how === 'random')
      m = {
        bytes: randomFile(rng, Buffer.from([0, 0, rng.pick([8, 9, 11, 12, 13, 14]), rng.range(1, 4)])),
        ops: ['random file'],
      };
    else if (how === 'bytes') m = mutateBytes(rng, seed.bytes);
    else m = mutateIdxHeader(rng, seed.bytes);
    const ops = [...m.ops];
    const gz = rng.chance(0.35);
    const bytes = gz ? gzipVariant(rng, m.bytes, ops) : m.bytes;
    const extra = {};
    if (rng.chance(0.2)) extra.normalize = rng.pick(NORMALIZE);
    return {
      seed: how === 'random' ? '(random)' : seed.name,
      ops,
      files: [{ name: gz ? 'case-idx3-ubyte.gz' : 'case-idx3-ubyte', bytes }],
      options: {
        reader: rng.chance(0.7) ? 'readIdx' : 'openDataset',
        data: readerOptions(rng, extra),
        plan: passPlan(rng),
      },
    };
  },

  cifar(rng) {
    const records = rng.range(1, 4);
    const seed = cifarFile(rng, records);
    const how = rng.weighted({ random: 1, bytes: 4, records: 3 });
    let m;
    if (how === 'random') m = { bytes: randomFile(rng, null), ops: ['random file'] };
    else if (how === 'bytes') m = mutateBytes(rng, seed);
    else {
      // Whole records and a few bytes more or less.
      const size = Math.max(0, rng.range(0, 5) * CIFAR_RECORD + rng.pick([0, 0, 0, 1, -1, 2, -3, 3072]));
      const bytes = size <= seed.length ? seed.subarray(0, size) : Buffer.concat([seed, rng.bytes(size - seed.length)]);
      m = { bytes, ops: [`${size} bytes`] };
    }
    const folder = rng.chance(0.3);
    const files = folder
      ? [{ name: 'cifar/data_batch_1.bin', bytes: m.bytes }]
      : [{ name: 'case.bin', bytes: m.bytes }];
    if (folder) {
      if (rng.chance(0.5)) files.push({ name: 'cifar/data_batch_2.bin', bytes: cifarFile(rng, rng.range(1, 3)) });
      if (rng.chance(0.5)) files.push({ name: 'cifar/test_batch.bin', bytes: cifarFile(rng, 1) });
      if (rng.chance(0.3))
        files.push({ name: 'cifar/data_batch_10.bin', bytes: mutateBytes(rng, cifarFile(rng, 1)).bytes });
    }
    const extra = {};
    if (rng.chance(0.2)) extra.normalize = rng.pick(NORMALIZE);
    if (folder && rng.chance(0.5)) extra.split = rng.pick(['train', 'test', 'all']);
    return {
      seed: `${records} records`,
      ops: m.ops,
      files,
      options: {
        reader: rng.chance(0.7) ? 'readCifar10' : 'openDataset',
        path: folder ? 'cifar' : 'case.bin',
        data: readerOptions(rng, extra),
        plan: { ...passPlan(rng), labels: rng.chance(0.5) },
      },
    };
  },

  model(rng) {
    const seeds = modelSeeds();
    const seed = rng.pick(seeds);
    const how = rng.weighted({ random: 1, bytes: 4, archive: 15 });
    let m;
    if (how === 'random') m = { bytes: randomFile(rng, Buffer.from('PK\x03\x04')), ops: ['random file'] };
    else if (how === 'bytes') m = mutateBytes(rng, seed.bytes);
    else m = mutateArchive(rng, seed);
    // Mostly the seed's inputs; sometimes other shapes or dtypes.
    const n = rng.range(4, 8);
    let inputs = seed.inputs.map(([dtype, shape]) => ({ dtype, shape: [n, ...shape] }));
    const odd = rng.chance(0.15);
    if (odd) {
      const kind = rng.pick(['shape', 'dtype', 'count']);
      if (kind === 'shape')
        inputs = inputs.map((i) => ({ ...i, shape: [n, ...i.shape.slice(1).map(() => rng.range(1, 9))] }));
      else if (kind === 'dtype')
        inputs = inputs.map((i) => ({ ...i, dtype: rng.pick(['float32', 'float64', 'int64', 'uint8', 'int32']) }));
      else inputs = rng.chance(0.5) ? inputs.slice(0, 1) : [...inputs, inputs[0]];
    }
    return {
      seed: how === 'random' ? '(random)' : seed.name,
      ops: odd ? [...m.ops, `inputs ${JSON.stringify(inputs)}`] : m.ops,
      files: [{ name: 'case.pt', bytes: m.bytes }],
      options: { path: 'case.pt', inputs, dataSeed: rng.seed() },
    };
  },
};

/** Hidden targets that check the harness itself: each misbehaves in one way. */
const SELFTESTS = ['selftest-crash', 'selftest-hang', 'selftest-uncoded', 'selftest-internal'];
for (const name of SELFTESTS) {
  TARGETS[name] = (rng) => ({
    seed: '(none)',
    ops: [name],
    files: [{ name: 'case.bin', bytes: rng.bytes(16) }],
    options: {},
  });
}

const PUBLIC_TARGETS = ['npy', 'npz', 'idx', 'cifar', 'model'];

/**
 * The case `index` of `target` under `seed`: `{ target, seed, index, files:
 * [{ name, bytes }], options, from, ops }`. The first file is the input that
 * a finding saves.
 */
function generateCase(target, seed, index) {
  const make = TARGETS[target];
  if (make === undefined) throw new Error(`unknown fuzz target ${target}`);
  const rng = new Rng(seed, target, index);
  const made = make(rng);
  return { target, seed, index, files: made.files, options: made.options, from: made.seed, ops: made.ops };
}

/** The file extension a saved input of `target` gets. */
function inputExtension(generated) {
  const name = generated.files[0].name;
  if (name.endsWith('.gz')) return '.idx.gz';
  if (name.includes('idx3')) return '.idx';
  return path.extname(name) || '.bin';
}

module.exports = {
  PUBLIC_TARGETS,
  SELFTESTS,
  TARGETS,
  Rng,
  crc32,
  generateCase,
  inputExtension,
  mutateBytes,
  readZip,
  walkPickle,
  writeNpzArchive,
  writeZip,
};

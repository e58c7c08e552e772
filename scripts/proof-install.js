#!/usr/bin/env node
'use strict';
// The proof that the npm package works from a clean install:
//
//   node scripts/proof-install.js [--only prebuilt|source] [--keep]
//
// 1. `npm pack` (with the prebuilt binary; `npm run prebuild` first if there
//    is none) and a look at what the tarball holds.
// 2. prebuilt: the tarball installed into a fresh project with compiler
//    shims first on PATH (cc, c++, gcc, g++, clang, clang++, make, cmake and
//    CC/CXX) that log every call and fail: the install must succeed, log
//    "using the prebuilt binary", leave the shim log empty and build nothing.
// 3. source: the same tarball without prebuilds/, installed with the real
//    compilers: it must build from source.
// 4. In both projects: a TypeScript consumer type-checks against the shipped
//    types (and a wrong one does not), require() and import() load the same
//    module, `npx torch-cka demo` writes its files, and the addon loaded is the
//    one expected (prebuilds/ or build/Release).
// test/package.test.js runs the same steps in npm test.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const COMPILERS = ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'make', 'cmake', 'ld'];
const PLATFORM = `${process.platform}-${process.arch}`;

function run(command, args, options = {}) {
  const started = Date.now();
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    timeout: options.timeout ?? 20 * 60 * 1000,
    ...options,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  return {
    status: result.status,
    signal: result.signal,
    stdout: result.stdout ?? '',
    output,
    error: result.error,
    ms: Date.now() - started,
  };
}

function check(condition, message, output) {
  if (!condition) throw new Error(`${message}${output ? `\n--- output ---\n${output.slice(-6000)}` : ''}`);
}

/** npm pack into `dir`: the tarball, its size and its file list. */
function pack(dir) {
  const packed = run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT });
  check(packed.status === 0, 'npm pack failed', packed.output);
  // The JSON report is the last thing on stdout (the prepare script prints before it).
  const json = packed.stdout.slice(packed.stdout.search(/^\[/m));
  const info = JSON.parse(json)[0];
  return {
    tarball: path.join(dir, info.filename),
    size: info.size,
    unpackedSize: info.unpackedSize,
    files: info.files.map((f) => f.path),
  };
}

/** What the tarball must and must not hold. */
function checkContents(files) {
  const has = (pattern) => files.some((f) => pattern.test(f));
  const required = [
    /^dist\/index\.js$/,
    /^dist\/index\.mjs$/,
    /^dist\/index\.d\.ts$/,
    /^dist\/index\.d\.mts$/,
    /^dist\/cli\/main\.js$/,
    /^dist\/verify-child\.js$/,
    /^binding\.gyp$/,
    /^CMakeLists\.txt$/,
    /^native\/core\/engine\.cc$/,
    /^native\/addon\/addon\.cc$/,
    /^scripts\/install\.js$/,
    /^scripts\/find-libtorch\.js$/,
    /^demo\/models\/.+\.pt$/,
    /^demo\/data\//,
    /^README\.md$/,
    /^LICENSE$/,
  ];
  for (const pattern of required) check(has(pattern), `the tarball lacks ${pattern}`);
  const forbidden = [
    /^test\//,
    /^bench\//,
    /^build/,
    /^node_modules\//,
    /^docs\//,
    /^ts\//,
    /\.map$/,
    /^\.ci\//,
    /\.tgz$/,
  ];
  const found = files.filter((f) => forbidden.some((p) => p.test(f)));
  check(found.length === 0, `the tarball holds files a user does not need: ${found.slice(0, 10).join(', ')}`);
}

/** The tarball with prebuilds/ taken out, for the source build. */
function withoutPrebuilds(tarball, dir) {
  const unpack = path.join(dir, 'unpacked');
  fs.mkdirSync(unpack, { recursive: true });
  let r = run('tar', ['-xzf', tarball, '-C', unpack]);
  check(r.status === 0, 'tar -x failed', r.output);
  fs.rmSync(path.join(unpack, 'package', 'prebuilds'), { recursive: true, force: true });
  const out = path.join(dir, path.basename(tarball).replace(/\.tgz$/, '-source.tgz'));
  r = run('tar', ['-czf', out, '-C', unpack, 'package']);
  check(r.status === 0, 'tar -c failed', r.output);
  return out;
}

/** Shims for every compiler and build tool: each logs its call to `log` and fails. */
function compilerShims(dir, log) {
  const bin = path.join(dir, 'shims');
  fs.mkdirSync(bin, { recursive: true });
  for (const name of COMPILERS) {
    const file = path.join(bin, name);
    fs.writeFileSync(file, `#!/bin/sh\necho "${name} $*" >> '${log}'\nexit 1\n`);
    fs.chmodSync(file, 0o755);
  }
  return bin;
}

/** A fresh project with the tarball installed; returns the install's output. */
function install(project, tarball, env) {
  fs.mkdirSync(project, { recursive: true });
  fs.writeFileSync(
    path.join(project, 'package.json'),
    `${JSON.stringify({ name: 'torch-cka-consumer', version: '1.0.0', private: true }, null, 2)}\n`,
  );
  const r = run('npm', ['install', '--foreground-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball], {
    cwd: project,
    env,
  });
  check(r.status === 0, `npm install of ${path.basename(tarball)} failed`, r.output);
  return r;
}

const CONSUMER_TS = `import { CKA, ErrorCodes, loadModel, runtimeInfo, type CKAResult, type CompareSummary } from 'torch-cka';

export async function compareTwice(file: string): Promise<[CKAResult, CompareSummary]> {
  const model = await loadModel(file, { device: 'cpu' });
  const cka = new CKA(model, model, { precision: 'float64', model2Layers: ['**'] });
  const batch = { data: new Float32Array(4 * 12), shape: [4, 12] };
  const summary = await cka.compare([batch], undefined, { onProgress: (p) => p.batches + p.samples });
  const version: string = runtimeInfo().libtorchVersion;
  const code: string = ErrorCodes.DIST_TIMEOUT;
  void version;
  void code;
  return [cka.export(), summary];
}
`;

const CONSUMER_MTS = `import { CKA, loadModel } from 'torch-cka';
import cka from 'torch-cka';

export const same: boolean = CKA === cka.CKA;
export const load: typeof loadModel = loadModel;
`;

// Must not type-check: proves that the types are read (an \`any\` module would pass).
const WRONG_TS = `import { CKA, loadModel } from 'torch-cka';

export async function wrong(): Promise<number> {
  const model = await loadModel(42);
  return new CKA(model, model, { precision: 'float16' }).export().cka;
}
`;

/** Everything a user does after `npm install torch-cka`; returns what was seen. */
function checkProject(project, expectBinaryUnder) {
  const pkg = path.join(project, 'node_modules', 'torch-cka');
  const seen = {};
  // 1. TypeScript against the shipped types (CommonJS and ES module consumers).
  fs.writeFileSync(path.join(project, 'consumer.ts'), CONSUMER_TS);
  fs.writeFileSync(path.join(project, 'consumer-esm.mts'), CONSUMER_MTS);
  const tsconfig = {
    compilerOptions: {
      strict: true,
      module: 'node16',
      moduleResolution: 'node16',
      target: 'es2022',
      noEmit: true,
      skipLibCheck: false,
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    },
    files: ['consumer.ts', 'consumer-esm.mts'],
  };
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  let r = run(process.execPath, [TSC, '--noEmit', '-p', 'tsconfig.json'], { cwd: project });
  check(r.status === 0, 'tsc --noEmit on the consumer failed', r.output);
  fs.writeFileSync(path.join(project, 'wrong.ts'), WRONG_TS);
  fs.writeFileSync(
    path.join(project, 'tsconfig.wrong.json'),
    JSON.stringify({ ...tsconfig, files: ['wrong.ts'] }, null, 2),
  );
  r = run(process.execPath, [TSC, '--noEmit', '-p', 'tsconfig.wrong.json'], { cwd: project });
  check(
    r.status !== 0 && /TS2345|TS2322/.test(r.output),
    'a wrong consumer type-checked: the types are not used',
    r.output,
  );
  seen.typecheck = true;

  // 2. require() and import() give one module; which binary it loaded.
  const cjs = `const t = require('torch-cka');
const info = t.runtimeInfo();
const file = require('node-gyp-build').resolve(require('node:path').dirname(require.resolve('torch-cka/package.json')));
console.log(JSON.stringify({ CKA: typeof t.CKA, libtorch: info.libtorchVersion, file }));`;
  r = run(process.execPath, ['-e', cjs], { cwd: project });
  check(r.status === 0, "require('torch-cka') failed", r.output);
  const required = JSON.parse(r.output.trim().split('\n').pop());
  check(required.CKA === 'function', 'require() gave no CKA class', r.output);
  const esm = `import { CKA, runtimeInfo } from 'torch-cka';
import whole from 'torch-cka';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
console.log(JSON.stringify({ same: CKA === whole.CKA && CKA === require('torch-cka').CKA, libtorch: runtimeInfo().libtorchVersion }));`;
  r = run(process.execPath, ['--input-type=module', '-e', esm], { cwd: project });
  check(r.status === 0, "import('torch-cka') failed", r.output);
  const imported = JSON.parse(r.output.trim().split('\n').pop());
  check(imported.same === true, 'import and require gave different modules', r.output);
  seen.libtorch = required.libtorch;
  seen.binary = path.relative(pkg, required.file);
  check(
    seen.binary.startsWith(expectBinaryUnder),
    `the addon loaded is ${seen.binary}, not under ${expectBinaryUnder}`,
  );

  // 3. The CLI from the installed package.
  const out = path.join(project, 'demo-out');
  r = run('npx', ['--no-install', 'torch-cka', 'demo', '--out', out], { cwd: project, timeout: 5 * 60 * 1000 });
  check(r.status === 0, 'npx torch-cka demo failed', r.output);
  for (const file of ['results.json', 'results.csv', 'heatmap.svg', 'heatmap.png', 'report.html']) {
    check(fs.statSync(path.join(out, file)).size > 0, `the demo did not write ${file}`);
  }
  const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  check(results.cka.length > 0 && results.samples > 0, 'the demo results are empty');
  seen.demoMs = r.ms;
  return seen;
}

/** The prebuilt path: no compiler may run. */
function provePrebuilt(work, tarball) {
  const project = path.join(work, 'prebuilt');
  fs.mkdirSync(project, { recursive: true });
  const log = path.join(work, 'compiler-calls.log');
  const shims = compilerShims(work, log);
  const env = {
    ...process.env,
    PATH: `${shims}${path.delimiter}${process.env.PATH}`,
    CC: path.join(shims, 'cc'),
    CXX: path.join(shims, 'c++'),
    npm_config_build_from_source: '',
    TORCH_CKA_BUILD_FROM_SOURCE: '',
  };
  const installed = install(project, tarball, env);
  const calls = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim() : '';
  check(calls === '', `a compiler or build tool ran during the prebuilt install:\n${calls}`, installed.output);
  check(
    /torch-cka: using the prebuilt binary prebuilds\/linux-x64\/\S+\.node for libtorch/.test(installed.output),
    'the install did not report using the prebuilt binary',
    installed.output,
  );
  check(!fs.existsSync(path.join(project, 'node_modules', 'torch-cka', 'build')), 'the install made a build/ folder');
  const seen = checkProject(project, `prebuilds/${PLATFORM}/`);
  // The shims can fail this proof: a forced source build under them logs calls and fails.
  const forced = run('npm', ['rebuild', 'torch-cka', '--foreground-scripts'], {
    cwd: project,
    env: { ...env, TORCH_CKA_BUILD_FROM_SOURCE: '1' },
  });
  const caught = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : [];
  check(
    forced.status !== 0 && caught.length > 0,
    'the compiler shims did not catch a forced source build',
    forced.output,
  );
  fs.rmSync(path.join(project, 'node_modules', 'torch-cka', 'build'), { recursive: true, force: true });
  return {
    ...seen,
    installMs: installed.ms,
    compilerCalls: 0,
    shimsCaughtForcedBuild: caught[0],
    installLine: /torch-cka: using[^\n]*/.exec(installed.output)[0],
  };
}

/** The source path: no prebuilds in the tarball, node-gyp builds the addon. */
function proveSource(work, tarball) {
  const project = path.join(work, 'source');
  const source = withoutPrebuilds(tarball, work);
  const installed = install(project, source, { ...process.env });
  check(
    /torch-cka: building from source against libtorch/.test(installed.output),
    'the install did not build from source',
    installed.output,
  );
  check(
    fs.existsSync(path.join(project, 'node_modules', 'torch-cka', 'build', 'Release', 'torch_cka.node')),
    'the source build left no build/Release/torch_cka.node',
    installed.output,
  );
  const seen = checkProject(project, 'build/Release/');
  return { ...seen, installMs: installed.ms, installLine: /torch-cka: building[^\n]*/.exec(installed.output)[0] };
}

function ensurePrebuild() {
  const dir = path.join(ROOT, 'prebuilds', PLATFORM);
  if (fs.existsSync(path.join(dir, 'libtorch.json'))) return;
  process.stderr.write('proof: no prebuilt binary yet: npm run prebuild\n');
  const r = run('npm', ['run', 'prebuild'], { cwd: ROOT, stdio: 'inherit' });
  check(r.status === 0, 'npm run prebuild failed');
}

module.exports = { pack, checkContents, provePrebuilt, proveSource, ensurePrebuild, withoutPrebuilds };

if (require.main === module) {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
  const keep = process.argv.includes('--keep');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-proof-'));
  try {
    ensurePrebuild();
    const packed = pack(work);
    checkContents(packed.files);
    console.log(
      `proof: ${path.basename(packed.tarball)}: ${(packed.size / 1024).toFixed(0)} KB packed, ` +
        `${(packed.unpackedSize / 1024).toFixed(0)} KB unpacked, ${packed.files.length} files`,
    );
    if (only !== 'source') console.log('proof: prebuilt:', JSON.stringify(provePrebuilt(work, packed.tarball)));
    if (only !== 'prebuilt') console.log('proof: source:', JSON.stringify(proveSource(work, packed.tarball)));
    console.log('proof: all checks passed');
  } catch (error) {
    console.error(`proof: FAILED: ${error.message}`);
    process.exitCode = 1;
  } finally {
    if (keep) console.log(`proof: kept ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

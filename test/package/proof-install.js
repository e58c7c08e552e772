#!/usr/bin/env node
'use strict';
// The proof that the npm package works from a clean install:
//
//   node test/package/proof-install.js [--only prebuilt|source] [--keep]
//
// 1. `npm pack` (with the prebuilt binary; `npm run prebuild` first if there
//    is none) and a look at what the tarball holds.
// 2. prebuilt: the tarball installed into a fresh project with compiler
//    shims first on PATH (cc, c++, gcc, g++, clang, clang++, make, cmake and
//    CC/CXX) that log every call and fail: the install must succeed, log
//    "using the prebuilt binary", leave the shim log empty and build nothing.
// 3. source: the same tarball without prebuilds/, installed with the real
//    compilers: it must build from source.
// 4. In both projects: TypeScript consumers type-check against the shipped
//    types (and a wrong one does not) with TypeScript 5 and 7 from the
//    registry (installed once per run), @types/node latest installed but not
//    named in `types`, in several set-ups (TYPE_SETUPS: `tsc --init`'s
//    defaults, strict nodenext and node16, lib es2022 and esnext), as ES
//    module (.mts) and CommonJS (.cts, `import x = require`) consumers;
//    require() and import() load the same module, `npx torch-cka demo` writes
//    its files, and the addon loaded is the one expected (prebuilds/ or
//    build/Release).
// test/slow/package.test.js runs the same steps in npm run test:slow.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..', '..');
// The TypeScript releases a consumer may use: each installed from the registry under an alias.
const TYPESCRIPTS = [
  { alias: 'typescript-5', spec: 'typescript@5', major: 5 },
  { alias: 'typescript-7', spec: 'typescript@7', major: 7 },
];
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
    /^dist\/native\/verify-child\.js$/,
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

// CommonJS with `import x = require` and `export =` (a .cts: CommonJS whatever the package.json
// says; `export =` as verbatimModuleSyntax wants).
const CONSUMER_CTS = `import torch = require('torch-cka');

async function compare(file: string): Promise<torch.CKAResult> {
  const model: torch.Model = await torch.loadModel(file);
  const cka = new torch.CKA(model, model, { precision: 'float32' });
  await cka.compare([{ data: new Float32Array(8), shape: [2, 4] }]);
  await model[Symbol.asyncDispose]();
  return cka.export();
}

export = compare;
`;

// Must not type-check: proves that the types are read (an \`any\` module would pass).
const WRONG_TS = `import { CKA, loadModel } from 'torch-cka';

export async function wrong(): Promise<number> {
  const model = await loadModel(42);
  return new CKA(model, model, { precision: 'float16' }).export().cka;
}
`;

/**
 * How consumers set TypeScript up. `init`: the tsconfig.json that `tsc --init` of that version
 * writes, as it is (5.9+: module nodenext, target esnext, `types: []`, verbatimModuleSyntax,
 * skipLibCheck); the others are written here. None names @types/node in `types`.
 */
const STRICT = {
  strict: true,
  target: 'es2022',
  module: 'nodenext',
  moduleResolution: 'nodenext',
  skipLibCheck: false,
  noEmit: true,
};
const TYPE_SETUPS = [
  { name: 'tsc --init defaults', init: true, wrong: true },
  { name: 'strict, ES2022, nodenext', options: STRICT, wrong: true, quick: true },
  { name: 'strict, ES2022, node16', options: { ...STRICT, module: 'node16', moduleResolution: 'node16' } },
  { name: 'strict, ES2022, nodenext, lib es2022 (no DOM)', options: { ...STRICT, lib: ['es2022'] } },
  { name: 'strict, ES2022, nodenext, lib esnext', options: { ...STRICT, lib: ['esnext'] } },
];

/**
 * The TypeScript releases of TYPESCRIPTS, installed once per proof run into `work/typescript`
 * (not above the consumer projects, so that nothing there leaks into them): [{ version, tsc }].
 */
function typeScripts(work) {
  const dir = path.join(work, 'typescript');
  if (!fs.existsSync(path.join(dir, 'node_modules'))) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), '{ "name": "typescripts", "private": true }\n');
    const specs = TYPESCRIPTS.map((t) => `${t.alias}@npm:${t.spec}`);
    const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...specs], { cwd: dir });
    check(r.status === 0, `npm install ${specs.join(' ')} failed`, r.output);
  }
  return TYPESCRIPTS.map((t) => {
    const home = path.join(dir, 'node_modules', t.alias);
    const { version } = JSON.parse(fs.readFileSync(path.join(home, 'package.json'), 'utf8'));
    check(Number(version.split('.')[0]) === t.major, `${t.spec} installed TypeScript ${version}`);
    return { version, tsc: path.join(home, 'bin', 'tsc') };
  });
}

/** tsc --noEmit in `dir` (its tsconfig.json): file names in the output are relative to `dir`. */
function tsc(ts, dir) {
  return run(process.execPath, [ts.tsc, '--noEmit', '--pretty', 'false', '-p', '.'], {
    cwd: dir,
    timeout: 5 * 60 * 1000,
  });
}

/** A folder of `project` with a tsconfig.json and `files` ({ name: text }). */
function writeSetup(dir, tsconfig, files) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), tsconfig);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
}

/**
 * The shipped types in `project` (torch-cka installed), for each TypeScript release and each of
 * TYPE_SETUPS (only the `quick` ones with `quick`): the consumers type-check, and (where `wrong`)
 * a wrong call does not, with its errors in the wrong file only. Throws naming the set-up, with
 * tsc's output. Returns the set-ups checked.
 */
function checkTypes(project, work, { quick = false } = {}) {
  const typescripts = typeScripts(work);
  // @types/node as a consumer has it: latest, installed, not in `types`. Scripts off: torch-cka
  // is installed already and must not be rebuilt.
  let r = run(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '-D', '@types/node@latest'],
    { cwd: project },
  );
  check(r.status === 0, 'npm install @types/node failed', r.output);
  // The in-repo consumer of the whole API (test/types/consumer.ts), as an ES module.
  const full = fs.readFileSync(path.join(ROOT, 'test', 'types', 'consumer.ts'), 'utf8');
  const passed = [];
  for (const ts of typescripts) {
    const tag = `ts${ts.version.split('.')[0]}`;
    const root = path.join(project, 'typecheck', tag);
    let init = null;
    for (const [i, setup] of TYPE_SETUPS.entries()) {
      if (quick && !setup.quick) continue;
      const label = `TypeScript ${ts.version}, ${setup.name}`;
      let tsconfig;
      // ES module consumers (.mts) and CommonJS ones (.cts); consumer.ts is CommonJS here (the
      // project's package.json has no "type"), with import syntax: not allowed with
      // verbatimModuleSyntax (--init), so not there.
      const files = { 'consumer.mts': full, 'consumer-esm.mts': CONSUMER_MTS, 'consumer.cts': CONSUMER_CTS };
      if (setup.init) {
        if (init === null) {
          const dir = path.join(root, 'init');
          fs.mkdirSync(dir, { recursive: true });
          r = run(process.execPath, [ts.tsc, '--init'], { cwd: dir });
          check(r.status === 0, `${label}: tsc --init failed`, r.output);
          init = fs.readFileSync(path.join(dir, 'tsconfig.json'), 'utf8');
        }
        tsconfig = init; // its default include: every .ts/.mts/.cts in the folder
      } else {
        files['consumer.ts'] = CONSUMER_TS;
        tsconfig = `${JSON.stringify({ compilerOptions: setup.options, files: Object.keys(files) }, null, 2)}\n`;
      }
      const dir = path.join(root, `setup-${i}`);
      writeSetup(dir, tsconfig, files);
      r = tsc(ts, dir);
      check(r.status === 0, `${label}: the consumers do not type-check (in ${dir})`, r.output);
      if (setup.wrong) {
        const wrongDir = `${dir}-wrong`;
        const wrongFile = setup.init ? 'wrong.mts' : 'wrong.ts';
        // skipLibCheck: the .d.ts files were checked just above; this is about the call.
        const wrongOptions = { ...setup.options, skipLibCheck: true };
        const wrongConfig = setup.init
          ? tsconfig
          : `${JSON.stringify({ compilerOptions: wrongOptions, files: [wrongFile] }, null, 2)}\n`;
        writeSetup(wrongDir, wrongConfig, { [wrongFile]: WRONG_TS });
        r = tsc(ts, wrongDir);
        const errors = r.output.split('\n').filter((line) => /error TS\d+/.test(line));
        check(
          r.status !== 0 && /TS2345|TS2322/.test(r.output),
          `${label}: a wrong consumer type-checked: the types are not used (in ${wrongDir})`,
          r.output,
        );
        check(
          errors.every((line) => line.startsWith(wrongFile)),
          `${label}: the wrong consumer failed for another reason than its wrong calls (in ${wrongDir})`,
          r.output,
        );
      }
      passed.push(`${label}${setup.wrong ? ' (+ wrong call fails)' : ''}`);
    }
  }
  return passed;
}

// The proof runs (work folders) whose first project had all the type set-ups checked.
const typesChecked = new Set();

/** Everything a user does after `npm install torch-cka`; returns what was seen. */
function checkProject(project, expectBinaryUnder, work) {
  const pkg = path.join(project, 'node_modules', 'torch-cka');
  const seen = {};
  // 1. TypeScript against the shipped types (ES module and CommonJS consumers). Both projects
  // have the same .d.ts files: all the set-ups in the first project checked in this run, the
  // quick ones in the next (each TypeScript 5 set-up with skipLibCheck off takes seconds).
  seen.typecheck = checkTypes(project, work, { quick: typesChecked.has(work) });
  typesChecked.add(work);

  // 2. require() and import() give one module; which binary it loaded.
  const cjs = `const t = require('torch-cka');
const info = t.runtimeInfo();
const file = require('node-gyp-build').resolve(require('node:path').dirname(require.resolve('torch-cka/package.json')));
console.log(JSON.stringify({ CKA: typeof t.CKA, libtorch: info.libtorchVersion, file }));`;
  let r = run(process.execPath, ['-e', cjs], { cwd: project });
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
  const seen = checkProject(project, `prebuilds/${PLATFORM}/`, work);
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
  const seen = checkProject(project, 'build/Release/', work);
  return { ...seen, installMs: installed.ms, installLine: /torch-cka: building[^\n]*/.exec(installed.output)[0] };
}

function ensurePrebuild() {
  const dir = path.join(ROOT, 'prebuilds', PLATFORM);
  if (fs.existsSync(path.join(dir, 'libtorch.json'))) return;
  process.stderr.write('proof: no prebuilt binary yet: npm run prebuild\n');
  const r = run('npm', ['run', 'prebuild'], { cwd: ROOT, stdio: 'inherit' });
  check(r.status === 0, 'npm run prebuild failed');
}

module.exports = {
  pack,
  checkContents,
  checkTypes,
  provePrebuilt,
  proveSource,
  ensurePrebuild,
  withoutPrebuilds,
  TYPE_SETUPS,
};

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

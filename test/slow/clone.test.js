'use strict';
// The README's quick start in a fresh clone of this repository's HEAD, with a
// fresh npm cache: `npm install` builds the addon once and changes no tracked
// file; `npx torch-cka demo` (which installs the clone into npx's cache and so
// runs the install step again) compiles nothing, rewrites no binary and
// changes no tracked file either. Needs the npm registry (a fresh cache) and
// git; it clones what is committed, not the working tree.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
const ADDON = path.join('build', 'Release', 'torch_cka.node');

function sh(command, args, options) {
  const started = Date.now();
  const run = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...options });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  assert.equal(run.status, 0, `${command} ${args.join(' ')} exited ${run.status}:\n${output.slice(-4000)}`);
  return { output, ms: Date.now() - started };
}

const fingerprint = (file) => ({
  sha256: crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'),
  mtimeMs: fs.statSync(file).mtimeMs,
});

describe('quick start in a fresh clone (npm install, then npx torch-cka demo)', function () {
  this.timeout(20 * 60 * 1000);
  let work;
  let clone;
  let env;

  before(function () {
    const head = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
    assert.equal(head.status, 0, `this test clones the repository, and ${ROOT} is not a git checkout`);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcka-clone-'));
    clone = path.join(work, 'torch-cka');
    sh('git', ['clone', '--quiet', '--no-hardlinks', ROOT, clone]);
    // Nothing from this process's npm: a fresh cache, and none of the npm_*
    // variables that `npm test` sets for its scripts.
    env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
    env.npm_config_cache = path.join(work, 'npm-cache');
    delete env[require('../../scripts/find-libtorch').FOUND_ENV];
  });

  after(() => fs.rmSync(work, { recursive: true, force: true }));

  const status = () => sh('git', ['status', '--porcelain'], { cwd: clone }).output.trim();

  it('npm install builds the addon once, in parallel, and changes no tracked file', () => {
    const { output, ms } = sh('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts'], {
      cwd: clone,
      env,
    });
    const lines = output.split('\n').filter((line) => line.startsWith('torch-cka: '));
    assert.ok(
      lines.some((line) => /^torch-cka: building from source/.test(line)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((line) =>
        /^torch-cka: built build\/Release\/torch_cka\.node in \d+ s with \d+ parallel jobs/.test(line),
      ),
      lines.join('\n'),
    );
    assert.ok(fs.existsSync(path.join(clone, ADDON)));
    assert.equal(status(), '', 'npm install changed tracked files');
    console.log(`      npm install: ${(ms / 1000).toFixed(1)} s; ${lines.join('; ')}`);
  });

  it('npx torch-cka demo runs the demo without building again or changing any file', () => {
    const before = fingerprint(path.join(clone, ADDON));
    const { output, ms } = sh('npx', ['torch-cka', 'demo'], { cwd: clone, env });
    assert.match(output, /wrote torch-cka-demo\/results\.json/);
    for (const file of ['results.json', 'results.csv', 'heatmap.svg', 'heatmap.png', 'report.html']) {
      assert.ok(fs.statSync(path.join(clone, 'torch-cka-demo', file)).size > 0, file);
    }
    assert.deepEqual(fingerprint(path.join(clone, ADDON)), before, `npx rewrote ${ADDON}`);
    assert.equal(status(), '', 'npx torch-cka demo changed tracked files');
    // npx did install the clone into its cache (and so ran the install step).
    const npx = path.join(env.npm_config_cache, '_npx');
    assert.ok(fs.existsSync(npx) && fs.readdirSync(npx).length > 0, 'npx installed nothing into its cache');
    console.log(`      npx torch-cka demo: ${(ms / 1000).toFixed(1)} s, ${ADDON} unchanged`);
  });

  it('npm install again keeps the build (up to date, nothing compiled)', () => {
    const before = fingerprint(path.join(clone, ADDON));
    const { output } = sh('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: clone, env });
    assert.match(output, /torch-cka: build\/Release\/torch_cka\.node is up to date .*; nothing compiled/);
    assert.deepEqual(fingerprint(path.join(clone, ADDON)), before);
    assert.equal(status(), '');
  });
});

'use strict';
// `torch-cka launch` end to end, in child processes: the ranks' environment,
// exit codes, stopping the other ranks when one fails, signals, usage errors.
// The ranks are small `node -e` scripts: no models, no rendezvous.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const ROOT = path.join(__dirname, '..', '..');
const NODE = process.execPath;

/** An environment without OMP_NUM_THREADS (plus extra). */
function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  if (!('OMP_NUM_THREADS' in extra)) delete env.OMP_NUM_THREADS;
  return env;
}

/** Starts `torch-cka ARGS`; returns the child and a promise of { status, signal, stdout, stderr, ms }. */
function start(args, options = {}) {
  const started = Date.now();
  const child = spawn(NODE, [CLI, ...args], { cwd: ROOT, env: cleanEnv(options.env), stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const done = new Promise((resolve) => {
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, ms: Date.now() - started }));
  });
  return { child, done };
}

const run = (args, options) => start(args, options).done;

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
};

/** Resolves when every file exists (polling), rejects after ms. */
async function waitForFiles(files, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!files.every((file) => fs.existsSync(file))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${files.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const readPid = (file) => Number(fs.readFileSync(file, 'utf8'));

// A rank that writes its environment and arguments to DIR/rank-$RANK.json.
const RECORD = `
const fs = require('fs');
const path = require('path');
const e = process.env;
const keys = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'GROUP_WORLD_SIZE',
  'MASTER_ADDR', 'MASTER_PORT', 'OMP_NUM_THREADS', 'TCKA_MARK'];
const seen = Object.fromEntries(keys.map((k) => [k, e[k] === undefined ? null : e[k]]));
seen.argv = process.argv.slice(2);
fs.writeFileSync(path.join(process.argv[1], 'rank-' + e.RANK + '.json'), JSON.stringify(seen));
`;

// A rank that writes its pid to DIR/pid-$RANK and sleeps 60 s.
const SLEEP = `
require('fs').writeFileSync(require('path').join(process.argv[1], 'pid-' + process.env.RANK), String(process.pid));
setTimeout(() => {}, 60000);
`;

describe('torch-cka launch', function () {
  this.timeout(60000);
  let dir;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-cka-launch-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const records = () =>
    fs
      .readdirSync(dir)
      .filter((f) => f.startsWith('rank-'))
      .sort()
      .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));

  describe('help', () => {
    it('launch --help prints the usage, the examples and torchrun, and exits 0', async () => {
      const { status, stdout } = await run(['launch', '--help']);
      assert.equal(status, 0);
      assert.match(stdout, /^Usage: torch-cka launch --nproc N/);
      for (const option of ['--nproc', '--nnodes', '--node-rank', '--master-addr', '--master-port', '--help']) {
        assert.ok(stdout.includes(option), option);
      }
      assert.match(stdout, /torch-cka launch --nproc 2 -- compare a\.pt b\.pt --data x\.npy --out results\.json/);
      assert.match(stdout, /--nnodes 2 --node-rank 0\|1 --master-addr HOST --master-port 29500/);
      assert.match(stdout, /torchrun --nproc-per-node 2 .*dist\/cli\/main\.js compare/);
    });

    it('the top-level help and `help launch` list launch', async () => {
      const top = await run(['--help']);
      assert.equal(top.status, 0);
      assert.match(top.stdout, /^ {2}launch --nproc N .* -- COMMAND\.\.\.$/m);
      const help = await run(['help', 'launch']);
      assert.match(help.stdout, /^Usage: torch-cka launch/);
    });
  });

  describe('the ranks', () => {
    it('all ranks succeed: exit 0, each saw its RANK, WORLD_SIZE, LOCAL_RANK, ... and one MASTER_PORT', async () => {
      const { status, stderr } = await run(['launch', '--nproc', '3', '--', NODE, '-e', RECORD, dir]);
      assert.equal(status, 0, stderr);
      const seen = records();
      assert.equal(seen.length, 3);
      seen.forEach((env, i) => {
        assert.equal(env.RANK, String(i));
        assert.equal(env.LOCAL_RANK, String(i));
        assert.equal(env.WORLD_SIZE, '3');
        assert.equal(env.LOCAL_WORLD_SIZE, '3');
        assert.equal(env.GROUP_RANK, '0');
        assert.equal(env.GROUP_WORLD_SIZE, '1');
        assert.equal(env.MASTER_ADDR, '127.0.0.1');
      });
      const port = seen[0].MASTER_PORT;
      assert.match(port, /^\d+$/);
      assert.ok(Number(port) >= 1 && Number(port) <= 65535);
      assert.ok(seen.every((env) => env.MASTER_PORT === port));
    });

    it("passes everything after -- to COMMAND untouched, with the launcher's environment", async () => {
      const { status, stderr } = await run(
        ['launch', '--nproc', '1', '--', NODE, '-e', RECORD, dir, '--nproc', '7', '--', '--help'],
        { env: { TCKA_MARK: 'kept' } },
      );
      assert.equal(status, 0, stderr);
      const [env] = records();
      assert.deepEqual(env.argv, ['--nproc', '7', '--', '--help']);
      assert.equal(env.TCKA_MARK, 'kept');
    });

    it('--nnodes 2 --node-rank 1 gives RANK 2 and 3 of WORLD_SIZE 4', async () => {
      const { status, stderr } = await run([
        'launch',
        '--nnodes',
        '2',
        '--node-rank',
        '1',
        '--nproc',
        '2',
        '--master-addr',
        '127.0.0.1',
        '--master-port',
        '29999',
        '--',
        NODE,
        '-e',
        RECORD,
        dir,
      ]);
      assert.equal(status, 0, stderr);
      const seen = records();
      assert.deepEqual(
        seen.map((env) => [env.RANK, env.LOCAL_RANK, env.WORLD_SIZE, env.LOCAL_WORLD_SIZE, env.GROUP_RANK]),
        [
          ['2', '0', '4', '2', '1'],
          ['3', '1', '4', '2', '1'],
        ],
      );
      assert.ok(seen.every((env) => env.MASTER_ADDR === '127.0.0.1' && env.MASTER_PORT === '29999'));
    });

    it('--nnodes 2 without --master-port uses 29500 and the given --master-addr', async () => {
      const args = ['launch', '--nnodes', '2', '--nproc', '1', '--master-addr', 'node0.example'];
      const { status, stderr } = await run([...args, '--', NODE, '-e', RECORD, dir]);
      assert.equal(status, 0, stderr);
      const [env] = records();
      assert.equal(env.RANK, '0');
      assert.equal(env.WORLD_SIZE, '2');
      assert.equal(env.MASTER_ADDR, 'node0.example');
      assert.equal(env.MASTER_PORT, '29500');
    });

    it('runs torch-cka commands with its own CLI', async () => {
      const { status, stdout, stderr } = await run(['launch', '--nproc', '2', '--', 'plot', '--help']);
      assert.equal(status, 0, stderr);
      assert.equal(stdout.match(/^Usage: torch-cka plot/gm)?.length, 2, stdout);
    });
  });

  describe('OMP_NUM_THREADS', () => {
    it('is 1 in the ranks when unset and N > 1, with one note', async () => {
      const { status, stderr } = await run(['launch', '--nproc', '2', '--', NODE, '-e', RECORD, dir]);
      assert.equal(status, 0, stderr);
      assert.ok(records().every((env) => env.OMP_NUM_THREADS === '1'));
      assert.equal(stderr.match(/OMP_NUM_THREADS=1/g)?.length, 1, stderr);
    });

    it('keeps a value that is set, without a note', async () => {
      const { status, stderr } = await run(['launch', '--nproc', '2', '--', NODE, '-e', RECORD, dir], {
        env: { OMP_NUM_THREADS: '3' },
      });
      assert.equal(status, 0, stderr);
      assert.ok(records().every((env) => env.OMP_NUM_THREADS === '3'));
      assert.doesNotMatch(stderr, /OMP_NUM_THREADS/);
    });

    it('is left unset with --nproc 1', async () => {
      const { status, stderr } = await run(['launch', '--nproc', '1', '--', NODE, '-e', RECORD, dir]);
      assert.equal(status, 0, stderr);
      assert.equal(records()[0].OMP_NUM_THREADS, null);
      assert.doesNotMatch(stderr, /OMP_NUM_THREADS/);
    });
  });

  describe('failures', () => {
    it('a rank exiting 3 makes launch exit 3, naming the rank', async () => {
      const { status, stderr } = await run([
        'launch',
        '--nproc',
        '2',
        '--',
        NODE,
        '-e',
        "process.exit(process.env.RANK === '1' ? 3 : 0)",
      ]);
      assert.equal(status, 3, stderr);
      assert.match(stderr, /^torch-cka launch: rank 1 \(pid \d+\) exited with code 3/m);
    });

    it('a failing rank stops a long-running one quickly', async () => {
      // Rank 0 sleeps 60 s; rank 1 waits for rank 0's pid file, then exits 4.
      const script = `
        const fs = require('fs');
        const path = require('path');
        if (process.env.RANK === '0') {
          fs.writeFileSync(path.join(process.argv[1], 'pid-0'), String(process.pid));
          setTimeout(() => {}, 60000);
        } else {
          const timer = setInterval(() => {
            if (fs.existsSync(path.join(process.argv[1], 'pid-0'))) process.exit(4);
          }, 20);
        }`;
      const { status, stderr, ms } = await run(['launch', '--nproc', '2', '--', NODE, '-e', script, dir]);
      assert.equal(status, 4, stderr);
      assert.ok(ms < 15000, `took ${ms} ms`);
      assert.match(stderr, /rank 1 \(pid \d+\) exited with code 4; stopping the other ranks/);
      assert.equal(alive(readPid(path.join(dir, 'pid-0'))), false);
    });

    it('a rank that ignores SIGTERM is killed after the grace period', async () => {
      const script = `
        const fs = require('fs');
        const path = require('path');
        if (process.env.RANK === '0') {
          process.on('SIGTERM', () => {});
          fs.writeFileSync(path.join(process.argv[1], 'pid-0'), String(process.pid));
          setTimeout(() => {}, 60000);
        } else {
          setInterval(() => {
            if (fs.existsSync(path.join(process.argv[1], 'pid-0'))) process.exit(5);
          }, 20);
        }`;
      const { status, stderr, ms } = await run(['launch', '--nproc', '2', '--', NODE, '-e', script, dir]);
      assert.equal(status, 5, stderr);
      assert.ok(ms >= 4500 && ms < 20000, `took ${ms} ms`);
      assert.equal(alive(readPid(path.join(dir, 'pid-0'))), false);
    });

    it('a rank killed by SIGKILL makes launch exit 137', async () => {
      const { status, stderr } = await run([
        'launch',
        '--nproc',
        '2',
        '--',
        NODE,
        '-e',
        "if (process.env.RANK === '1') process.kill(process.pid, 'SIGKILL')",
      ]);
      assert.equal(status, 137, stderr);
      assert.match(stderr, /rank 1 \(pid \d+\) was killed by SIGKILL/);
    });

    it('a program that does not exist exits 1, naming it', async () => {
      const { status, stderr } = await run(['launch', '--nproc', '2', '--', 'torch-cka-no-such-program', '-x']);
      assert.equal(status, 1, stderr);
      const last = stderr.trim().split('\n').pop();
      assert.match(last, /^torch-cka: .*'torch-cka-no-such-program' was not found.* \[ENOENT\]$/);
    });
  });

  describe('signals', () => {
    for (const [signal, code] of [
      ['SIGTERM', 143],
      ['SIGINT', 130],
    ]) {
      it(`${signal} to launch reaches the ranks; launch exits ${code} and the ranks are gone`, async () => {
        const { child, done } = start(['launch', '--nproc', '2', '--', NODE, '-e', SLEEP, dir]);
        const files = [0, 1].map((rank) => path.join(dir, `pid-${rank}`));
        try {
          await waitForFiles(files);
        } catch (error) {
          child.kill('SIGKILL');
          throw error;
        }
        const pids = files.map(readPid);
        assert.ok(pids.every(alive));
        child.kill(signal);
        const { status, stderr, ms } = await done;
        assert.equal(status, code, stderr);
        assert.ok(ms < 15000, `took ${ms} ms`);
        assert.deepEqual(pids.map(alive), [false, false]);
      });
    }
  });

  describe('usage errors', () => {
    const cases = [
      [['launch', '--', NODE, '-e', '0'], /needs --nproc N/],
      [['launch', '--nproc', '0', '--', NODE, '-e', '0'], /integer >= 1 for --nproc but received '0'/],
      [['launch', '--nproc', 'two', '--', NODE, '-e', '0'], /--nproc but received 'two'/],
      [['launch', '--nproc', '2', '--'], /needs a command after --/],
      [['launch', '--nproc', '2'], /needs a command after --/],
      [['launch', '--nproc', '2', 'compare', 'a.pt'], /put -- before 'compare a\.pt'/],
      [
        ['launch', '--nproc', '2', '--nnodes', '2', '--node-rank', '2', '--master-addr', 'h', '--', 'x'],
        /--node-rank from 0 to 1 .* received 2/,
      ],
      [['launch', '--nproc', '2', '--nnodes', '2', '--node-rank', '1', '--', 'x'], /--nnodes 2 needs --master-addr/],
      [['launch', '--nproc', '2', '--master-port', '70000', '--', 'x'], /port from 1 to 65535 .* '70000'/],
      [['launch', '--nproc', '2', '--master-port', '0', '--', 'x'], /--master-port but received '0'/],
      [['launch', '--nproc', '2', '--bogus', '--', 'x'], /Unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      it(`'${args.join(' ')}' is a usage error (exit 2, ERR_USAGE)`, async () => {
        const { status, stdout, stderr } = await run(args);
        assert.equal(status, 2, stderr);
        assert.equal(stdout, '');
        assert.equal(stderr.trim().split('\n').length, 1, stderr);
        assert.match(stderr, message);
        assert.match(stderr, /^torch-cka: .* \[ERR_USAGE\]$/m);
      });
    }
  });
});

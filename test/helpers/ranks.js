'use strict';
// Ranks of a distributed comparison on 127.0.0.1, each a child process
// running test/helpers/dist-child.js, for the slow distributed tests.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const { fixture } = require('.');

const CHILD = path.join(__dirname, 'dist-child.js');
const MODEL1 = fixture('mlp_scripted.pt');
const MODEL2 = fixture('mlp_traced.pt');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts one child per job (job.rank, job.worldSize set in its environment);
 * resolves with each child's output file and exit, in rank order.
 */
async function runRanks(dir, jobs, { worldSize = jobs.length, port, env = {}, reap = false } = {}) {
  const masterPort = port ?? (await freePort());
  const children = jobs.map((job, i) => {
    const rank = job.rank ?? i;
    const out = path.join(dir, `rank${i}-${Date.now()}.json`);
    const spec = { model1: MODEL1, model2: MODEL2, batchSize: 8, ...job, out };
    const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], {
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(worldSize),
        LOCAL_RANK: String(rank),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(masterPort),
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return { child, out, exited, stderr: () => stderr };
  });
  // reap: once rank 0 has exited, SIGKILL the rest (a stopped process never exits).
  if (reap) children[0].exited.then(() => children.slice(1).forEach((c) => c.child.kill('SIGKILL')));
  const exits = await Promise.all(children.map((c) => c.exited));
  return children.map((c, i) => ({
    ...exits[i],
    pid: c.child.pid,
    stderr: c.stderr(),
    output: fs.existsSync(c.out) ? JSON.parse(fs.readFileSync(c.out, 'utf8')) : null,
    progressFile: `${c.out}.progress`,
    out: c.out,
  }));
}

module.exports = { CHILD, freePort, runRanks };

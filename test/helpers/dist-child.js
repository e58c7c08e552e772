'use strict';
// One rank of a distributed comparison, for test/distributed.test.js and the
// benchmark. The job is a JSON argument:
//   { model1, model2, data, batchSize, limit?, layers1?, layers2?, source: 'dataset' | 'array' | 'generator',
//     distributed?: object | true, threads?, measures?, out, dieAfter?, stallAfter?, delayMs?, badData?, checkpoint? }
// Writes { result, summary } or { error: { code, message } } as JSON to `out`.
// dieAfter k: SIGKILLs itself after its k-th batch; stallAfter k: stops
// (SIGSTOP) after its k-th batch; delayMs: sleeps that long after each batch;
// badData: reads this file instead of `data` (a rank that fails on its data).
const fs = require('node:fs');
const { CKA, loadModel, openDataset, Tensor } = require('../../dist');

async function main() {
  const job = JSON.parse(process.argv[2]);
  const [m1, m2] = await Promise.all([loadModel(job.model1), loadModel(job.model2)]);
  const cka = new CKA(m1, m2, {
    ...(job.layers1 ? { model1Layers: job.layers1 } : {}),
    ...(job.layers2 ? { model2Layers: job.layers2 } : {}),
    ...(job.threads ? { threads: job.threads } : {}),
    ...(job.measures ? { measures: job.measures } : {}),
    onWarning: () => undefined,
  });
  const dataset = await openDataset(job.badData ?? job.data, {
    batchSize: job.batchSize,
    ...(job.limit ? { limit: job.limit } : {}),
  });
  let data = dataset;
  if (job.source === 'generator') {
    data = (async function* () {
      for await (const batch of dataset) yield batch;
    })();
  }
  if (job.source === 'array') {
    data = [];
    for await (const batch of dataset) data.push(new Tensor(batch.data.slice(), batch.shape));
  }
  let seen = 0;
  const summary = await cka.compare(data, undefined, {
    distributed: job.distributed ?? true,
    ...(job.checkpoint ? { checkpoint: { path: job.checkpoint, every: 2 } } : {}),
    onProgress: (progress) => {
      if (progress.distributed?.job) fs.appendFileSync(`${job.out}.progress`, `${JSON.stringify(progress)}\n`);
      seen += 1;
      if (job.dieAfter === seen) {
        fs.writeFileSync(`${job.out}.killed`, String(Date.now()));
        process.kill(process.pid, 'SIGKILL');
      }
      if (job.stallAfter === seen) process.kill(process.pid, 'SIGSTOP');
      if (job.delayMs) {
        const until = Date.now() + job.delayMs;
        while (Date.now() < until); // a slow rank: blocks like a long batch would
      }
    },
  });
  return { result: cka.export(), summary };
}

const job = JSON.parse(process.argv[2]);
const started = Date.now();
main().then(
  (out) => {
    fs.writeFileSync(job.out, JSON.stringify({ ...out, ms: Date.now() - started }));
  },
  (error) => {
    fs.writeFileSync(
      job.out,
      JSON.stringify({ error: { code: error.code, message: error.message }, at: Date.now(), ms: Date.now() - started }),
    );
    process.exitCode = 1;
  },
);

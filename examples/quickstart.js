// Compares two small TorchScript CNNs that ship with the repository (one
// traced, one scripted, different weights) on random images, and prints the
// CKA matrix. Run: npm run example
'use strict';
const path = require('node:path');
const { CKA, loadModel } = require('..');

const fixture = (name) => path.join(__dirname, '..', 'test', 'fixtures', name);

/** Batches of random 3x8x8 "images" from a seeded generator. */
function* randomImages(batches, batchSize, seed = 1) {
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
  for (let b = 0; b < batches; b += 1) {
    const data = new Float32Array(batchSize * 3 * 8 * 8).map(next);
    yield { data, shape: [batchSize, 3, 8, 8] };
  }
}

async function main() {
  const model1 = await loadModel(fixture('convnet_traced.pt'));
  const model2 = await loadModel(fixture('convnet_scripted.pt'));
  console.log(`${model1.name}: ${model1.layers().length} submodules; ${model2.name}: ${model2.layers().length}`);

  const layers = ['stem', 'block1', 'block2', 'block3', 'relu', 'pool', 'fc'];
  const cka = new CKA(model1, model2, { model1Layers: layers, model2Layers: layers, dataset1Name: 'random 3x8x8' });
  const onProgress = process.stdout.isTTY
    ? ({ batches, samples }) => process.stdout.write(`\rbatches ${batches}, samples ${samples}`)
    : undefined;
  await cka.compare(randomImages(8, 64), undefined, { onProgress });
  if (onProgress) process.stdout.write('\n');

  const result = cka.export();
  const width = Math.max(...result.model1Layers.map((name) => name.length));
  console.log(`\nMinibatch CKA, rows: ${result.model1Name}, columns: ${result.model2Name} (${result.samples} samples)`);
  console.log(`${''.padEnd(width)} ${result.model2Layers.map((name) => name.padStart(7)).join(' ')}`);
  result.cka.forEach((row, i) => {
    const cells = row.map((v) => (v === null ? 'null' : v.toFixed(3)).padStart(7));
    console.log(`${result.model1Layers[i].padEnd(width)} ${cells.join(' ')}`);
  });
  model1.dispose();
  model2.dispose();
}

main().catch((error) => {
  console.error(`${error.code ?? 'ERROR'}: ${error.message}`);
  process.exit(1);
});

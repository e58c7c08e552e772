// Compiled with `tsc --noEmit` by test/types.test.js: the public types are the contract.
import {
  CKA,
  loadModel,
  Tensor,
  ErrorCodes,
  type CKAResult,
  type LayerInfo,
  type Batch,
  type CKAError,
  readNpy,
  readCifar10,
  readImageFolder,
  openDataset,
  heatmapSvg,
  heatmapPng,
  reportHtml,
  bestMatches,
  validateResult,
  type Dataset,
  type BestMatch,
  type HeatmapOptions,
  type View,
  type FullBatchOptions,
  type FullBatchStats,
  type Measure,
  type NullReason,
} from 'torch-cka';

async function main(): Promise<void> {
  const m1 = await loadModel('resnet18.pt', { device: 'cpu' });
  const m2 = await loadModel('resnet34.pt');
  const layers: LayerInfo[] = m1.layers();
  const names: string[] = layers.map((l) => `${l.name}:${l.type}`);
  const batch: Batch = Tensor.from(new Float32Array(2 * 3), [2, 3]);
  const feats: Record<string, Tensor> = await m1.extract(batch, ['layer1', 'fc']);
  const cka = new CKA(m1, m2, {
    model1Name: 'ResNet18',
    model2Name: 'ResNet34',
    model1Layers: names,
    model2Layers: ['layer1'],
    model1Views: { 'layer*': 'spatial-mean', 'blocks.*': 'token:0' },
    model2Views: { layer1: 'token-mean' },
    dataset1Name: 'cifar',
    dataset2Name: 'svhn',
  });
  async function* data(): AsyncIterable<Batch> {
    yield { data: new Float32Array(12), shape: [4, 3] };
  }
  const summary = await cka.compare(data(), [batch], {
    onProgress: (p) => console.log(p.batches, p.samples),
    signal: new AbortController().signal,
  });
  const stopped: 'data1' | 'data2' | null = summary.stoppedEarly;
  const r: CKAResult = cka.export();
  const cell: number | null = r.cka?.[0]?.[0] ?? r.measures?.cka?.[0]?.[0] ?? null;
  const code: string = ErrorCodes.UNKNOWN_LAYER;
  const views: string[] = r.model1Views.concat(r.model2Views);
  const last: View = 'token:-1';
  console.log(views, last, ErrorCodes.VIEW_SHAPE);
  try {
    await m1.extract(batch);
  } catch (error) {
    const coded = error as CKAError;
    console.log(coded.code === 'ERR_UNKNOWN_LAYER');
  }
  console.log(feats, stopped, cell, code, r.model1Layers, r.samples, r.batches);

  const digits: Dataset = await readNpy('digits.npy', { batchSize: 60, shuffle: true, seed: 1, limit: 300 });
  const cifar = await readCifar10('cifar-10-batches-bin', { split: 'test', normalize: 'cifar10' });
  const images = await readImageFolder('photos', { resize: 256, centerCrop: [224, 224], normalize: 'imagenet' });
  const any = await openDataset('data.npy', { dropLast: true });
  await cka.compare(digits, cifar);
  const count: number = images.batchCount + any.length;
  const options: HeatmapOptions = { title: 't', colormap: 'viridis' };
  const svg: string = heatmapSvg(r, options);
  const png: Buffer = heatmapPng(r, { scale: 1 });
  const html: string = reportHtml(validateResult(JSON.parse(svg)), { title: 'x', version: '1' });
  const best: BestMatch[] = bestMatches(r);
  console.log(count, png.length, html.length, best[0]?.layer2);
  const fullOptions: FullBatchOptions = {
    samples: 1000,
    svccaVariance: 0.99,
    mknnK: 10,
    ccaRidge: 0,
    memoryBudget: 2 ** 33,
  };
  const ids: Measure[] = ['cka', 'linear_cka_biased', 'svcca', 'procrustes', 'rsa', 'mknn'];
  const full = new CKA(m1, m2, { measures: ids, fullBatch: fullOptions });
  new CKA(m1, m2, { fullBatch: 500 });
  await full.compare(digits, undefined, {
    onProgress: (p) => console.log(p.fullBatch?.phase, p.fullBatch?.done, p.fullBatch?.total),
  });
  const fr = full.export();
  const n: number | undefined = fr.fullBatch;
  const reason: NullReason | null | undefined = fr.nullReasons?.svcca?.[0]?.[0];
  const fills: boolean | undefined = fr.fullBatchInfo?.fills.model1[0];
  const fstats: FullBatchStats = full.fullBatchStats();
  console.log(n, reason, fills, fstats.groups, fstats.forwards, fstats.estimateBytes);
  m1.dispose();
  await m2[Symbol.asyncDispose]();
}

void main;

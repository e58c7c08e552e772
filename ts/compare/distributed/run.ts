// Sharded comparisons over many processes and hosts on PyTorch's c10d: a
// TCPStore served by rank 0 for the rendezvous, and Gloo (CPU) or NCCL (CUDA)
// for the one all-reduce of the float64 sums at the end. Rank r takes batches
// r, r + W, r + 2W, ... of the same ordered stream, so every rank reads the
// same sources without coordination. Between the start and the all-reduce the
// ranks talk only through small store keys:
//
//   tcka/claim/<r>    counter: a second process claiming rank r is refused
//   tcka/config/<r>   what rank r compares (models' SHA-256, layers, data, ...)
//   tcka/arrived      counter: the rendezvous waits for all W
//   tcka/beat/<r>     rank r's progress, rewritten after each batch: others
//                     take a beat that stops changing for `timeout` as death
//   tcka/failed       the first error of any rank: the others stop at once
//   tcka/out          counter: rank 0 keeps serving the store until all left
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { binding, type NativeGroup, type NativeRow, type NativeState } from '../../native/binding';
import { ErrorCodes, makeError } from '../../util/errors';
import type { CheckpointIdentity } from '../checkpoint';
import { localAddressTowards } from './network';
import type { DistributedInfo } from './settings';

/** The job's progress, summed over the ranks' last heartbeats. */
export interface JobProgress {
  /** Batches compared by all ranks. */
  batches: number;
  /** Samples compared by all ranks. */
  samples: number;
  /** Batches skipped by all ranks. */
  skipped: number;
  /** Ranks done with their share. */
  ranksDone: number;
}

/** Timings of a distributed compare() on this rank, in milliseconds. */
export interface DistributedTimings {
  /**
   * Start-up: hashing the model files for the check, connecting, waiting for
   * every rank, checking their settings, connecting the backend.
   */
  rendezvous: number;
  /** Waiting, after this rank's share, for the other ranks to finish theirs. */
  wait: number;
  /** The all-reduce of the sums. */
  allreduce: number;
}

interface Beat {
  batches: number;
  samples: number;
  skipped: number;
  position: number;
  done: boolean;
  rows1?: NativeRow[] | null;
  rows2?: NativeRow[] | null;
}

interface Failure {
  rank: number;
  code: string;
  message: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const stable = (value: unknown): string => JSON.stringify(value);
const seconds = (ms: number): string => `${+(ms / 1000).toFixed(1)} s`;

/** What must agree between ranks: the checkpoint identity, with paths that may differ between hosts cut to names. */
function rankIdentity(identity: CheckpointIdentity): Record<string, unknown> {
  const data = (d: unknown): unknown =>
    d !== null && typeof d === 'object' && 'path' in d ? { ...d, path: path.basename(String(d.path)) } : d;
  return {
    model1: { bytes: identity.model1.bytes, sha256: identity.model1.sha256 },
    model2: { bytes: identity.model2.bytes, sha256: identity.model2.sha256 },
    layers1: identity.layers1,
    layers2: identity.layers2,
    precision: identity.precision,
    skipNonFinite: identity.skipNonFinite,
    ...(identity.views1 ? { views1: identity.views1 } : {}),
    ...(identity.views2 ? { views2: identity.views2 } : {}),
    data1: data(identity.data1),
    data2: data(identity.data2),
  };
}

/** @internal One distributed compare(): rendezvous, heartbeats, the final all-reduce. */
export class DistributedRun {
  readonly timings: DistributedTimings = { rendezvous: 0, wait: 0, allreduce: 0 };
  readonly backend: string;
  private lastPoll = 0;
  private readonly seen: Array<{ text: string | null; at: number }>;
  private job: JobProgress = { batches: 0, samples: 0, skipped: 0, ranksDone: 0 };
  private closed = false;
  /** Ranks found dead or missing: rank 0 does not wait for them to leave. */
  private readonly dead = new Set<number>();

  private constructor(
    readonly info: DistributedInfo,
    private readonly group: NativeGroup,
    backend: string,
  ) {
    this.backend = backend;
    const now = performance.now();
    this.seen = Array.from({ length: info.worldSize }, () => ({ text: null, at: now }));
  }

  get rank(): number {
    return this.info.rank;
  }
  get worldSize(): number {
    return this.info.worldSize;
  }
  /** The job's progress at the last heartbeat read. */
  get progress(): JobProgress {
    return { ...this.job };
  }

  /**
   * Connects to the store, waits for every rank, refuses ranks that compare
   * something else, and connects the collective backend.
   */
  static async start(
    info: DistributedInfo,
    identity: CheckpointIdentity,
    device: string,
    started = performance.now(),
  ): Promise<DistributedRun> {
    const backends = binding().runtimeInfo().distributedBackends;
    let backend: string = info.backend;
    if (backend === 'auto') backend = device.startsWith('cuda') && backends.includes('nccl') ? 'nccl' : 'gloo';
    const group = await binding().connectGroup({
      rank: info.rank,
      worldSize: info.worldSize,
      masterAddr: info.masterAddr,
      masterPort: info.masterPort,
      timeoutMs: info.timeout,
      backend,
      cudaDevice: backend === 'nccl' ? info.localRank : -1,
      ifname: info.ifname,
      localAddr: info.ifname ? '' : await localAddressTowards(info.masterAddr, info.masterPort),
    });
    const run = new DistributedRun(info, group, backend);
    try {
      await run.rendezvous(rankIdentity(identity));
      await group.connectBackend();
    } catch (error) {
      await run.fail(error);
      await run.close();
      throw error;
    }
    run.timings.rendezvous = performance.now() - started;
    return run;
  }

  private async rendezvous(identity: Record<string, unknown>): Promise<void> {
    const { rank, worldSize, timeout } = this.info;
    if ((await this.group.add(`tcka/claim/${rank}`, 1)) > 1) {
      throw makeError(
        Error,
        ErrorCodes.DIST_MISMATCH,
        `Two processes claim rank ${rank} of ${worldSize}: give each process its own RANK (0 to ${worldSize - 1})`,
      );
    }
    await this.group.set(`tcka/config/${rank}`, stable(identity));
    await this.beat({ batches: 0, samples: 0, skipped: 0, position: 0, done: false });
    await this.group.add('tcka/arrived', 1);
    const deadline = performance.now() + timeout;
    for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
      const arrived = await this.group.add('tcka/arrived', 0);
      if (arrived >= worldSize) break;
      await this.checkFailed();
      if (performance.now() > deadline) {
        const claims = await this.group.get(Array.from({ length: worldSize }, (_, r) => `tcka/claim/${r}`));
        const missing = claims.flatMap((claim, r) => (claim === null ? [r] : []));
        for (const r of missing) this.dead.add(r);
        throw makeError(
          Error,
          ErrorCodes.DIST_TIMEOUT,
          `Rank ${rank} waited ${seconds(timeout)} for all ${worldSize} ranks at ${this.info.masterAddr}:` +
            `${this.info.masterPort}, but ${arrived} arrived; missing: rank${missing.length === 1 ? '' : 's'} ` +
            `${missing.join(', ')}. Start every rank (same MASTER_ADDR, MASTER_PORT and WORLD_SIZE), or raise the timeout`,
        );
      }
      await sleep(wait);
    }
    const configs = await this.group.get(Array.from({ length: worldSize }, (_, r) => `tcka/config/${r}`));
    const reference = JSON.parse(configs[0] ?? 'null') as Record<string, unknown>;
    for (let r = 1; r < worldSize; r += 1) {
      const other = JSON.parse(configs[r] ?? 'null') as Record<string, unknown>;
      const field = Object.keys(reference).find((key) => stable(reference[key]) !== stable(other?.[key]));
      if (field === undefined) continue;
      const show = (value: unknown): string => {
        const text = stable(value);
        return text.length > 100 ? `${text.slice(0, 100)}…` : text;
      };
      throw makeError(
        Error,
        ErrorCodes.DIST_MISMATCH,
        `Rank ${r} was started with ${field} ${show(other?.[field])}, but rank 0 with ${show(reference[field])}: ` +
          'every rank must compare the same models, layers, data and settings',
      );
    }
  }

  private async beat(beat: Beat): Promise<void> {
    await this.group.set(`tcka/beat/${this.info.rank}`, stable(beat));
  }

  /** Throws ERR_DIST_RANK_FAILED if another rank has failed. */
  private async checkFailed(): Promise<void> {
    const [failed] = await this.group.get(['tcka/failed']);
    if (failed === null || failed === undefined) return;
    const failure = JSON.parse(failed) as Failure;
    throw makeError(
      Error,
      ErrorCodes.DIST_RANK_FAILED,
      `Rank ${failure.rank} failed, so rank ${this.info.rank} stopped too: ${failure.message} [${failure.code}]`,
    );
  }

  /**
   * Reads every rank's heartbeat: updates the job's progress, and fails with
   * ERR_DIST_TIMEOUT when a rank not done has been silent for the timeout.
   * Returns the beats.
   */
  private async poll(): Promise<Array<Beat | null>> {
    this.lastPoll = performance.now();
    const texts = await this.group.get(Array.from({ length: this.info.worldSize }, (_, r) => `tcka/beat/${r}`));
    const now = performance.now();
    const beats = texts.map((text) => (text === null ? null : (JSON.parse(text) as Beat)));
    const job: JobProgress = { batches: 0, samples: 0, skipped: 0, ranksDone: 0 };
    for (let r = 0; r < beats.length; r += 1) {
      const beat = beats[r];
      const text = texts[r] ?? null;
      let seen = this.seen[r] ?? { text: null, at: now };
      if (text !== seen.text) seen = { text, at: now };
      this.seen[r] = seen;
      if (beat) {
        job.batches += beat.batches;
        job.samples += beat.samples;
        job.skipped += beat.skipped;
        if (beat.done) job.ranksDone += 1;
      }
      if (r !== this.info.rank && !beat?.done && now - seen.at > this.info.timeout) {
        this.dead.add(r);
        throw makeError(
          Error,
          ErrorCodes.DIST_TIMEOUT,
          `Rank ${r} has not been heard from for ${seconds(now - seen.at)} (timeout ${seconds(this.info.timeout)}; ` +
            `its last beat: ${beat ? `${beat.batches} batches` : 'none'}): it died or hangs. ` +
            'The timeout must exceed one batch',
        );
      }
    }
    this.job = job;
    return beats;
  }

  /** After each batch: posts this rank's progress; stops if another rank failed or fell silent. */
  async batchDone(local: { batches: number; samples: number; skipped: number; position: number }): Promise<void> {
    await this.beat({ ...local, done: false });
    await this.checkFailed();
    if (performance.now() - this.lastPoll >= 1000) await this.poll();
  }

  /**
   * After this rank's share: waits for every rank to finish theirs, then sums
   * the states with one all-reduce. `state` is this rank's (null if it
   * compared nothing). Returns the total, or null when no rank compared a batch.
   */
  async finish(
    state: NativeState | null,
    local: { batches: number; samples: number; skipped: number; position: number },
    onProgress?: (job: JobProgress) => void,
    measures: { count: number; sigma1: Float64Array; sigma2: Float64Array } = {
      count: 1,
      sigma1: new Float64Array(0),
      sigma2: new Float64Array(0),
    },
  ): Promise<NativeState | null> {
    const waitStart = performance.now();
    await this.beat({ ...local, done: true, rows1: state?.rows1 ?? null, rows2: state?.rows2 ?? null });
    let beats: Array<Beat | null>;
    // Short sleeps: a rank that sees everyone done enters the all-reduce and
    // waits there for the others to see it too.
    for (let wait = 2; ; wait = Math.min(wait * 2, 20)) {
      await this.checkFailed();
      beats = await this.poll();
      onProgress?.(this.progress);
      if (beats.every((beat) => beat?.done)) break;
      await sleep(wait);
    }
    this.timings.wait = performance.now() - waitStart;

    // Rows are planned by each rank's first batch; every rank with data must agree.
    const withRows = beats.flatMap((beat, r) => (beat?.rows1 ? [{ r, beat }] : []));
    const firstWithRows = withRows[0];
    if (firstWithRows === undefined) return null;
    const { r: first, beat: reference } = firstWithRows;
    for (const { r, beat } of withRows) {
      if (stable(beat.rows1) !== stable(reference.rows1) || stable(beat.rows2) !== stable(reference.rows2)) {
        throw makeError(
          Error,
          ErrorCodes.DIST_MISMATCH,
          `Rank ${r} found other layer calls than rank ${first} (a module called a different number of times ` +
            'per forward pass): the ranks cannot be summed',
        );
      }
    }
    const rows1 = reference.rows1 as NativeRow[];
    const rows2 = reference.rows2 as NativeRow[];
    const m = rows1.length;
    const p = rows2.length;
    // One block of sums per measure (M x m·p, M x m, M x p); the RBF σ are
    // the same on every rank (all fix them from the stream's batch 0).
    const [mp, mm, pp] = [measures.count * m * p, measures.count * m, measures.count * p];
    const values = new Float64Array(mp + mm + pp + 4);
    if (state) {
      values.set(state.xy, 0);
      values.set(state.xx, mp);
      values.set(state.yy, mp + mm);
    }
    const counts = mp + mm + pp;
    values[counts] = state?.steps ?? local.skipped;
    values[counts + 1] = state?.batches ?? 0;
    values[counts + 2] = state?.samples ?? 0;
    values[counts + 3] = state?.skipped ?? local.skipped;
    const reduceStart = performance.now();
    const total = await this.group.allreduce(values);
    this.timings.allreduce = performance.now() - reduceStart;
    return {
      rows1,
      rows2,
      xy: total.slice(0, mp),
      xx: total.slice(mp, mp + mm),
      yy: total.slice(mp + mm, counts),
      sigma1: state?.sigma1 ?? measures.sigma1,
      sigma2: state?.sigma2 ?? measures.sigma2,
      steps: total[counts] ?? 0,
      batches: total[counts + 1] ?? 0,
      samples: total[counts + 2] ?? 0,
      skipped: total[counts + 3] ?? 0,
    };
  }

  /** Tells the other ranks that this one failed (best effort), so that they stop at once. */
  async fail(error: unknown): Promise<void> {
    const code = (error as { code?: unknown })?.code;
    // A rank that stops because of another's failure or silence does not report it again.
    if (code === ErrorCodes.DIST_RANK_FAILED || code === ErrorCodes.DIST_TIMEOUT || this.closed) return;
    const failure: Failure = {
      rank: this.info.rank,
      code: typeof code === 'string' ? code : 'ERR_INTERNAL',
      message: error instanceof Error ? error.message : String(error),
    };
    try {
      if ((await this.group.add('tcka/failures', 1)) === 1) await this.group.set('tcka/failed', stable(failure));
    } catch {
      // The store is gone: the others find out by themselves.
    }
  }

  /** Leaves the job. Rank 0, which serves the store, waits (a little) for the others to leave first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.group.add('tcka/out', 1);
    } catch {
      // the store is gone
    }
    const alive = this.info.worldSize - this.dead.size;
    await this.group.close('tcka/out', Math.min(this.info.timeout, 30_000), alive).catch(() => undefined);
  }
}

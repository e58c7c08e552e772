// Where this process sits in a distributed job: torchrun's variables (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or the `distributed`
// option of compare(), checked and resolved into one DistributedInfo.
import { describe, ErrorCodes, invalidArgType, makeError } from '../../util/errors';

/** Where this process sits in a distributed job; torchrun's variables, or the `distributed` option of compare(). */
export interface DistributedOptions {
  /** This process's rank, 0 .. worldSize-1. Default: `RANK`. */
  rank?: number;
  /** The number of processes. Default: `WORLD_SIZE`. */
  worldSize?: number;
  /** The rank among this host's processes; picks `cuda:localRank` for NCCL. Default: `LOCAL_RANK`, else 0. */
  localRank?: number;
  /** Host of rank 0, which serves the rendezvous store. Default: `MASTER_ADDR`, else 127.0.0.1. */
  masterAddr?: string;
  /** Port of the store on rank 0. Default: `MASTER_PORT`, else 29500. */
  masterPort?: number;
  /**
   * Milliseconds to wait for a rank that has not arrived, or that stopped
   * making progress (it must exceed one batch's time). Default:
   * `TORCH_CKA_DIST_TIMEOUT` (seconds), else 300 s.
   */
  timeout?: number;
  /** `auto` (default): NCCL for models on CUDA where this build has it, else Gloo. */
  backend?: 'auto' | 'gloo' | 'nccl';
  /** Gloo's network interface, e.g. `eth0`. Default: `GLOO_SOCKET_IFNAME`, else by address. */
  ifname?: string;
}

/** A resolved distributed setting. */
export interface DistributedInfo {
  /** This process's rank, 0 .. worldSize-1. */
  rank: number;
  /** The number of processes. */
  worldSize: number;
  /** The rank among this host's processes. */
  localRank: number;
  /** Host of rank 0 (the rendezvous store). */
  masterAddr: string;
  /** Port of the store. */
  masterPort: number;
  /** Milliseconds to wait for a missing or silent rank. */
  timeout: number;
  /** The backend asked for; `auto` picks NCCL for CUDA models where built, else Gloo. */
  backend: 'auto' | 'gloo' | 'nccl';
  /** Gloo's network interface; '' picks it by address. */
  ifname: string;
}

export const DEFAULT_DIST_TIMEOUT_MS = 300_000;

const configError = (message: string): Error => makeError(RangeError, ErrorCodes.DIST_CONFIG, message);

function integerFrom(value: unknown, name: string, min: number, max: number): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    throw configError(`${name} must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return number;
}

/**
 * The distributed setting torchrun (or `torch-cka launch`) gave this process,
 * read from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; null when
 * WORLD_SIZE is not set.
 */
export function distributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedInfo | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') return null;
  return resolveDistributed({}, env);
}

/** @internal `true` (the environment) or an object over the environment. */
export function resolveDistributed(option: unknown, env: NodeJS.ProcessEnv = process.env): DistributedInfo {
  if (option !== true && (option === null || typeof option !== 'object' || Array.isArray(option))) {
    throw invalidArgType(
      `Expected true or an object for options.distributed but received ${describe(option)}; true reads ` +
        "torchrun's RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT",
    );
  }
  const o = (option === true ? {} : option) as Record<string, unknown>;
  const known = ['rank', 'worldSize', 'localRank', 'masterAddr', 'masterPort', 'timeout', 'backend', 'ifname'];
  const unknown = Object.keys(o).find((key) => !known.includes(key));
  if (unknown !== undefined) {
    throw invalidArgType(`Unknown option distributed.${unknown}; known: ${known.join(', ')}`);
  }
  const pick = (key: string, envName: string): unknown => (o[key] !== undefined ? o[key] : env[envName]);
  const rawWorld = pick('worldSize', 'WORLD_SIZE');
  const rawRank = pick('rank', 'RANK');
  if (rawWorld === undefined || rawWorld === '' || rawRank === undefined || rawRank === '') {
    throw configError(
      `A distributed compare() needs ${rawWorld === undefined || rawWorld === '' ? 'WORLD_SIZE' : 'RANK'}: run it ` +
        'under `torch-cka launch --nproc N -- ...` or torchrun, or give distributed.rank and distributed.worldSize',
    );
  }
  const worldSize = integerFrom(
    rawWorld,
    o.worldSize !== undefined ? 'distributed.worldSize' : 'WORLD_SIZE',
    1,
    1 << 20,
  );
  const rank = integerFrom(rawRank, o.rank !== undefined ? 'distributed.rank' : 'RANK', 0, worldSize - 1);
  const rawLocal = pick('localRank', 'LOCAL_RANK');
  const localRank =
    rawLocal === undefined || rawLocal === ''
      ? 0
      : integerFrom(rawLocal, o.localRank !== undefined ? 'distributed.localRank' : 'LOCAL_RANK', 0, 1 << 16);
  const rawAddr = pick('masterAddr', 'MASTER_ADDR');
  if (rawAddr !== undefined && (typeof rawAddr !== 'string' || rawAddr === '')) {
    throw configError(`MASTER_ADDR / distributed.masterAddr must be a host name or address, got ${describe(rawAddr)}`);
  }
  const rawPort = pick('masterPort', 'MASTER_PORT');
  const masterPort =
    rawPort === undefined || rawPort === ''
      ? 29500
      : integerFrom(rawPort, o.masterPort !== undefined ? 'distributed.masterPort' : 'MASTER_PORT', 1, 65535);
  let timeout = DEFAULT_DIST_TIMEOUT_MS;
  if (o.timeout !== undefined) {
    timeout = integerFrom(o.timeout, 'distributed.timeout (ms)', 1, 2 ** 40);
  } else if (env.TORCH_CKA_DIST_TIMEOUT) {
    const seconds = Number(env.TORCH_CKA_DIST_TIMEOUT);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      throw configError(`TORCH_CKA_DIST_TIMEOUT must be a number of seconds > 0, got '${env.TORCH_CKA_DIST_TIMEOUT}'`);
    }
    timeout = Math.ceil(seconds * 1000);
  }
  const backend = o.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'gloo' && backend !== 'nccl') {
    throw configError(`distributed.backend must be 'auto', 'gloo' or 'nccl', got ${describe(backend)}`);
  }
  const ifname = o.ifname ?? env.GLOO_SOCKET_IFNAME ?? '';
  if (typeof ifname !== 'string') throw configError(`distributed.ifname must be a string, got ${describe(ifname)}`);
  return {
    rank,
    worldSize,
    localRank,
    masterAddr: (rawAddr as string | undefined) ?? '127.0.0.1',
    masterPort,
    timeout,
    backend,
    ifname,
  };
}

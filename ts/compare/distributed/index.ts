// Sharded comparisons over many processes and hosts (see run.ts for the protocol).
export { DEFAULT_DIST_TIMEOUT_MS, distributedEnv, resolveDistributed } from './settings';
export type { DistributedInfo, DistributedOptions } from './settings';
export { DistributedRun } from './run';
export type { DistributedTimings, JobProgress } from './run';

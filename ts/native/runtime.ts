import { binding, type RuntimeInfo } from './binding';

/** The libtorch the addon runs on: version, CUDA, intra-op thread count. */
export function runtimeInfo(): RuntimeInfo {
  return binding().runtimeInfo();
}

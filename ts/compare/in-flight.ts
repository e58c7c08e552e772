// Comparisons with a batch in native code. When the process exits (Node waits
// for running native work), they are cancelled so that it stops at the next
// layer instead of finishing the batch.
import type { NativeCKA } from '../native/binding';

const inFlight = new Set<NativeCKA>();
let exitHookInstalled = false;
export function track(native: NativeCKA): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const running of inFlight) running.cancel();
    });
  }
  inFlight.add(native);
}

/** The comparison is no longer running native work. */
export function untrack(native: NativeCKA): void {
  inFlight.delete(native);
}

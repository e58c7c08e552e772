// Progress of a compare: a bar redrawn in place on a terminal, a plain line
// every few seconds otherwise (logs, CI), nothing when quiet.

export interface ProgressOptions {
  /** Batches expected in all, when known. */
  total?: number;
  quiet?: boolean;
  /** Seconds between plain lines when the stream is not a terminal. */
  interval?: number;
  /** Clock in milliseconds; replaceable for tests. */
  now?: () => number;
}

export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
};

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly total: number | undefined;
  private readonly quiet: boolean;
  private readonly tty: boolean;
  private readonly interval: number;
  private readonly now: () => number;
  private readonly start: number;
  private lastPrint = Number.NEGATIVE_INFINITY;
  private drawn = false;
  private batches = 0;
  private samples = 0;
  private base = 0;
  /** The full-batch mode's phase, once reported: the line shows it instead of batches. */
  private stage: { phase: string; done: number; total: number } | undefined;

  constructor(stream: NodeJS.WriteStream, options: ProgressOptions = {}) {
    this.stream = stream;
    this.total = options.total;
    this.quiet = options.quiet ?? false;
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
    this.interval = (options.interval ?? 5) * 1000;
    this.now = options.now ?? Date.now;
    this.start = this.now();
  }

  /** The line shown for the current state. */
  line(): string {
    const elapsed = (this.now() - this.start) / 1000;
    if (this.stage) return this.stageLine(this.stage, elapsed);
    const rate = elapsed > 0 ? this.samples / elapsed : 0;
    const parts: string[] = [];
    if (this.total !== undefined && this.total > 0) {
      const fraction = Math.min(1, this.batches / this.total);
      const done = this.batches - this.base;
      const eta = done > 0 ? (elapsed / done) * (this.total - this.batches) : Number.NaN;
      parts.push(`batch ${this.batches}/${this.total} (${Math.floor(fraction * 100)}%)`);
      parts.push(`${rate.toFixed(rate >= 100 ? 0 : 1)} samples/s`);
      parts.push(`ETA ${formatDuration(eta)}`);
    } else {
      parts.push(`batch ${this.batches}`, `${rate.toFixed(rate >= 100 ? 0 : 1)} samples/s`);
    }
    parts.push(`elapsed ${formatDuration(elapsed)}`);
    return parts.join(', ');
  }

  /** Batches done before this run (restored from a checkpoint): shown, but not counted in the rate. */
  resumeAt(batches: number): void {
    this.base = batches;
  }

  update(batches: number, samples: number): void {
    this.batches = batches;
    this.samples = samples;
    if (this.quiet) return;
    const now = this.now();
    if (this.tty) {
      if (now - this.lastPrint < 100 && batches !== this.total) return;
      this.lastPrint = now;
      this.stream.write(`\r\x1b[2K${this.bar()} ${this.line()}`);
      this.drawn = true;
    } else if (now - this.lastPrint >= this.interval || batches === this.total) {
      this.lastPrint = now;
      this.stream.write(`${this.line()}\n`);
    }
  }

  /**
   * The full-batch mode: `reading` (samples of N), `forward` (chunk forward
   * passes) or `measures` (units of work), each with done of total. A new
   * phase is always shown; on a terminal the bar follows the phase.
   */
  phase(phase: string, done: number, total: number): void {
    const changed = this.stage?.phase !== phase;
    const finished = done >= total;
    this.stage = { phase, done, total };
    if (this.quiet) return;
    const now = this.now();
    if (this.tty) {
      if (!changed && !finished && now - this.lastPrint < 100) return;
      this.lastPrint = now;
      this.stream.write(`\r\x1b[2K${this.bar()} ${this.line()}`);
      this.drawn = true;
    } else if (changed || now - this.lastPrint >= this.interval) {
      this.lastPrint = now;
      this.stream.write(`${this.line()}\n`);
    }
  }

  private stageLine(stage: { phase: string; done: number; total: number }, elapsed: number): string {
    const unit = stage.phase === 'reading' ? ' samples' : stage.phase === 'forward' ? ' forward passes' : '';
    const fraction = stage.total > 0 ? Math.min(1, stage.done / stage.total) : 0;
    const parts = [`${stage.phase} ${stage.done}/${stage.total}${unit} (${Math.floor(fraction * 100)}%)`];
    parts.push(`elapsed ${formatDuration(elapsed)}`);
    return parts.join(', ');
  }

  /** Ends the bar's line, leaving the last state visible. */
  done(): void {
    if (this.quiet || !this.drawn) return;
    this.stream.write(`\r\x1b[2K${this.bar()} ${this.line()}\n`);
    this.drawn = false;
  }

  private bar(): string {
    const width = 24;
    if (this.stage) {
      const { done, total } = this.stage;
      const filled = total > 0 ? Math.round(Math.min(1, done / total) * width) : 0;
      return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    }
    if (this.total === undefined || this.total <= 0) return '';
    const filled = Math.round(Math.min(1, this.batches / this.total) * width);
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  }
}

// A TorchScript model loaded for comparison: loadModel() checks the file
// (structure and checksums in native code, then a load in a child process),
// loads it on its device in eval mode, and lists its submodules.
import { binding, type NativeModel } from '../native/binding';
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';
import { optionalBoolean, optionalObject, optionalString, optionalStringArray, requireString } from '../util/is';
import { type Batch, Tensor, toNativeBatch } from './tensor';
import { verifyModelFile } from '../native/verify';

/** A named submodule, in definition order (named_modules, root left out). */
export interface LayerInfo {
  /** Dotted path, e.g. `layer1.0.conv1`. */
  name: string;
  /** Class name, e.g. `Conv2d`. */
  type: string;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** `cpu` (default), `cuda` or `cuda:N`; CUDA needs a CUDA build of libtorch. */
  device?: string;
  /** Display name; defaults to the file's base name without extension. */
  name?: string;
  /**
   * Load the file once in a child process first (default `true`), so that a
   * damaged or crafted file that crashes libtorch's reader fails with
   * ERR_MODEL_LOAD instead of ending this process. Each file is checked once
   * per process (about 0.3 s); `false` skips it for files you made yourself.
   */
  verify?: boolean;
}

const baseName = (file: string): string => {
  const name = file.split(/[\\/]/).pop() ?? file;
  return name.replace(/\.(pt|pth|ptl|zip)$/i, '');
};

/** A TorchScript model loaded for comparison. Create with {@link loadModel}. */
export class Model {
  /** @internal */
  readonly native: NativeModel;
  /** The display name: LoadModelOptions.name, else the file's base name without extension. */
  readonly name: string;

  /** @internal */
  constructor(native: NativeModel, name: string) {
    this.native = native;
    this.name = name;
  }

  /** The file the model was loaded from. */
  get path(): string {
    return this.native.path;
  }

  /** The device the model runs on, e.g. `cpu` or `cuda:0`. */
  get device(): string {
    return this.native.device;
  }

  /** True after {@link Model.dispose}: the model can no longer be used (ERR_DISPOSED). */
  get disposed(): boolean {
    return this.native.disposed;
  }

  /**
   * Named submodules in definition order, root left out, as PyTorch's
   * `named_modules()` gives them, e.g. `{ name: 'layer1.0.conv1', type: 'Conv2d' }`.
   */
  layers(): LayerInfo[] {
    this.assertLive();
    return this.native.layers().map(({ name, type }) => ({ name, type }));
  }

  /**
   * Runs one batch and returns the outputs of `layers` (default: every
   * submodule that runs), keyed `name`, `name#2`, ... for modules called more
   * than once. A tuple or list output gives its first tensor.
   */
  async extract(batch: Batch, layers?: readonly string[]): Promise<Record<string, Tensor>> {
    this.assertLive();
    const names = optionalStringArray(layers, 'layers') ?? [];
    const features = await this.native.extract(toNativeBatch(batch, 'the batch'), names);
    const out: Record<string, Tensor> = {};
    for (const [name, tensor] of features) out[name] = new Tensor(tensor.data, tensor.shape);
    return out;
  }

  /** Frees the model. Work already running finishes first; later calls fail with ERR_DISPOSED. */
  dispose(): void {
    this.native.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  private assertLive(): void {
    if (this.native.disposed) {
      throw makeError(Error, ErrorCodes.DISPOSED, `Model '${this.name}' (${this.path}) has been disposed`);
    }
  }
}

/**
 * Loads a TorchScript file (`torch.jit.script` or `torch.jit.trace`, saved
 * with `torch.jit.save`) onto a device, in eval mode, without autograd.
 */
export async function loadModel(path: string, options?: LoadModelOptions): Promise<Model> {
  requireString(path, 'path');
  const opts = optionalObject(options, 'options');
  const device = optionalString(opts.device, 'options.device') ?? 'cpu';
  const name = optionalString(opts.name, 'options.name') ?? baseName(path);
  const verify = optionalBoolean(opts.verify, 'options.verify') ?? true;
  if (verify) await verifyModelFile(path);
  const native = await binding().loadModel(path, device);
  return new Model(native, name);
}

export function requireModel(value: unknown, what: string): Model {
  if (!(value instanceof Model)) {
    throw invalidArgType(`Expected ${what} to be a Model from loadModel() but received ${describe(value)}`);
  }
  if (value.disposed) {
    throw makeError(Error, ErrorCodes.DISPOSED, `${what} ('${value.name}') has been disposed`);
  }
  return value;
}

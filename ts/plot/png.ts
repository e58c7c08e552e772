// SVG to PNG with resvg (a Rust renderer: no browser, no system libraries beyond the fonts).
import type { ResvgRenderOptions } from '@resvg/resvg-js';
import type { CKAResult } from '../compare/types';
import { describe, invalidArgType } from '../util/errors';
import { optionalFunction, optionalObject, requireString } from '../util/is';
import { heatmapSvg, type HeatmapOptions } from './heatmap';
import { optionalPositiveNumber } from './options';

export interface PlotWarning {
  code: 'TORCH_CKA_NO_FONT';
  message: string;
}

export interface PngOptions {
  /** Pixels per SVG px. Default 2, for a crisp picture. */
  scale?: number;
  /** Font files to use besides the system's (e.g. a DejaVuSans.ttf shipped with an app). */
  fontFiles?: readonly string[];
  /** Folders of font files to use besides the system's. */
  fontDirs?: readonly string[];
  /** Receives warnings (no usable font: the text would be missing); default: `process.emitWarning`, once. */
  onWarning?: (warning: PlotWarning) => void;
}

type ResvgModule = typeof import('@resvg/resvg-js');
let resvgModule: ResvgModule | undefined;
const resvg = (): ResvgModule => (resvgModule ??= require('@resvg/resvg-js') as ResvgModule);

function optionalPaths(value: unknown, name: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0)) {
    throw invalidArgType(`Expected an array of paths for ${name} but received ${describe(value)}`);
  }
  return [...(value as string[])];
}

function fontOptions(fontFiles: string[], fontDirs: string[]): NonNullable<ResvgRenderOptions['font']> {
  return {
    loadSystemFonts: true,
    fontFiles,
    fontDirs,
    defaultFontFamily: 'DejaVu Sans',
    sansSerifFamily: 'DejaVu Sans',
  };
}

const fontProbes = new Map<string, boolean>();

/**
 * Whether resvg finds a font to draw text with (system fonts plus the given files and folders):
 * renders a short text and looks for ink. Cached per set of files and folders.
 */
export function hasUsableFont(options?: Pick<PngOptions, 'fontFiles' | 'fontDirs'>): boolean {
  const opts = optionalObject(options, 'options');
  const fontFiles = optionalPaths(opts.fontFiles, 'options.fontFiles');
  const fontDirs = optionalPaths(opts.fontDirs, 'options.fontDirs');
  const key = JSON.stringify([fontFiles, fontDirs]);
  let found = fontProbes.get(key);
  if (found === undefined) {
    const probe =
      '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="24">' +
      '<text x="2" y="18" font-size="16" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif">Hg</text></svg>';
    const { pixels } = new (resvg().Resvg)(probe, { font: fontOptions(fontFiles, fontDirs) }).render();
    found = false;
    for (let i = 3; i < pixels.length; i += 4) {
      if (pixels[i] !== 0) {
        found = true;
        break;
      }
    }
    fontProbes.set(key, found);
  }
  return found;
}

let warnedNoFont = false;
const defaultWarning = (warning: PlotWarning): void => {
  if (warnedNoFont) return;
  warnedNoFont = true;
  process.emitWarning(warning.message, { type: 'TorchCkaWarning', code: warning.code });
};

/** Renders an SVG document to PNG bytes. Without any usable font the text is left out and a warning is given. */
export function svgToPng(svg: string, options?: PngOptions): Buffer {
  requireString(svg, 'svg');
  const opts = optionalObject(options, 'options');
  const scale = optionalPositiveNumber(opts.scale, 'options.scale') ?? 2;
  const fontFiles = optionalPaths(opts.fontFiles, 'options.fontFiles');
  const fontDirs = optionalPaths(opts.fontDirs, 'options.fontDirs');
  const warn = optionalFunction<(w: PlotWarning) => void>(opts.onWarning, 'options.onWarning') ?? defaultWarning;
  if (/<text[\s>]/.test(svg) && !hasUsableFont({ fontFiles, fontDirs })) {
    warn({
      code: 'TORCH_CKA_NO_FONT',
      message:
        'No usable font was found, so the PNG has no text (titles, layer names, values); ' +
        'install one, e.g. `apt-get install fonts-dejavu-core`, or pass fontFiles',
    });
  }
  const rendered = new (resvg().Resvg)(svg, {
    font: fontOptions(fontFiles, fontDirs),
    fitTo: { mode: 'zoom', value: scale },
  }).render();
  return rendered.asPng();
}

/** heatmapSvg() rendered to PNG bytes. */
export function heatmapPng(result: CKAResult, options?: HeatmapOptions & PngOptions): Buffer {
  const opts = optionalObject(options, 'options');
  const { scale, fontFiles, fontDirs, onWarning, ...heatmapOptions } = opts;
  return svgToPng(heatmapSvg(result, heatmapOptions as HeatmapOptions), {
    scale,
    fontFiles,
    fontDirs,
    onWarning,
  } as PngOptions);
}

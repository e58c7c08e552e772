// Colour tables for CKA values: matplotlib's magma (torch_cka's choice) and viridis.
import { magmaHex, viridisHex } from './colormaps';

export type ColormapName = 'magma' | 'viridis';
export const colormapNames: readonly ColormapName[] = ['magma', 'viridis'];

/** An sRGB colour, channels 0..255. */
export type Rgb = readonly [number, number, number];

function decode(chunks: readonly string[]): readonly Rgb[] {
  const hex = chunks.join('');
  const table: Rgb[] = [];
  for (let i = 0; i < hex.length; i += 6) {
    table.push([
      Number.parseInt(hex.slice(i, i + 2), 16),
      Number.parseInt(hex.slice(i + 2, i + 4), 16),
      Number.parseInt(hex.slice(i + 4, i + 6), 16),
    ]);
  }
  return Object.freeze(table);
}

/** The 256-entry tables, index 0 for CKA 0 and index 255 for CKA 1. */
export const colormaps: Readonly<Record<ColormapName, readonly Rgb[]>> = Object.freeze({
  magma: decode(magmaHex),
  viridis: decode(viridisHex),
});

/**
 * The table entry for a CKA value: [0, 1] is split into 256 equal bins as
 * matplotlib does; values outside (rounding can give 1.0000001 or -1e-9) are clamped.
 */
export function colorOf(value: number, name: ColormapName = 'magma'): Rgb {
  const table = colormaps[name];
  const v = Number.isNaN(value) ? 0 : Math.min(1, Math.max(0, value));
  const index = Math.min(table.length - 1, Math.floor(v * table.length));
  return table[index] as Rgb;
}

export const rgbHex = (rgb: Rgb): string => `#${rgb.map((c) => c.toString(16).padStart(2, '0')).join('')}`;

/** `colorOf` as `#rrggbb`. */
export const colorHex = (value: number, name: ColormapName = 'magma'): string => rgbHex(colorOf(value, name));

/** Relative luminance (WCAG), to pick black or white text over a colour. */
export function luminance(rgb: Rgb): number {
  const [r, g, b] = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export { colorHex, colormapNames, colormaps, colorOf } from './colormap';
export type { ColormapName, Rgb } from './colormap';
export { DEFAULT_FONT_FAMILY, defaultTitle, heatmapSvg, UNDEFINED_LEGEND } from './heatmap';
export type { HeatmapOptions } from './heatmap';
export { hasUsableFont, heatmapPng, svgToPng } from './png';
export type { PlotWarning, PngOptions } from './png';
export { escapeXml, formatCka } from './text';
export { validateResult } from './validate';

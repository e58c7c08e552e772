// Text helpers for the SVG and HTML renderers: escaping and an approximate width.

// Characters XML 1.0 forbids (C0 controls other than tab/newline/return, lone surrogates, U+FFFE/U+FFFF).
// eslint-disable-next-line no-control-regex
const invalidXmlChars =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for XML/HTML element content and quoted attributes; drops characters XML cannot hold. */
export function escapeXml(text: string): string {
  return text.replace(invalidXmlChars, '\uFFFD').replace(/[&<>"']/g, (c) => entities[c] ?? c);
}

// Advance widths in 1/1000 em of DejaVu Sans (the widest of the default fonts) for ASCII 32..126,
// read from DejaVuSans.ttf. Liberation Sans, Arial and Helvetica are narrower, so text measured
// this way fits whichever of them is used.
// prettier-ignore
const asciiWidths = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636,
  636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863,
  748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635,
  615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636,
  337, 636, 838,
];

function charWidth(c: string): number {
  const code = c.codePointAt(0) ?? 0;
  const ascii = code >= 32 && code <= 126 ? asciiWidths[code - 32] : undefined;
  if (ascii !== undefined) return ascii / 1000;
  return code >= 0x2e80 ? 1.0 : 0.8; // CJK and the like are full width; other letters at most ~0.8 em
}

/** Approximate advance width of `text` at `fontSize` px, 4% wide of DejaVu Sans so nothing is clipped. */
export function textWidth(text: string, fontSize: number): number {
  let em = 0;
  for (const c of text) em += charWidth(c);
  return em * fontSize * 1.04;
}

/** Shortens `text` to at most `max` characters by cutting its middle (the ends of layer names matter most). */
export function ellipsize(text: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  const head = Math.ceil((max - 1) / 2);
  const tail = max - 1 - head;
  return `${chars.slice(0, head).join('')}…${tail > 0 ? chars.slice(-tail).join('') : ''}`;
}

/** A number for an SVG attribute: at most 2 decimals, no trailing zeros. */
export const num = (value: number): string => String(Math.round(value * 100) / 100);

/** A CKA value as shown to people: fixed decimals, "-0.000" shown as "0.000". */
export function formatCka(value: number | null, digits = 3): string {
  if (value === null) return 'undefined';
  const text = value.toFixed(digits);
  return /^-0\.?0*$/.test(text) ? text.slice(1) : text;
}

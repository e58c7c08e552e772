// The matrices of a report, packed for the page: one base64 string per measure.
import { formatCka } from '../plot/text';

/**
 * One matrix, row-major (row = layer of model 1). `i16`: little-endian int16 thousandths, the
 * value as the tooltip shows it (formatCka's 3 decimals), -32768 for null. `f64`: little-endian
 * float64, NaN for null, used only when some value is beyond ±32.767.
 */
export interface PackedMatrix {
  encoding: 'i16' | 'f64';
  data: string;
}

/** The int16 that stands for null. */
export const NULL_I16 = -32768;

/** The value as the report shows it, in thousandths: formatCka's text read back as an integer. */
export const thousandths = (value: number): number => Math.round(Number(formatCka(value)) * 1000);

export function packMatrix(matrix: ReadonlyArray<ReadonlyArray<number | null>>): PackedMatrix {
  const rows = matrix.length;
  const cols = matrix[0]?.length ?? 0;
  const ints = new Int16Array(rows * cols);
  let fits = true;
  matrix.forEach((row, i) =>
    row.forEach((value, j) => {
      if (value === null) {
        ints[i * cols + j] = NULL_I16;
        return;
      }
      const k = thousandths(value);
      if (Math.abs(k) > 32767) fits = false;
      else ints[i * cols + j] = k;
    }),
  );
  if (fits) {
    const buffer = Buffer.alloc(rows * cols * 2);
    ints.forEach((k, p) => buffer.writeInt16LE(k, 2 * p));
    return { encoding: 'i16', data: buffer.toString('base64') };
  }
  const buffer = Buffer.alloc(rows * cols * 8);
  matrix.forEach((row, i) => row.forEach((value, j) => buffer.writeDoubleLE(value ?? Number.NaN, 8 * (i * cols + j))));
  return { encoding: 'f64', data: buffer.toString('base64') };
}

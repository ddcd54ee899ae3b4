/**
 * Column alignment as Go's `text/tabwriter` does it for istioctl's tables (minwidth 0, padding p,
 * pad character ' ', no flags): every column but the last is as wide as its widest cell plus the
 * padding; the last cell of a line is written as is, so no line ends in spaces. Widths count code
 * points, as tabwriter counts runes.
 */
export function formatTable(rows: ReadonlyArray<readonly string[]>, padding = 1): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, [...cell].length + padding);
    });
  }
  return rows
    .map((row) => row.map((cell, i) => (i < row.length - 1 ? cell + ' '.repeat((widths[i] ?? 0) - [...cell].length) : cell)).join('') + '\n')
    .join('');
}

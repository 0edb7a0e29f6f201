/**
 * The Web UI's timeline rows: `<activity type> • <summary>`, a long summary cut by the UI with
 * "...". A row names a step when its summary is one of the steps' summaries, or the start of one.
 */
export function namesAStep(row: string, summaries: string[]): boolean {
  const label = row.slice(row.indexOf(' • ') + 3);
  if (!row.includes(' • ') || label.length < 10) return false;
  const cut = label.endsWith('...') ? label.slice(0, -3) : label.endsWith('…') ? label.slice(0, -1) : undefined;
  return summaries.some((s) => s === label || (cut !== undefined && s.startsWith(cut)));
}

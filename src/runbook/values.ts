/** Which learned values a step needs. Pure: the workflow bundle imports it. */
import type { Step } from './model';
import { placeholdersIn } from './shell';

/**
 * The learned values a step needs, and only those: each activity input lands in history, so
 * sending every value to every step would grow it with the number of containers squared.
 */
export function valuesFor(step: Step, values: Record<string, string>): Record<string, string> {
  const texts = [step.command, step.check ?? '', ...Object.values(step.params ?? {}).flat().map(String)];
  const keys = new Set(texts.flatMap(placeholdersIn));
  if (step.captureAs) keys.add(step.captureAs.key);
  if (typeof step.params?.atLeastCapture === 'string') keys.add(step.params.atLeastCapture);
  // A rewrite that removes what a capture found (`remove: 'dead-domains'`).
  if (typeof step.params?.remove === 'string') keys.add(step.params.remove);
  if (step.params?.needsTimesSource !== undefined) keys.add('bytes:source-data');
  const wantsAddresses = step.kind === 'caddy-rewrite' && step.params?.remove === undefined;
  return Object.fromEntries(Object.entries(values).filter(([k]) => keys.has(k) || (wantsAddresses && /^(old)?ip:/.test(k))));
}

/**
 * Values a capture yields besides its own: the recorded instance (`instance:<c>`) carries the
 * source idmap shift its data needs taken off (`idshift:<c>`, see `parseInstance`).
 */
export function derivedValues(key: string, value: string): Record<string, string> {
  const m = /^instance:(.+)$/.exec(key);
  if (!m) return {};
  try {
    const shift = (JSON.parse(value) as { idShift?: unknown }).idShift;
    return typeof shift === 'string' ? { [`idshift:${m[1]}`]: shift } : {};
  } catch {
    return {};
  }
}

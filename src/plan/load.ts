/**
 * Reading a plan file (YAML or JSON). Validation and its messages live in `validate.ts` (pure, so
 * the workflow imports it too) and are re-exported here so existing imports keep working.
 */
import { readFileSync } from 'node:fs';
import type { Plan } from './schema';
import { parsePlan, PlanError } from './validate';

export { parsePlan, PlanError, validatePlan, type PlanProblem } from './validate';

/** Reads and validates a plan file. */
export function loadPlan(file: string): Plan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PlanError(file, [{ path: '(file)', value: JSON.stringify(file), expected: `a readable plan file (${(err as NodeJS.ErrnoException).code ?? 'error'})` }]);
  }
  return parsePlan(text, file);
}

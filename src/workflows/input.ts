/**
 * What migrateTenant accepts, and its check of it. The workflow can be started by anyone (the CLI,
 * the Web UI's start form, `temporal workflow start`, a script), so it trusts nothing: the plan is
 * validated here with the CLI's own schema and messages (defaults applied here too), before any
 * step. Pure: imported by the workflow bundle and by the client.
 */
import type { Mode } from '../activities/steps';
import type { Plan, PlanInput } from '../plan/schema';
import { parsePlan, PlanError, show, validatePlan, type PlanProblem } from '../plan/validate';

export type OnFailure = 'wait' | 'fail';

interface InputOptions {
  mode: Mode;
  /** `wait` (default): a failed step waits for an operator's retry or skip; `fail`: the run fails. */
  onFailure?: OnFailure;
}

/**
 * The plan as an object (the CLI sends it validated; defaults may be left out) or as the plan
 * file's YAML/JSON text, so that an operator can paste the file into the Web UI as it is. Exactly one.
 */
export type MigrateTenantInput = InputOptions & ({ plan: PlanInput; planYaml?: undefined } | { planYaml: string; plan?: undefined });

/** The input once checked: a plan with every default filled in. */
export interface CheckedInput {
  plan: Plan;
  mode: Mode;
  onFailure?: OnFailure;
}

const MODES: readonly Mode[] = ['dry-run', 'live'];
const ON_FAILURE: readonly OnFailure[] = ['wait', 'fail'];
const FIELDS = ['plan', 'planYaml', 'mode', 'onFailure'];
const oneOf = (values: readonly string[]) => `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;

/**
 * Checks the whole input and returns it with the plan validated, or throws one PlanError listing
 * every problem: the input's own fields first (paths `mode`, `onFailure`, `plan`, `planYaml`), then
 * the plan's, with the very paths `gbo-migrate validate` prints for the same file.
 */
export function checkInput(input: unknown): CheckedInput {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new PlanError('migrateTenant input', [
      { path: '(input)', value: show(input), expected: 'an object: {"planYaml": "<the plan file>", "mode": "dry-run"} or {"plan": {...}, "mode": "live"}' },
    ]);
  }
  const doc = input as Record<string, unknown>;
  const problems: PlanProblem[] = [];
  for (const key of Object.keys(doc).filter((k) => !FIELDS.includes(k))) {
    problems.push({ path: key, value: show(doc[key]), expected: `no unknown field (${key}); the input's fields are ${FIELDS.join(', ')}` });
  }
  if (!MODES.includes(doc.mode as Mode)) problems.push({ path: 'mode', value: show(doc.mode), expected: oneOf(MODES) });
  if (doc.onFailure !== undefined && !ON_FAILURE.includes(doc.onFailure as OnFailure)) {
    problems.push({ path: 'onFailure', value: show(doc.onFailure), expected: `${oneOf(ON_FAILURE)}, or nothing (wait)` });
  }
  const hasPlan = doc.plan !== undefined;
  const hasYaml = doc.planYaml !== undefined;
  if (hasPlan && hasYaml) {
    problems.push({ path: 'planYaml', value: 'text', expected: 'either "plan" or "planYaml", not both' });
  } else if (!hasPlan && !hasYaml) {
    problems.push({ path: 'plan', value: 'nothing', expected: 'the plan: "plan" (an object) or "planYaml" (the plan file\'s YAML or JSON text)' });
  } else if (hasYaml && typeof doc.planYaml !== 'string') {
    problems.push({ path: 'planYaml', value: show(doc.planYaml), expected: 'the plan file\'s text as one string (or use "plan" for an object)' });
  }

  // The plan's own problems are reported even when the fields around it are wrong: one round trip.
  let plan: Plan | undefined;
  if (hasPlan !== hasYaml && (hasPlan || typeof doc.planYaml === 'string')) {
    try {
      plan = hasPlan ? validatePlan(doc.plan, 'plan') : parsePlan(doc.planYaml as string, 'planYaml');
    } catch (err) {
      if (!(err instanceof PlanError)) throw err;
      problems.push(...err.problems);
      if (problems.length === err.problems.length) throw err;
    }
  }
  if (problems.length > 0 || plan === undefined) throw new PlanError('migrateTenant input', problems);
  return { plan, mode: doc.mode as Mode, ...(doc.onFailure === undefined ? {} : { onFailure: doc.onFailure as OnFailure }) };
}

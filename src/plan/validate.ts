/**
 * Turning zod issues into messages an operator can act on: where (the path in the plan), what was
 * found (the value) and what was expected. Pure (no node: modules) so that the workflow can
 * validate its own input with the very messages `gbo-migrate validate` prints; `load.ts` adds the
 * file reading.
 */
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { describeValue, SECRET_FIELD } from './guards';
import { planSchema, type Plan } from './schema';

/** One problem in a plan: `path` as written in the file, the offending value, what was expected. */
export interface PlanProblem {
  path: string;
  value: string;
  expected: string;
}

/** Thrown for any plan that cannot be used; nothing runs after it. */
export class PlanError extends Error {
  constructor(
    readonly source: string,
    readonly problems: PlanProblem[],
  ) {
    super(`${source}: invalid plan\n` + problems.map((p) => `  - ${p.path}: got ${p.value}, expected ${p.expected}`).join('\n'));
    this.name = 'PlanError';
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(plan)';
  return path.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

export function show(value: unknown, path: readonly PropertyKey[] = []): string {
  // Key material, passwords in secret fields and huge strings are described, never shown:
  // validation output lands in terminals, CI logs, workflow failures and tickets.
  const field = [...path].reverse().find((k) => typeof k === 'string');
  const hidden = describeValue(value, typeof field === 'string' && SECRET_FIELD.test(field));
  if (hidden) return hidden;
  if (value === undefined) return 'nothing';
  const s = JSON.stringify(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function expectedOf(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected === 'undefined' ? 'no such field' : `a value of type ${issue.expected}`;
    case 'unrecognized_keys':
      return `no unknown field (${issue.keys.join(', ')}); check the spelling`;
    case 'invalid_value':
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `at least ${String(issue.minimum)} entries` : issue.origin === 'string' ? `at least ${String(issue.minimum)} characters` : `at least ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'array' ? `at most ${String(issue.maximum)} entries` : issue.origin === 'string' ? `at most ${String(issue.maximum)} characters` : `at most ${String(issue.maximum)}`;
    case 'invalid_union':
      return issue.message.includes('discriminator') ? 'a known "kind"' : issue.message;
    default:
      return issue.message;
  }
}

/** Validates an already-parsed document; returns the plan with defaults or throws PlanError. */
export function validatePlan(doc: unknown, source = 'plan'): Plan {
  // reportInput: zod 4 leaves the checked value out of issues otherwise, and a derived one (a source
  // name made of prefix + name) is not in the document to look up.
  const result = planSchema.safeParse(doc, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0] ?? ''] : issue.path;
    const value = 'input' in issue && issue.input !== undefined ? issue.input : valueAt(doc, path);
    return { path: formatPath(path), value: show(value, path), expected: expectedOf(issue) };
  });
  throw new PlanError(source, problems);
}

/** Parses YAML or JSON text (JSON is YAML) and validates it. */
export function parsePlan(text: string, source = 'plan'): Plan {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new PlanError(source, [{ path: '(file)', value: 'unparseable text', expected: `YAML or JSON: ${(err as Error).message.split('\n')[0]}` }]);
  }
  return validatePlan(doc, source);
}

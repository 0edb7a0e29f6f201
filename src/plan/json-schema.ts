/** The plan's JSON Schema, generated from the zod schema, for editors (`schema/tenant-plan.schema.json`). */
import { z } from 'zod';
import { planSchema } from './schema';

export function planJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://gbo-migrate/schema/tenant-plan.schema.json',
    title: 'gbo-migrate tenant plan',
    ...z.toJSONSchema(planSchema, { io: 'input', unrepresentable: 'any' }),
  };
}

import { z } from 'zod';

// The zod schemas of flag values (src/shared/config/flags.ts): each reads the text given on the
// command line or in a TFJS_DDP_* variable, and says in words what it expected.

export const text = () => z.string().min(1, 'must not be empty');
export const whole = (min: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `expected a whole number ≥ ${min}`)
    .transform(Number)
    .refine((n) => n >= min, `expected a whole number ≥ ${min}`);
export const decimal = (min: number) =>
  z
    .string()
    .trim()
    .regex(/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i, `expected a number ≥ ${min}`)
    .transform(Number)
    .refine((n) => n >= min, `expected a number ≥ ${min}`);
export const oneOf = <const T extends readonly [string, ...string[]]>(what: string, values: T) =>
  z.enum(values, {
    error: (issue) =>
      `unknown ${what} "${String(issue.input)}": expected one of ${values.join(', ')}`,
  });
const SWITCH_TEXT: Record<string, boolean> = {
  true: true,
  '1': true,
  yes: true,
  false: false,
  '0': false,
  no: false,
};
/** A switch: given (true), or its variable's text, which must say true or false. */
export const onOff = () =>
  z.union([
    z.boolean(),
    z
      .string()
      .transform((s) => SWITCH_TEXT[s.trim().toLowerCase()])
      .refine((b) => b !== undefined, 'use true or false (or 1/0, yes/no)'),
  ]);
/** The text of a training flag, validated later by resolveTrainConfig. */
export const raw = () => z.string();

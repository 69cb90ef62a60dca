import { type Command, Option } from 'commander';
import {
  envOf,
  FLAGS,
  type FlagName,
  type FlagSpec,
  type FlagValues,
  flagOf,
} from '../shared/config/flags.js';
import { UserError } from '../shared/errors.js';

/**
 * Adds the schema's entries `names` (src/shared/config/flags.ts) to `command` as options, each
 * also read from its TFJS_DDP_* variable. Read them back with readFlags.
 */
export function addFlags(command: Command, names: readonly FlagName[]): Command {
  for (const name of names) {
    const spec: FlagSpec = FLAGS[name];
    const flag = flagOf(name);
    // Choices are listed, not enforced by commander: the schema refuses other values, with
    // the same one-line error and exit code as every other invalid value.
    const description = spec.choices
      ? `${spec.description} (one of: ${spec.choices.join(', ')})`
      : spec.description;
    const option = new Option(spec.arg ? `${flag} ${spec.arg}` : flag, description).env(
      envOf(name),
    );
    if (spec.default !== undefined) option.default(spec.default, spec.defaultHelp);
    else if (spec.defaultHelp !== undefined) option.default(undefined, spec.defaultHelp);
    if (spec.required) option.makeOptionMandatory();
    command.addOption(option);
    if (spec.negatable) command.addOption(new Option(`--no-${flag.slice(2)}`).hideHelp());
  }
  return command;
}

/**
 * The values of `names` on `command` after parsing, validated by their schemas: numbers as
 * numbers, switches as booleans (TFJS_DDP_GPU=false is false), absent flags undefined. Throws
 * UserError naming the flag (or the variable it came from) and the value.
 */
export function readFlags<const K extends FlagName>(
  command: Command,
  names: readonly K[],
): FlagValues<K> {
  const values: Record<string, unknown> = {};
  for (const name of names) {
    const spec: FlagSpec = FLAGS[name];
    let given: unknown = command.getOptionValue(name);
    const source = command.getOptionValueSource(name);
    // Commander only asks whether a switch's variable is set: its text decides here.
    if (!spec.arg && source === 'env') given = process.env[envOf(name)] ?? '';
    if (given === undefined) continue;
    const parsed = spec.schema.safeParse(given);
    if (!parsed.success) {
      const { message } = parsed.error.issues[0];
      throw new UserError(
        source === 'env'
          ? `${envOf(name)}=${String(given)}: ${message}`
          : message.includes(`"${String(given)}"`)
            ? `${flagOf(name)}: ${message}`
            : `${flagOf(name)}: ${message} (got "${String(given)}")`,
      );
    }
    values[name] = parsed.data;
  }
  return values as FlagValues<K>;
}

/** Whether `name` was given on the command line or in its variable (not a default). */
export function isGiven(command: Command, name: FlagName): boolean {
  const source = command.getOptionValueSource(name);
  return source === 'cli' || source === 'env';
}

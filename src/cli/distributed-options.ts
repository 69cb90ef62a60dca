import { type Command, Option } from 'commander';
import { DEFAULT_FIRST_BUCKET_BYTES } from '../shared/collectives/bucket-plan.js';
import type { Compression } from '../shared/collectives/collective.js';
import { COLLECTIVE_NAMES, type CollectiveName } from '../shared/collectives/create-collective.js';
import { DATA_FROM, type DataFrom } from '../shared/distributed/run-settings.js';
import type { SecurityFlags } from '../shared/distributed/security.js';
import { UserError } from '../shared/errors.js';

/** The distributed flags as commander hands them over (strings, with defaults filled in). */
export interface DistributedFlags {
  allreduce: string;
  gradCompression: string;
  bucketSizeMb: string;
  fingerprintEvery: string;
  dataFrom: string;
  joinTimeout: string;
  stepTimeout: string;
  globalBatchSize?: string;
  checkpointEvery?: string;
}

/** What they mean. */
export interface DistributedSettings {
  allReduce: CollectiveName;
  compression: Compression;
  firstBucketBytes: number;
  bucketBytes: number;
  fingerprintEvery: number;
  dataFrom: DataFrom;
  joinTimeoutMs: number;
  stepTimeoutMs: number;
  checkpointEvery?: number;
}

const env = (flag: string) =>
  `TFJS_DDP_${flag.replace(/^--/, '').replace(/-/g, '_').toUpperCase()}`;

/** An option also settable as TFJS_DDP_<FLAG> (the distributed CLI contract). */
export function envOption(flags: string, description: string): Option {
  return new Option(flags, description).env(env(flags.split(/[ ,]/)[0]));
}

const SWITCH_VALUES: Record<string, boolean> = {
  true: true,
  '1': true,
  yes: true,
  false: false,
  '0': false,
  no: false,
};

/**
 * A switch (`--gpu`) also settable as TFJS_DDP_<FLAG>=true|false. Commander's env() only
 * asks whether a switch's variable is set, so TFJS_DDP_GPU=false would turn it on: read the
 * switch with `switchValue`, which reads the variable's value.
 */
export function envSwitch(flag: string, description: string): Option {
  return new Option(flag, `${description} (true or false)`).env(env(flag));
}

/** Whether `command`'s switch `flag` is on: given on the command line, or true in its variable. */
export function switchValue(command: Command, flag: string): boolean {
  const option = command.options.find((o) => o.long === flag);
  const source = option && command.getOptionValueSource(option.attributeName());
  if (source !== 'env') return source === 'cli';
  const name = env(flag);
  const raw = process.env[name] ?? '';
  const value = SWITCH_VALUES[raw.trim().toLowerCase()];
  if (value === undefined) {
    throw new UserError(`${name}=${raw}: use true or false (or 1/0, yes/no)`);
  }
  return value;
}

/**
 * Adds the flags that shape a distributed run (the coordinator's, also taken by
 * `train --workers`): the all-reduce, its buckets and compression, the fingerprint interval,
 * where data comes from, the deadlines and the global batch.
 */
export function addDistributedOptions(command: Command): Command {
  return command
    .addOption(
      envOption(
        '--global-batch-size <n>',
        'images per step over all workers, split evenly (instead of --batch-size per worker)',
      ),
    )
    .addOption(
      envOption(
        '--allreduce <mode>',
        'gradient all-reduce: ring between the workers, or star through the coordinator',
      )
        .choices([...COLLECTIVE_NAMES])
        .default('ring'),
    )
    .addOption(
      envOption(
        '--grad-compression <kind>',
        'gradients on the wire: none (float32) or bf16 (half the bytes)',
      )
        .choices(['none', 'bf16'])
        .default('none'),
    )
    .addOption(
      envOption(
        '--bucket-size-mb <x>',
        'gradients are all-reduced in fused buckets of this size',
      ).default('25'),
    )
    .addOption(
      envOption(
        '--fingerprint-every <k>',
        'compare the replicas\u2019 weights every K steps (0: never; always after the last)',
      ).default('50'),
    )
    .addOption(
      envOption(
        '--data-from <where>',
        'workers read the images from their own --data (local) or fetch them from the coordinator',
      )
        .choices([...DATA_FROM])
        .default('local'),
    )
    .addOption(
      envOption('--join-timeout <s>', 'seconds to wait for all workers to join').default('600'),
    )
    .addOption(
      envOption(
        '--step-timeout <s>',
        'deadline in seconds of every collective and every wait (a step must fit in it)',
      ).default('300'),
    );
}

/** --token / --token-file and the TLS files, for `coordinator` and `worker`. */
export function addSecurityOptions(command: Command): Command {
  return command
    .addOption(
      envOption(
        '--token <str>',
        'shared join token (prefer --token-file: arguments are visible to other users)',
      ),
    )
    .addOption(
      envOption(
        '--token-file <path>',
        'file whose first line is the join token (a mounted Kubernetes Secret)',
      ),
    )
    .addOption(
      envOption(
        '--tls-cert <path>',
        'PEM certificate of this process (TLS on every gRPC connection; with --tls-key and --tls-ca)',
      ),
    )
    .addOption(envOption('--tls-key <path>', 'PEM private key of --tls-cert'))
    .addOption(
      envOption(
        '--tls-ca <path>',
        'PEM certificate authority that signed every party\u2019s certificate',
      ),
    );
}

/** Validates the distributed flags; throws UserError naming the flag. */
export function parseDistributedFlags(flags: DistributedFlags): DistributedSettings {
  const bucketMb = number('--bucket-size-mb', flags.bucketSizeMb, 0.001);
  const bucketBytes = Math.round(bucketMb * 1024 * 1024);
  return {
    allReduce: flags.allreduce as CollectiveName,
    compression: flags.gradCompression as Compression,
    firstBucketBytes: Math.min(DEFAULT_FIRST_BUCKET_BYTES, bucketBytes),
    bucketBytes,
    fingerprintEvery: wholeNumber('--fingerprint-every', flags.fingerprintEvery, 0),
    dataFrom: flags.dataFrom as DataFrom,
    joinTimeoutMs: 1000 * number('--join-timeout', flags.joinTimeout, 1),
    stepTimeoutMs: 1000 * number('--step-timeout', flags.stepTimeout, 1),
    checkpointEvery:
      flags.checkpointEvery === undefined
        ? undefined
        : wholeNumber('--checkpoint-every', flags.checkpointEvery, 1),
  };
}

export type { SecurityFlags };

/** A whole number ≥ min from a flag. */
export function wholeNumber(flag: string, text: string, min: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min) {
    throw new UserError(`${flag}: expected a whole number ≥ ${min} (got "${text}")`);
  }
  return Number(text);
}

function number(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min) {
    throw new UserError(`${flag}: expected a number ≥ ${min} (got "${text}")`);
  }
  return n;
}

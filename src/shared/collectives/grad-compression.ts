import { z } from 'zod';

/**
 * How gradients are compressed on their way through the all-reduce (`--grad-compression`):
 * none (float32), bf16 or fp16 (16 bits per value on the wire; fp16 with a dynamic scale), or
 * PowerSGD of rank r (`powersgd:r`), which sends two thin matrices instead of each weight
 * matrix's gradient.
 */
export type GradCompression = 'none' | 'bf16' | 'fp16' | `powersgd:${number}`;

/** PyTorch's default `matrix_approximation_rank`: the cheapest; raise it if accuracy suffers. */
export const DEFAULT_POWERSGD_RANK = 1;
/** A rank beyond this sends more than most layers' gradients. */
export const MAX_POWERSGD_RANK = 64;

export const GRAD_COMPRESSION_HELP = ['none', 'bf16', 'fp16', 'powersgd[:RANK]'];

/** The rank of a PowerSGD setting, else undefined. */
export function powerSgdRank(c: GradCompression): number | undefined {
  return c.startsWith('powersgd:') ? Number(c.slice('powersgd:'.length)) : undefined;
}

/** Reads `--grad-compression`; `powersgd` alone means rank DEFAULT_POWERSGD_RANK. */
export const gradCompressionSchema = z
  .string()
  .trim()
  .transform((text, ctx): GradCompression => {
    if (text === 'none' || text === 'bf16' || text === 'fp16') return text;
    const match = /^powersgd(?::(\d+))?$/.exec(text);
    const rank = match ? Number(match[1] ?? DEFAULT_POWERSGD_RANK) : Number.NaN;
    if (rank >= 1 && rank <= MAX_POWERSGD_RANK) return `powersgd:${rank}`;
    ctx.addIssue({
      code: 'custom',
      message: `unknown compression "${text}": expected none, bf16, fp16 or powersgd[:RANK] with RANK in 1..${MAX_POWERSGD_RANK}`,
    });
    return z.NEVER;
  });

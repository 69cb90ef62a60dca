import { z } from 'zod';
import { StateKind, type StatePart } from '../../gen/tfjs_ddp/v1/coordinator.js';
import { UserError } from '../errors.js';
import type { OptimizerState } from '../training/optimizer.js';

/** What moves between a replica and the coordinator: for checkpoints and for resuming. */
export interface ReplicaState {
  /** All weights, TrainStep.weightsLayout. */
  weights: Float32Array;
  optimizer?: OptimizerState;
}

/** Largest `data` of one part: far below any message limit. */
export const DEFAULT_PART_BYTES = 4 * 1024 * 1024;

const optimizerManifest = z.object({
  kind: z.enum(['sgd', 'adam']),
  iterations: z.number().int().min(0),
  slots: z.array(z.object({ name: z.string(), length: z.number().int().min(0) })),
});

/**
 * Cuts `state` into StateParts of at most `partBytes` bytes, weights first, then the optimiser
 * state (its slots back to back, described by the first part's manifest_json). The parts share
 * no memory with `state`.
 */
export function toStateParts(
  state: ReplicaState,
  checkpointId: number,
  partBytes = DEFAULT_PART_BYTES,
): StatePart[] {
  const parts = cut(StateKind.STATE_KIND_WEIGHTS, state.weights, '{}', checkpointId, partBytes);
  if (state.optimizer) {
    const slots = Object.entries(state.optimizer.slots);
    const manifest = JSON.stringify({
      kind: state.optimizer.kind,
      iterations: state.optimizer.iterations,
      slots: slots.map(([name, data]) => ({ name, length: data.length })),
    });
    const flat = new Float32Array(slots.reduce((n, [, d]) => n + d.length, 0));
    let at = 0;
    for (const [, data] of slots) {
      flat.set(data, at);
      at += data.length;
    }
    parts.push(...cut(StateKind.STATE_KIND_OPTIMIZER, flat, manifest, checkpointId, partBytes));
  }
  return parts;
}

function cut(
  kind: StateKind,
  values: Float32Array,
  manifestJson: string,
  checkpointId: number,
  partBytes: number,
): StatePart[] {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const step = Math.max(4, partBytes - (partBytes % 4));
  const parts: StatePart[] = [];
  for (let offset = 0; offset === 0 || offset < bytes.length; offset += step) {
    parts.push({
      checkpointId,
      kind,
      offset,
      totalBytes: bytes.length,
      data: bytes.slice(offset, offset + step),
      manifestJson: offset === 0 ? manifestJson : '',
    });
  }
  return parts;
}

/**
 * Puts a ReplicaState back together from parts that arrive in order. add() throws UserError
 * (naming `sender`) for a part out of order, of another kind than expected, or that overflows
 * its total: the sender is then broken and the transfer is abandoned.
 */
export class StateAssembler {
  private weights: Uint8Array | undefined;
  private optimizer: Uint8Array | undefined;
  private manifest: z.infer<typeof optimizerManifest> | undefined;
  private received = { [StateKind.STATE_KIND_WEIGHTS]: 0, [StateKind.STATE_KIND_OPTIMIZER]: 0 };

  constructor(
    private readonly sender: string,
    private readonly withOptimizer: boolean,
  ) {}

  /** Whether every expected part has arrived. */
  get complete(): boolean {
    const done = (
      buf: Uint8Array | undefined,
      kind: StateKind.STATE_KIND_WEIGHTS | StateKind.STATE_KIND_OPTIMIZER,
    ) => buf !== undefined && this.received[kind] === buf.length;
    return (
      done(this.weights, StateKind.STATE_KIND_WEIGHTS) &&
      (!this.withOptimizer || done(this.optimizer, StateKind.STATE_KIND_OPTIMIZER))
    );
  }

  add(part: StatePart): void {
    const bad = (what: string) =>
      new UserError(`${this.sender} sent a malformed state part: ${what}`);
    if (
      part.kind !== StateKind.STATE_KIND_WEIGHTS &&
      part.kind !== StateKind.STATE_KIND_OPTIMIZER
    ) {
      throw bad(`unexpected kind ${part.kind}`);
    }
    if (part.kind === StateKind.STATE_KIND_OPTIMIZER && !this.withOptimizer) {
      throw bad('optimizer state that was not asked for');
    }
    if (
      part.kind === StateKind.STATE_KIND_OPTIMIZER &&
      this.received[StateKind.STATE_KIND_WEIGHTS] !== this.weights?.length
    ) {
      throw bad('optimizer state before the weights were complete');
    }
    const kind = part.kind;
    const expectedOffset = this.received[kind];
    if (part.offset !== expectedOffset) {
      throw bad(`offset ${part.offset} where ${expectedOffset} was due`);
    }
    if (part.totalBytes % 4 !== 0)
      throw bad(`a total of ${part.totalBytes} bytes is not float32 data`);
    let buffer = kind === StateKind.STATE_KIND_WEIGHTS ? this.weights : this.optimizer;
    if (!buffer) {
      buffer = new Uint8Array(part.totalBytes);
      if (kind === StateKind.STATE_KIND_WEIGHTS) this.weights = buffer;
      else this.optimizer = buffer;
      if (kind === StateKind.STATE_KIND_OPTIMIZER)
        this.manifest = this.readManifest(part.manifestJson, bad);
    } else if (buffer.length !== part.totalBytes) {
      throw bad(`the total changed from ${buffer.length} to ${part.totalBytes} bytes`);
    }
    if (part.offset + part.data.length > buffer.length) {
      throw bad(
        `bytes [${part.offset}, ${part.offset + part.data.length}) run past the total of ${buffer.length}`,
      );
    }
    if (part.data.length === 0 && buffer.length > 0) throw bad('an empty part');
    buffer.set(part.data, part.offset);
    this.received[kind] += part.data.length;
  }

  /** The state; throws if incomplete. */
  result(): ReplicaState {
    if (!this.complete || !this.weights)
      throw new Error(`the state from ${this.sender} is incomplete`);
    const weights = new Float32Array(this.weights.buffer);
    if (!this.withOptimizer || !this.optimizer || !this.manifest) return { weights };
    const flat = new Float32Array(this.optimizer.buffer);
    const slots: Record<string, Float32Array> = {};
    let at = 0;
    for (const { name, length } of this.manifest.slots) {
      slots[name] = flat.slice(at, at + length);
      at += length;
    }
    return {
      weights,
      optimizer: { kind: this.manifest.kind, iterations: this.manifest.iterations, slots },
    };
  }

  private readManifest(json: string, bad: (what: string) => UserError) {
    let manifest: z.infer<typeof optimizerManifest>;
    try {
      manifest = optimizerManifest.parse(JSON.parse(json));
    } catch (error) {
      throw bad(`the optimizer manifest is invalid: ${(error as Error).message}`);
    }
    const floats = manifest.slots.reduce((n, s) => n + s.length, 0);
    if (floats * 4 !== (this.optimizer?.length ?? 0)) {
      throw bad(
        `the optimizer manifest lists ${floats} floats, the parts hold ${(this.optimizer?.length ?? 0) / 4}`,
      );
    }
    return manifest;
  }
}

import { compileWat, instantiateWasm, type WasmModule } from '../backend/wat-assembler.js';
import { powerSgdWat } from './power-sgd-wat.js';

interface PowerSgdExports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  add_into(dst: number, src: number, n: number): void;
  project_columns(a: number, rows: number, cols: number, q: number, rank: number, pt: number): void;
  project_rows(a: number, rows: number, cols: number, pt: number, rank: number, q: number): void;
  expand_error(
    q: number,
    pt: number,
    rows: number,
    cols: number,
    rank: number,
    a: number,
    error: number,
    n: number,
  ): void;
}

const PAGE = 65536;
const FLOAT = 4;

/**
 * One PowerSGD hook's SIMD kernels (power-sgd-wat.ts) on a memory of its own, in two regions:
 * the hook's error feedback over the whole flat gradient, which lives here for good (so that it
 * is never copied in or out per step), and after it a workspace that the hook lays out per bucket
 * (the bucket's values, then Pᵀ and Q of its compressed parameters) and that grows as needed.
 * Offsets and lengths are in float32 values. Views are valid until the next `reserve`.
 */
export class PowerSgdKernels {
  /** Byte offset of the workspace: the error region, rounded up to 16 bytes. */
  private readonly workspaceAt: number;

  constructor(
    private readonly kernels: PowerSgdExports,
    private readonly errorLength: number,
  ) {
    this.workspaceAt = Math.ceil(errorLength / 4) * 16;
    this.reserve(0);
  }

  /** `length` values of the error feedback from `start` (default: all of it). */
  errors(start = 0, length = this.errorLength - start): Float32Array {
    return new Float32Array(this.kernels.memory.buffer, start * FLOAT, length);
  }

  /** Makes room for `length` values in the workspace. Invalidates the views handed out. */
  reserve(length: number): void {
    const missing = this.workspaceAt + length * FLOAT - this.kernels.memory.buffer.byteLength;
    if (missing > 0) this.kernels.memory.grow(Math.ceil(missing / PAGE));
  }

  /** `length` values of the workspace from `start`. */
  workspace(start: number, length: number): Float32Array {
    return new Float32Array(this.kernels.memory.buffer, this.workspaceAt + start * FLOAT, length);
  }

  /** workspace[at + i] += error[errorStart + i] for i < n. */
  addErrors(at: number, errorStart: number, n: number): void {
    this.kernels.add_into(this.byte(at), errorStart * FLOAT, n);
  }

  /** Pᵀ[r×C] at `pt` = (Aᵀ·Q)ᵀ for A[R×C] at `a`, Q[R×r] at `q` (workspace offsets). */
  projectColumns(a: number, rows: number, cols: number, q: number, rank: number, pt: number): void {
    this.kernels.project_columns(this.byte(a), rows, cols, this.byte(q), rank, this.byte(pt));
  }

  /** Q[R×r] at `q` = A·P for A[R×C] at `a`, Pᵀ[r×C] at `pt` (workspace offsets). */
  projectRows(a: number, rows: number, cols: number, pt: number, rank: number, q: number): void {
    this.kernels.project_rows(this.byte(a), rows, cols, this.byte(pt), rank, this.byte(q));
  }

  /**
   * A[R×C] at `a` (which holds M) becomes Q·Pᵀ, and the error feedback from `errorStart`
   * becomes M − Q·Pᵀ/worldSize.
   */
  expandError(
    q: number,
    pt: number,
    rows: number,
    cols: number,
    rank: number,
    a: number,
    errorStart: number,
    worldSize: number,
  ): void {
    const k = this.kernels;
    k.expand_error(
      this.byte(q),
      this.byte(pt),
      rows,
      cols,
      rank,
      this.byte(a),
      errorStart * FLOAT,
      worldSize,
    );
  }

  private byte(at: number): number {
    return this.workspaceAt + at * FLOAT;
  }
}

let compiled: Promise<WasmModule> | undefined;

/**
 * A fresh instance of the kernels with room for `errorLength` values of error feedback. The
 * module is assembled (wabt, tens of ms) and compiled once per process; each hook gets its own
 * instance, hence its own memory.
 */
export async function createPowerSgdKernels(errorLength: number): Promise<PowerSgdKernels> {
  compiled ??= compileWat(
    'tfjs-ddp-power-sgd.wat',
    `(module\n(memory (export "memory") 1)\n${powerSgdWat()})`,
  );
  const exports = (await instantiateWasm(await compiled)) as PowerSgdExports;
  return new PowerSgdKernels(exports, errorLength);
}

import wabt from 'wabt';

/** A compiled WebAssembly module (opaque here). */
export type WasmModule = object;

/** The parts of the WebAssembly global used here (TypeScript's lib for Node lacks it). */
interface WebAssemblyApi {
  Memory: abstract new (...args: never[]) => object;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: object): Promise<{ exports: unknown }>;
}
const webAssembly = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** Whether `value` is a WebAssembly.Memory. */
export function isWasmMemory(value: unknown): boolean {
  return value instanceof webAssembly.Memory;
}

/**
 * Assembles WebAssembly text with SIMD (wabt, tens of ms), validates and compiles it. `name`
 * labels wabt's errors. Every kernel module of the project is built this way at start-up.
 */
export async function compileWat(name: string, wat: string): Promise<WasmModule> {
  const toolkit = await wabt();
  const parsed = toolkit.parseWat(name, wat, { simd: true });
  try {
    parsed.validate();
    return await webAssembly.compile(parsed.toBinary({}).buffer);
  } finally {
    parsed.destroy();
  }
}

/** A new instance of `module` with `imports`: its exports. */
export async function instantiateWasm(module: WasmModule, imports: object = {}): Promise<unknown> {
  return (await webAssembly.instantiate(module, imports)).exports;
}

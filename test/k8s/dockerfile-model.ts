import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DockerfileParser,
  type Entrypoint,
  type Env,
  type From,
  type Instruction,
} from 'dockerfile-ast';
import { ROOT } from './render.js';

/** One build stage: its FROM and the instructions after it. */
export interface Stage {
  from: From;
  name: string | undefined;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  file: string;
  text: string;
  stages: Stage[];
  /** The last stage: what the image is. */
  final: Stage;
}

/** Reads and parses a Dockerfile at the repository root with dockerfile-ast. */
export async function parseDockerfile(file: string): Promise<ParsedDockerfile> {
  const text = await readFile(join(ROOT, file), 'utf8');
  const stages: Stage[] = [];
  for (const instruction of DockerfileParser.parse(text).getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const from = instruction as From;
      stages.push({ from, name: from.getBuildStage() ?? undefined, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  const final = stages.at(-1);
  if (!final) throw new Error(`${file} has no FROM`);
  return { file, text, stages, final };
}

/** The instructions of `stage` with `keyword`, in order. */
export function instructionsOf(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.getKeyword() === keyword);
}

/** The exec-form ENTRYPOINT of the image, as an argv. */
export function entrypoint(dockerfile: ParsedDockerfile): string[] {
  const [last] = instructionsOf(dockerfile.final, 'ENTRYPOINT').slice(-1) as Entrypoint[];
  if (!last) throw new Error(`${dockerfile.file} has no ENTRYPOINT`);
  return last.getJSONStrings().map((s) => s.getJSONValue());
}

/** The value of ENV `name` in the final stage, if set. */
export function envOf(dockerfile: ParsedDockerfile, name: string): string | undefined {
  const properties = (instructionsOf(dockerfile.final, 'ENV') as Env[]).flatMap((e) =>
    e.getProperties(),
  );
  return properties.findLast((p) => p.getName() === name)?.getValue() ?? undefined;
}

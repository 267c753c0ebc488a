import { readFile } from 'node:fs/promises';

/** One fenced code block of a Markdown file. */
export interface DocBlock {
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly lang: string;
  readonly code: string;
  /** Why the block is not run, from a `<!-- fragment: reason -->` comment right above its fence. */
  readonly fragment: string | undefined;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
const FRAGMENT = /^\s*<!--\s*fragment:\s*(.*?)\s*-->\s*$/;

/** Every fenced block of `text`, indentation of the fence removed from its lines. */
export function extractBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split(/\r?\n/);
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] as string);
    if (open === null) continue;
    const [, indent = '', fence = '```', lang = ''] = open;
    let j = i - 1;
    while (j >= 0 && (lines[j] as string).trim() === '') j--;
    const marker = j >= 0 ? FRAGMENT.exec(lines[j] as string) : null;
    const body: string[] = [];
    let k = i + 1;
    for (; k < lines.length; k++) {
      const line = lines[k] as string;
      if (
        line.trim().startsWith(fence[0]?.repeat(fence.length) ?? fence) &&
        line.trim().replace(/[`~]/g, '') === ''
      )
        break;
      body.push(line.startsWith(indent) ? line.slice(indent.length) : line.trimStart());
    }
    blocks.push({
      file,
      line: i + 1,
      lang: lang.toLowerCase(),
      code: `${body.join('\n')}\n`,
      fragment: marker?.[1],
    });
    i = k;
  }
  return blocks;
}

export async function blocksOf(file: string): Promise<DocBlock[]> {
  return extractBlocks(file, await readFile(file, 'utf8'));
}

export const RUNNABLE_LANGS: ReadonlySet<string> = new Set([
  'ts',
  'typescript',
  'js',
  'javascript',
  'mjs',
  'mts',
]);

/** `// prints: text` comments: what the example's output must contain. */
export function expectedOutput(code: string): string[] {
  return [...code.matchAll(/\/\/\s*prints:\s*(.*?)\s*$/gm)].map((m) => m[1] as string);
}

// The grammar-guard table (lib/structured/grammar-guards.ts): every row guarded in lib refuses its
// example with ERR_GRAMMAR naming the row and passes its valid one, llama.cpp's own parser is asked
// only once the guards pass, every row still points at the llama.cpp line it guards, and rows
// guarded in native/ name a file that is there.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { CudaLlamaError, ErrorCode } from '../../lib/errors.js';
import { GrammarError } from '../../lib/errors.js';
import { GRAMMAR_GUARDS, MAX_GRAMMAR_NESTING, checkGrammar } from '../../lib/structured/grammar-guards.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const vendor = join(root, 'vendor', 'llama.cpp');
const WHERE = 'options.grammar';
const noProblem = () => null;

/** The error checkGrammar throws for `text`, or undefined. */
function refusal(text: string, llamaProblem: (text: string) => string | null = noProblem): GrammarError | undefined {
  try {
    checkGrammar(text, WHERE, llamaProblem);
  } catch (error) {
    return error as GrammarError;
  }
  return undefined;
}

const libRows = GRAMMAR_GUARDS.filter((g) => g.guardedIn === 'lib');
const nativeRows = GRAMMAR_GUARDS.filter((g) => g.guardedIn !== 'lib');

describe('GRAMMAR_GUARDS', () => {
  it('has rows with unique ids, each with a source line and its text', () => {
    expect(libRows.length).toBeGreaterThan(0);
    expect(nativeRows.length).toBeGreaterThan(0);
    expect(new Set(GRAMMAR_GUARDS.map((g) => g.id)).size).toBe(GRAMMAR_GUARDS.length);
    for (const guard of GRAMMAR_GUARDS) {
      expect(guard.llamaCppSource).toMatch(/^(src|common|ggml\/src)\/[\w/.-]+\.(cpp|c|h):\d+$/);
      expect(guard.assertText.length).toBeGreaterThan(5);
      expect(guard.assertText).toBe(guard.assertText.trim());
      expect(guard.message.length).toBeGreaterThan(20);
    }
  });

  it('lib rows have a check and examples; native rows have neither', () => {
    for (const guard of libRows) {
      expect(typeof guard.check, guard.id).toBe('function');
      expect(guard.examples, guard.id).toBeDefined();
    }
    for (const guard of nativeRows) {
      expect(guard.check, guard.id).toBeUndefined();
      expect(guard.examples, guard.id).toBeUndefined();
    }
  });

  describe.each(libRows.map((guard) => [`${guard.id} (${guard.llamaCppSource})`, guard] as const))('%s', (_, guard) => {
    it('refuses the invalid example with ERR_GRAMMAR naming the row, before asking llama.cpp', () => {
      const llamaProblem = vi.fn(noProblem);
      const error = refusal(guard.examples!.invalid, llamaProblem);
      expect(error).toBeInstanceOf(GrammarError);
      expect(error).toBeInstanceOf(CudaLlamaError);
      expect(error!.code).toBe(ErrorCode.GRAMMAR);
      expect(error!.code).toBe('ERR_GRAMMAR');
      expect(error!.details?.guard).toBe(guard.id);
      expect(error!.details?.llamaCppSource).toBe(guard.llamaCppSource);
      expect(error!.message.startsWith(`${WHERE} `)).toBe(true);
      expect(error!.message).toContain(guard.check!(guard.examples!.invalid));
      expect(error!.remedy?.length).toBeGreaterThan(0);
      expect(llamaProblem).not.toHaveBeenCalled();
    });

    it('passes the valid example', () => {
      expect(guard.check!(guard.examples!.valid)).toBeUndefined();
      expect(() => checkGrammar(guard.examples!.valid, WHERE, noProblem)).not.toThrow();
    });
  });

  it.each(nativeRows.map((g) => [g.id, g.guardedIn] as const))('the native row %s names a file in native/: %s', (_, file) => {
    expect(file).toMatch(/^native\/[\w-]+\.cc$/);
    expect(existsSync(join(root, file))).toBe(true);
  });
});

describe('checkGrammar', () => {
  it("reports llama.cpp parser's problem as ERR_GRAMMAR once the guards pass", () => {
    const llamaProblem = vi.fn((_text: string) => 'undefined reference to rule "x"');
    const error = refusal('root ::= x', llamaProblem);
    expect(llamaProblem).toHaveBeenCalledWith('root ::= x');
    expect(error).toBeInstanceOf(GrammarError);
    expect(error!.code).toBe('ERR_GRAMMAR');
    expect(error!.message).toContain(`${WHERE} is not a grammar llama.cpp accepts: undefined reference to rule "x"`);
    expect(error!.details).toBeUndefined();
    expect(error!.remedy).toMatch(/GBNF/);
  });

  it('passes a grammar every guard and llama.cpp accept', () => {
    const llamaProblem = vi.fn(noProblem);
    expect(() => checkGrammar('root ::= "yes" | "no"', WHERE, llamaProblem)).not.toThrow();
    expect(llamaProblem).toHaveBeenCalledTimes(1);
  });

  const repetition = GRAMMAR_GUARDS.find((g) => g.id === 'repetition-bounds')!;
  it.each([
    ['a quoted literal', 'root ::= "a{5,2}"'],
    ['a literal with an escaped quote', 'root ::= "\\"{5,2}" "b"'],
    ['a character class', 'root ::= [{5,2}]'],
    ['a class with an escaped ]', 'root ::= [\\]{5,2}]'],
    ['a comment', '# x{5,2}\nroot ::= "a"'],
    ['a comment after a rule', 'root ::= "a" # then {9,1}\n'],
  ])('the repetition guard ignores {m,n} inside %s', (_, text) => {
    expect(repetition.check!(text)).toBeUndefined();
    expect(() => checkGrammar(text, WHERE, noProblem)).not.toThrow();
  });

  it.each([
    ['after a literal', 'root ::= "a"{3,1}', '{3,1}'],
    ['with spaces', 'root ::= "a"{ 5 , 2 }', '{5 , 2}'],
    ['after a group', 'root ::= ("a" | "b"){10,9}', '{10,9}'],
    ['after a literal holding braces', 'root ::= "{1,2}"{4,3}', '{4,3}'],
    ['beyond 2^64', 'root ::= "a"{99999999999999999999999,1}', '{99999999999999999999999,1}'],
  ])('the repetition guard refuses a minimum above the maximum %s', (_, text, shown) => {
    const error = refusal(text);
    expect(error?.details?.guard).toBe('repetition-bounds');
    expect(error!.message).toContain(`has the repetition ${shown}, whose minimum is above its maximum`);
  });

  it.each(['root ::= "a"{2}', 'root ::= "a"{2,}', 'root ::= "a"{2,2}', 'root ::= "a"{0,5}'])('the repetition guard passes %s', (text) => {
    expect(repetition.check!(text)).toBeUndefined();
  });

  it(`the nesting guard counts groups, not parentheses in literals, classes or comments (at most ${MAX_GRAMMAR_NESTING})`, () => {
    const deep = (n: number) => `root ::= ${'('.repeat(n)}"a"${')'.repeat(n)}`;
    expect(() => checkGrammar(deep(MAX_GRAMMAR_NESTING), WHERE, noProblem)).not.toThrow();
    expect(refusal(deep(MAX_GRAMMAR_NESTING + 1))?.details?.guard).toBe('nesting');
    const parens = '('.repeat(MAX_GRAMMAR_NESTING + 1);
    expect(() => checkGrammar(`root ::= "${parens}" [${parens}] # ${parens}\n`, WHERE, noProblem)).not.toThrow();
    // Groups closed in turn never nest.
    expect(() => checkGrammar(`root ::= ${'("a") '.repeat(MAX_GRAMMAR_NESTING * 2)}`, WHERE, noProblem)).not.toThrow();
  });

  it('the llguidance guard only looks at the start', () => {
    expect(refusal('%llguidance {}\nstart: "a"')?.details?.guard).toBe('llguidance');
    expect(() => checkGrammar('root ::= "%llguidance"', WHERE, noProblem)).not.toThrow();
  });
});

const hasVendor = existsSync(join(vendor, 'src', 'llama-grammar.cpp'));
if (!hasVendor) console.warn(`grammar-guards: skipping the source-line checks: ${vendor} is absent (npm install materializes it)`);

describe.skipIf(!hasVendor)('each row still guards its llama.cpp line (vendor/llama.cpp at the pin)', () => {
  it.each(GRAMMAR_GUARDS.map((g) => [g.llamaCppSource, g.assertText] as const))('%s: %s', (source, text) => {
    const [file, line] = source.split(':') as [string, string];
    const lines = readFileSync(join(vendor, file), 'utf8').split('\n');
    expect(lines[Number(line) - 1]?.trim()).toBe(text);
  });
});

/**
 * GBNF grammars that make the bundled llama.cpp abort, hang or overflow its stack instead of
 * returning an error, and the guard for each. Rows whose guard is here refuse the grammar text
 * before anything reaches llama.cpp; rows guarded in native/ (the sampler and the engine) say
 * where, and test/native/grammar.test.ts drives each of those with a grammar that reaches the
 * line. Each row names the line at the pinned commit with its text; test/unit/grammar-guards.test.ts
 * checks that the text is still there, so moving the pin turns every moved line into a failing row.
 *
 * What llama.cpp refuses by returning an error (a syntax error, an undefined rule, left
 * recursion) is reported from its own parser (lib/binding: grammarProblem), as ERR_GRAMMAR too.
 */
import { ErrorCode, GrammarError } from '../errors.js';

/** Larger grammars are refused: llama.cpp parses them on the calling thread, and its left-recursion check recurses once per rule in a chain. */
export const MAX_GRAMMAR_BYTES = 256 * 1024;
/** Deeper parenthesized groups are refused: llama.cpp's parser recurses once per level. */
export const MAX_GRAMMAR_NESTING = 64;

export interface GrammarGuard {
  /** Stable name, used by the tests that drive native-guarded rows. */
  id: string;
  /** `<file>:<line>` in vendor/llama.cpp at the pinned commit. */
  llamaCppSource: string;
  /** The text on that line (trimmed); a test checks that it is still there. */
  assertText: string;
  /** What llama.cpp does there, and what input reaches it. */
  message: string;
  /** Where the guard is: `lib` (this table's check, before any native call) or the native file that holds it. */
  guardedIn: 'lib' | 'native/sampler.cc' | 'native/engine.cc';
  /** For `lib` rows: what is wrong with the grammar text, or undefined. */
  check?: (text: string) => string | undefined;
  /** For `lib` rows: a grammar the check refuses and one it lets through. */
  examples?: { invalid: string; valid: string };
}

/** Scans GBNF text the way llama_grammar_parser tokenizes it, skipping literals, classes, token refs and comments. */
function scan(
  text: string,
  visit: (kind: 'open' | 'close' | 'repeat', at: number, body?: string) => string | undefined,
): string | undefined {
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"' || ch === '[') {
      const end = ch === '"' ? '"' : ']';
      i++;
      while (i < text.length && text[i] !== end) i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (ch === '<') {
      const close = text.indexOf('>', i);
      i = close < 0 ? text.length : close + 1;
    } else if (ch === '#') {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else if (ch === '(' || ch === ')') {
      const problem = visit(ch === '(' ? 'open' : 'close', i);
      if (problem) return problem;
      i++;
    } else if (ch === '{') {
      const close = text.indexOf('}', i);
      const body = text.slice(i + 1, close < 0 ? text.length : close);
      const problem = visit('repeat', i, body);
      if (problem) return problem;
      i = close < 0 ? text.length : close + 1;
    } else {
      i++;
    }
  }
  return undefined;
}

export const GRAMMAR_GUARDS: readonly GrammarGuard[] = [
  {
    id: 'llguidance',
    llamaCppSource: 'common/sampling.cpp:217',
    assertText: 'GGML_ABORT("llguidance (cmake -DLLAMA_LLGUIDANCE=ON) is not enabled");',
    message:
      'common_sampler_init aborts the process on a grammar starting with %llguidance when llama.cpp is built without llguidance (ours is)',
    guardedIn: 'lib',
    check: (text) =>
      text.startsWith('%llguidance')
        ? "starts with %llguidance, which needs llama.cpp's llguidance backend (this build has none); write GBNF"
        : undefined,
    examples: { invalid: '%llguidance {}\nstart: "a"', valid: 'root ::= "a"' },
  },
  {
    id: 'repetition-bounds',
    llamaCppSource: 'src/llama-grammar.cpp:509',
    assertText: 'auto n_opt = no_max ? 1 : max_times - min_times;',
    message:
      'a repetition x{m,n} with m > n underflows the count of optional copies to about 2^64, and the parser adds rules until memory runs out (the process hangs, then dies)',
    guardedIn: 'lib',
    check: (text) =>
      scan(text, (kind, _at, body) => {
        if (kind !== 'repeat' || body === undefined) return undefined;
        const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(body);
        if (m && BigInt(m[1]!) > BigInt(m[2]!)) return `has the repetition {${body.trim()}}, whose minimum is above its maximum`;
        return undefined;
      }),
    examples: { invalid: 'root ::= "a"{5,2}', valid: 'root ::= "a"{2,5}' },
  },
  {
    id: 'nesting',
    llamaCppSource: 'src/llama-grammar.cpp:598',
    assertText: 'pos = parse_alternates(pos, rule_name, sub_rule_id, true);',
    message:
      'each parenthesized group recurses once more into the parser (parse_sequence -> parse_alternates), so deep nesting overflows the stack (a segfault)',
    guardedIn: 'lib',
    check: (text) => {
      let depth = 0;
      return scan(text, (kind) => {
        if (kind === 'open' && ++depth > MAX_GRAMMAR_NESTING) return `nests groups deeper than ${MAX_GRAMMAR_NESTING} levels`;
        if (kind === 'close') depth = Math.max(0, depth - 1);
        return undefined;
      });
    },
    examples: {
      invalid: `root ::= ${'('.repeat(MAX_GRAMMAR_NESTING + 1)}"a"${')'.repeat(MAX_GRAMMAR_NESTING + 1)}`,
      valid: 'root ::= (("a"))',
    },
  },
  {
    id: 'size',
    llamaCppSource: 'src/llama-grammar.cpp:1259',
    assertText: 'if (llama_grammar_detect_left_recursion(vec_rules, i, &rules_visited, &rules_in_progress, &rules_may_be_empty)) {',
    message:
      'the left-recursion check recurses once per rule in a chain of rules, so a grammar of many thousands of chained rules overflows the stack',
    guardedIn: 'lib',
    check: (text) => (Buffer.byteLength(text) > MAX_GRAMMAR_BYTES ? `is larger than ${MAX_GRAMMAR_BYTES / 1024} KiB` : undefined),
    examples: {
      invalid: `root ::= r0\n${Array.from({ length: 20_000 }, (_, i) => `r${i} ::= r${i + 1}`).join('\n')}\nr20000 ::= "a"`,
      valid: 'root ::= r0\nr0 ::= "a"',
    },
  },
  {
    id: 'empty-stack',
    llamaCppSource: 'src/llama-grammar.cpp:944',
    assertText: 'GGML_ASSERT(!stacks.empty()); // REVIEW',
    message:
      'a grammar that allows no token (a dead end: every candidate rejected) lets dist pick a rejected token; accepting it empties the grammar stack (a thrown error), and the next sampling asserts here',
    guardedIn: 'native/sampler.cc',
  },
  {
    id: 'selected',
    llamaCppSource: 'common/sampling.cpp:671',
    assertText: 'GGML_ASSERT(cur_p.selected != -1 && "no selected token during sampling - check your sampling configuration");',
    message: 'after the grammar has masked every candidate, a sampler that removes all of them leaves nothing to select',
    guardedIn: 'native/sampler.cc',
  },
  {
    id: 'eog-refused',
    llamaCppSource: 'src/llama-grammar.cpp:1451',
    assertText: 'GGML_ABORT("fatal error");',
    message: 'accepting an end-of-generation token into a grammar that is not complete aborts the process',
    guardedIn: 'native/engine.cc',
  },
];

/**
 * Refuses a GBNF text that would crash, hang or be refused by llama.cpp (ERR_GRAMMAR naming the
 * problem). `llamaProblem` asks llama.cpp's own parser (the addon's grammarProblem) once the
 * guards above have passed. `where` names the grammar in messages ("options.grammar").
 */
export function checkGrammar(text: string, where: string, llamaProblem: (text: string) => string | null): void {
  for (const guard of GRAMMAR_GUARDS) {
    const problem = guard.check?.(text);
    if (problem !== undefined) {
      throw new GrammarError(ErrorCode.GRAMMAR, `${where} ${problem}`, {
        remedy: 'fix the grammar; docs/structured-output.md says what llama.cpp accepts',
        details: { guard: guard.id, llamaCppSource: guard.llamaCppSource },
      });
    }
  }
  const problem = llamaProblem(text);
  if (problem !== null) {
    throw new GrammarError(ErrorCode.GRAMMAR, `${where} is not a grammar llama.cpp accepts: ${problem}`, {
      remedy: "fix the grammar (llama.cpp's GBNF: rules `name ::= ...`, starting at `root`)",
    });
  }
}

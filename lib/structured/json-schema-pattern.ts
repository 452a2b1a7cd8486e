/**
 * The regular expressions a JSON Schema `pattern` may use, so that llama.cpp's conversion of it
 * (common/json-schema-to-grammar.cpp, _pattern_to_rule) yields exactly the strings it describes,
 * each a valid JSON string. That conversion writes the pattern's characters into the JSON string
 * as they are, without JSON escaping, so `.`, a negated class or a class or literal holding a
 * quote, a backslash or a control character would let the model write a raw `"` or newline and
 * break the JSON; it turns `\d`, lookarounds and unanchored patterns into "any string" with a
 * warning on stderr; and it needs the pattern anchored, as JSON Schema's are not by default.
 */

export interface PatternProblem {
  message: string;
  remedy: string;
}

/**
 * The largest count in a repetition {m,n}: llama.cpp's grammar parser reads n above its
 * MAX_REPETITION_THRESHOLD (2000, src/llama-grammar.cpp) as unbounded and refuses m above it, and
 * the pattern conversion turns a count beyond an int into "any string". minLength, maxLength,
 * minItems and maxItems become such repetitions too (lib/structured/json-schema.ts).
 */
export const MAX_REPETITION = 2000;
/** llama.cpp refuses deeper groups (MAX_PATTERN_DEPTH); ours is lower, well clear of it. */
const MAX_GROUP_DEPTH = 20;
/** Characters a regex escapes to mean themselves that llama.cpp reads as such: outside a class (ESCAPED_IN_REGEXPS_BUT_NOT_IN_LITERALS), and inside one (gbnf_escape_length). */
const SELF_ESCAPES = new Set(['^', '$', '.', '[', ']', '(', ')', '|', '{', '}', '*', '+', '?']);
const CLASS_SELF_ESCAPES = new Set(['[', ']', '-']);
const SHORTHANDS: Record<string, string> = {
  d: '[0-9]',
  w: '[a-zA-Z0-9_]',
  s: '[ ]',
  D: 'a class',
  W: 'a class',
  S: 'a class',
  b: 'nothing',
  B: 'nothing',
};

const problem = (message: string, remedy: string): PatternProblem => ({ message, remedy });

/** A code point a JSON string cannot hold raw: a quote, a backslash, or a control character. */
function unsafe(cp: number): boolean {
  return cp === 0x22 || cp === 0x5c || cp < 0x20 || cp === 0x7f;
}

const describe = (cp: number) =>
  cp < 0x20 || cp === 0x7f ? `U+${cp.toString(16).padStart(4, '0')}` : JSON.stringify(String.fromCodePoint(cp));

interface Cursor {
  text: string;
  i: number;
}

/** An escape at text[i] == '\\': the code point it stands for, or a problem. */
function readEscape(c: Cursor, inClass: boolean): number | PatternProblem {
  const next = c.text[c.i + 1];
  if (next === undefined) return problem('ends with a backslash', 'remove it');
  const hex = (n: number) => {
    const digits = c.text.slice(c.i + 2, c.i + 2 + n);
    if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits))
      return problem(`has an incomplete \\${next} escape`, `write \\${next} with ${n} hex digits`);
    c.i += 2 + n;
    return parseInt(digits, 16);
  };
  if (next === 'x') return hex(2);
  if (next === 'u') {
    const cp = hex(4);
    // Half of a UTF-16 pair: llama.cpp's grammar reads it as a code point of its own, which no UTF-8 text holds.
    if (typeof cp === 'number' && cp >= 0xd800 && cp <= 0xdfff)
      return problem(
        `has the surrogate \\u${cp.toString(16).toUpperCase()}, which llama.cpp's grammar cannot match`,
        'write the character itself',
      );
    return cp;
  }
  if (next in SHORTHANDS) {
    return problem(
      `uses \\${next}, which llama.cpp does not turn into a grammar`,
      `write it as a character class${SHORTHANDS[next]!.startsWith('[') ? `, e.g. ${SHORTHANDS[next]!}` : ''}`,
    );
  }
  if ((inClass ? CLASS_SELF_ESCAPES : SELF_ESCAPES).has(next)) {
    c.i += 2;
    return next.codePointAt(0)!;
  }
  return problem(
    `uses the escape \\${next}, which a JSON string cannot hold raw or llama.cpp does not support`,
    'use a literal character or \\uXXXX for a printable one',
  );
}

/** A character class at text[i] == '['. */
function readClass(c: Cursor): PatternProblem | undefined {
  if (c.text[c.i + 1] === '^') {
    return problem(
      'has a negated character class, which would admit a raw quote or control character inside the JSON string',
      'list the allowed characters instead ([a-z0-9 ], ...)',
    );
  }
  c.i++;
  let previous: number | undefined;
  while (c.i < c.text.length && c.text[c.i] !== ']') {
    let cp: number;
    if (c.text[c.i] === '\\') {
      const escaped = readEscape(c, true);
      if (typeof escaped !== 'number') return escaped;
      cp = escaped;
    } else if (c.text[c.i] === '-' && previous !== undefined && c.text[c.i + 1] !== ']') {
      c.i++;
      let end: number;
      if (c.text[c.i] === '\\') {
        const escaped = readEscape(c, true);
        if (typeof escaped !== 'number') return escaped;
        end = escaped;
      } else {
        end = c.text.codePointAt(c.i)!;
        c.i += end > 0xffff ? 2 : 1;
      }
      for (const bad of [0x22, 0x5c]) {
        if (previous <= bad && bad <= end)
          return problem(
            `has the range ${describe(previous)}-${describe(end)}, which holds ${describe(bad)}: a JSON string cannot hold it raw`,
            'split the range around it',
          );
      }
      if (previous < 0x20)
        return problem(`has a range starting at the control character ${describe(previous)}`, 'start the range at a printable character');
      previous = undefined;
      continue;
    } else {
      cp = c.text.codePointAt(c.i)!;
      c.i += cp > 0xffff ? 2 : 1;
    }
    if (unsafe(cp))
      return problem(`lets ${describe(cp)} into the string, which a JSON string cannot hold raw`, 'leave it out of the pattern');
    previous = cp;
  }
  c.i++; // the closing ]
  return undefined;
}

/** Why `pattern` cannot be enforced exactly, or undefined when it can. */
export function checkPattern(pattern: string): PatternProblem | undefined {
  try {
    new RegExp(pattern, 'u');
  } catch (error) {
    return problem(`is not a valid regular expression (${(error as Error).message})`, 'fix the pattern');
  }
  if (pattern.length < 2 || !pattern.startsWith('^') || !pattern.endsWith('$') || pattern.endsWith('\\$')) {
    return problem(
      "is not anchored with ^ and $: JSON Schema patterns match anywhere in a string, llama.cpp's grammar can only describe whole strings",
      'describe the whole string: ^...$',
    );
  }
  const c: Cursor = { text: pattern.slice(1, -1), i: 0 };
  let depth = 0;
  while (c.i < c.text.length) {
    const ch = c.text[c.i]!;
    if (ch === '.')
      return problem(
        'uses ".", which would admit a raw quote or control character inside the JSON string',
        'use a character class of the allowed characters',
      );
    if (ch === '^' || ch === '$') return problem(`has the anchor ${ch} inside it`, 'anchor only the whole pattern');
    if (ch === '[') {
      const bad = readClass(c);
      if (bad) return bad;
      continue;
    }
    if (ch === '(') {
      if (c.text[c.i + 1] === '?' && c.text[c.i + 2] !== ':')
        return problem('uses a lookaround, named group or flag group', 'use plain (...) or (?:...) groups');
      depth++;
      if (depth > MAX_GROUP_DEPTH) return problem(`nests groups deeper than ${MAX_GROUP_DEPTH}`, 'flatten the pattern');
      c.i += c.text[c.i + 1] === '?' ? 3 : 1;
      continue;
    }
    if (ch === ')') {
      depth--;
      c.i++;
      continue;
    }
    if (ch === '\\') {
      const escaped = readEscape(c, false);
      if (typeof escaped !== 'number') return escaped;
      if (unsafe(escaped))
        return problem(`lets ${describe(escaped)} into the string, which a JSON string cannot hold raw`, 'leave it out of the pattern');
      continue;
    }
    if (ch === '{') {
      const end = c.text.indexOf('}', c.i);
      const body = c.text.slice(c.i + 1, end);
      if (!/^\d+(,\d*)?$/.test(body)) return problem(`has the repetition {${body}}`, 'use {m}, {m,} or {m,n}');
      if (body.split(',').some((n) => n !== '' && Number(n) > MAX_REPETITION))
        return problem(
          `has the repetition {${body}}, above the ${MAX_REPETITION} repetitions llama.cpp's grammar bounds`,
          `use counts up to ${MAX_REPETITION}`,
        );
      c.i = end + 1;
      continue;
    }
    const cp = c.text.codePointAt(c.i)!;
    if (unsafe(cp)) return problem(`has ${describe(cp)}, which a JSON string cannot hold raw`, 'leave it out of the pattern');
    c.i += cp > 0xffff ? 2 : 1;
  }
  return undefined;
}

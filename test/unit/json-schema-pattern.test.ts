// The regex subset a JSON Schema `pattern` may use (lib/structured/json-schema-pattern.ts): what
// llama.cpp's conversion turns into a grammar of exactly those strings, each a valid JSON string,
// is accepted; everything else is a problem with a message and a remedy.
import { describe, expect, it } from 'vitest';
import { MAX_REPETITION, checkPattern } from '../../lib/structured/json-schema-pattern.js';

describe('checkPattern accepts', () => {
  it.each([
    ['literals', '^abc$'],
    ['an empty string', '^$'],
    ['spaces and punctuation', '^a b, c; d!$'],
    ['non-ASCII literals', '^café ü 日本 😀$'],
    ['a class', '^[abc]$'],
    ['ranges', '^[a-zA-Z0-9_]+$'],
    ['a literal "-" at either end of a class', '^[-a][a-]$'],
    ['a range of printable characters that skips the quote and backslash', '^[ !#-\\[\\]-~]+$'],
    ['a non-capturing group', '^(?:ab)+$'],
    ['a capturing group', '^(ab)?c$'],
    ['alternation', '^(?:ab|cd)*$'],
    ['alternation at the top level', '^yes|no$'],
    ['nested groups', '^((a|b)(c|d))+$'],
    ['*', '^a*$'],
    ['+', '^a+$'],
    ['?', '^a?$'],
    ['{m}', '^[0-9]{4}$'],
    ['{m,}', '^[0-9]{2,}$'],
    ['{m,n}', '^[a-z]{2,5}-[0-9]+$'],
    [`{m,n} up to ${MAX_REPETITION}`, `^a{0,${MAX_REPETITION}}$`],
    ['escaped metacharacters', '^\\.\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$$'],
    ['escaped ] [ - inside a class', '^[\\]\\[\\-]$'],
    ['\\uXXXX of a printable character', '^\\u0041\\u00e9$'],
    ['\\xXX of a printable character', '^\\x41$'],
    ['\\uXXXX in a class and a range', '^[\\u0041-\\u005a]+$'],
    ['a mix', '^[A-Z]{3}-(?:[0-9]{2}|X{2})(?:\\.[a-z]+)?$'],
  ])('%s: %s', (_, pattern) => {
    expect(checkPattern(pattern)).toBeUndefined();
  });
});

describe('checkPattern refuses, with a message and a remedy', () => {
  it.each([
    ['no anchors', 'abc', /is not anchored with \^ and \$/],
    ['no ^', 'abc$', /is not anchored/],
    ['no $', '^abc', /is not anchored/],
    ['only ^', '^', /is not anchored|not a valid regular expression/],
    ['an escaped final $', '^abc\\$', /is not anchored/],
    ['an invalid regex', '^(ab$', /is not a valid regular expression/],
    ['an invalid class', '^[z-a]$', /is not a valid regular expression/],
    ['a repetition out of order', '^a{5,2}$', /is not a valid regular expression/],
    ['"."', '^a.b$', /uses "\."/],
    ['".*"', '^.*$', /uses "\."/],
    ['a negated class', '^[^"]+$', /negated character class/],
    ['\\d', '^\\d+$', /uses \\d, which llama\.cpp does not turn into a grammar/],
    ['\\w', '^\\w+$', /uses \\w/],
    ['\\s', '^a\\sb$', /uses \\s/],
    ['\\b', '^a\\b$', /uses \\b/],
    ['\\D inside a class', '^[\\D]$', /uses \\D/],
    ['a lookahead', '^(?=a)a$', /lookaround, named group or flag group/],
    ['a negative lookahead', '^(?!a)b$', /lookaround/],
    ['a lookbehind', '^(?<=a)b$', /lookaround/],
    ['a named group', '^(?<year>[0-9]{4})$', /named group/],
    ['^ inside', '^a^b$', /has the anchor \^ inside it/],
    ['$ inside', '^a$b$', /has the anchor \$ inside it/],
    ['anchors around alternatives', '^a$|^b$', /has the anchor/],
    ['a literal quote', '^say "hi"$', /has "\\"", which a JSON string cannot hold raw/],
    ['a class holding a quote', '^[a"]$', /lets "\\"" into the string/],
    ['a class holding a backslash', '^[a\\\\]$', /uses the escape \\\\/],
    ['a literal backslash', '^a\\\\b$', /uses the escape \\\\/],
    ['a range holding the quote: [ -~]', '^[ -~]+$', /has the range " "-"~", which holds "\\""/],
    ['a range holding the backslash', '^[A-z]$', /has the range "A"-"z", which holds "\\\\"/],
    ['a range ending in an escape that holds the quote', '^[!-\\u0023]$', /holds "\\""/],
    ['\\n', '^a\\nb$', /uses the escape \\n/],
    ['\\t', '^a\\tb$', /uses the escape \\t/],
    ['\\t in a class', '^[\\t]$', /uses the escape \\t/],
    ['\\x0a', '^a\\x0ab$', /lets U\+000a into the string/],
    ['\\u0022', '^\\u0022$', /lets "\\"" into the string/],
    ['\\u005c in a class', '^[\\u005c]$', /lets "\\\\" into the string/],
    ['a raw newline', '^a\nb$', /has U\+000a/],
    ['a raw tab in a class', '^[\t]$', /lets U\+0009 into the string/],
    ['\\u{...}', '^\\u{41}$', /incomplete \\u escape/],
    ['an incomplete \\x', '^\\x4$', /is not a valid regular expression|incomplete \\x escape/],
    ['a backreference', '^(a)\\1$', /uses the escape \\1/],
    ['an escaped "/"', '^a\\/b$', /uses the escape \\\//],
    ['a "." escaped inside a class', '^[\\.]$', /uses the escape \\\./],
    [`a count above ${MAX_REPETITION}`, `^a{${MAX_REPETITION + 1}}$`, /has the repetition \{2001\}, above the 2000/],
    ['a maximum above it', '^[a-z]{1,5000}$', /has the repetition \{1,5000\}/],
    ['a count beyond an int', '^a{99999999999}$', /has the repetition \{99999999999\}/],
    ['an escaped surrogate pair', '^\\uD83D\\uDE00$', /has the surrogate \\uD83D/],
    ['groups nested deeper than 20', `^${'('.repeat(21)}a${')'.repeat(21)}$`, /nests groups deeper than 20/],
  ])('%s: %j', (_, pattern, says) => {
    const problem = checkPattern(pattern);
    expect(problem, `accepted ${pattern}`).toBeDefined();
    expect(problem!.message).toMatch(says);
    expect(problem!.remedy.length).toBeGreaterThan(0);
  });

  it('suggests the class a shorthand stands for', () => {
    expect(checkPattern('^\\d+$')!.remedy).toBe('write it as a character class, e.g. [0-9]');
    expect(checkPattern('^\\w+$')!.remedy).toBe('write it as a character class, e.g. [a-zA-Z0-9_]');
  });

  it('accepts groups nested 20 deep', () => {
    expect(checkPattern(`^${'('.repeat(20)}a${')'.repeat(20)}$`)).toBeUndefined();
  });
});

// Text assembly: UTF-8 split across tokens, stop sequences that span tokens, hold-back.
import { describe, expect, it } from 'vitest';
import { TextAssembler, heldBackLength } from '../../lib/generation.js';

function run(pieces: (string | Uint8Array)[], stops: string[]) {
  const emitted: string[] = [];
  const assembler = new TextAssembler(stops, (t) => emitted.push(t));
  let stoppedAt = -1;
  pieces.forEach((p, i) => {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    if (stoppedAt === -1 && assembler.push(bytes)) stoppedAt = i;
  });
  return { text: assembler.finish(), emitted, stoppedAt, stop: assembler.stopSequence };
}

describe('heldBackLength', () => {
  it('holds back exactly the suffix that may still become a stop sequence', () => {
    expect(heldBackLength('Hello Us', ['User:'])).toBe(2);
    expect(heldBackLength('Hello', ['User:'])).toBe(0);
    expect(heldBackLength('abc<', ['</s>', '<|end|>'])).toBe(1);
    expect(heldBackLength('abc<|en', ['</s>', '<|end|>'])).toBe(4);
    expect(heldBackLength('anything', [])).toBe(0);
  });
});

describe('TextAssembler', () => {
  it('joins pieces and emits them as they come when there are no stops', () => {
    const r = run(['Hel', 'lo', ' world'], []);
    expect(r.text).toBe('Hello world');
    expect(r.emitted).toEqual(['Hel', 'lo', ' world']);
  });

  it('never splits a UTF-8 character across emitted pieces', () => {
    const euro = Buffer.from('€', 'utf8'); // 3 bytes
    const r = run([euro.subarray(0, 1), euro.subarray(1, 2), euro.subarray(2), 'x'], []);
    expect(r.text).toBe('€x');
    expect(r.emitted.join('')).toBe('€x');
    expect(r.emitted.every((p) => !p.includes('\uFFFD'))).toBe(true);
  });

  it('stops at a stop sequence spread over several tokens and emits nothing of it', () => {
    const r = run(['Answer: 4', '2\nUs', 'er', ': more'], ['User:']);
    expect(r.stop).toBe('User:');
    expect(r.stoppedAt).toBe(3); // 'User:' is complete only with the fourth piece
    expect(r.text).toBe('Answer: 42\n');
    expect(r.emitted.join('')).toBe('Answer: 42\n');
  });

  it('releases held-back text when it turns out not to be a stop sequence', () => {
    const r = run(['a <', '/b> c'], ['</s>']);
    expect(r.stop).toBeUndefined();
    expect(r.text).toBe('a </b> c');
    expect(r.emitted.join('')).toBe('a </b> c');
  });

  it('picks the earliest of several stop sequences', () => {
    const r = run(['one two three'], ['three', 'two']);
    expect(r.stop).toBe('two');
    expect(r.text).toBe('one ');
  });
});

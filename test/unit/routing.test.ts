// The replica router's rule (lib/server/routing.ts) and replica placement (lib/server/replicas.ts), pure.
import { describe, expect, it } from 'vitest';
import { PrefixRecord, chatKey, chooseReplica, commonPrefixLength, messageKey, promptKey } from '../../lib/server/routing.js';
import { placeReplicas } from '../../lib/server/replicas.js';

const c = (load: number, prefix = 0, healthy = true) => ({ load, prefix, healthy });

describe('chooseReplica', () => {
  it('sends a request without a shared prefix to the least loaded replica, the lowest index on a tie', () => {
    expect(chooseReplica([c(0), c(0)])).toBe(0);
    expect(chooseReplica([c(1), c(0)])).toBe(1);
    expect(chooseReplica([c(3), c(2), c(2)])).toBe(1);
  });

  it('prefers the replica holding the longest prefix while its load is within the slack', () => {
    expect(chooseReplica([c(0), c(1, 100)])).toBe(1);
    expect(chooseReplica([c(0, 40), c(1, 100)])).toBe(1);
    // Two requests busier than the least loaded: past the default slack of 1.
    expect(chooseReplica([c(0), c(2, 100)])).toBe(0);
    expect(chooseReplica([c(0), c(2, 100)], 2)).toBe(1);
    expect(chooseReplica([c(0), c(1, 100)], 0)).toBe(0);
  });

  it('ignores a shared prefix shorter than the minimum (what any two requests share)', () => {
    expect(chooseReplica([c(0), c(1, 10)])).toBe(0);
    expect(chooseReplica([c(0), c(1, 10)], 1, 8)).toBe(1);
  });

  it('never picks an unhealthy replica, and says -1 when none is healthy', () => {
    expect(chooseReplica([c(0, 500, false), c(5)])).toBe(1);
    expect(chooseReplica([c(0, 0, false), c(0, 0, false)])).toBe(-1);
    expect(chooseReplica([])).toBe(-1);
  });
});

describe('PrefixRecord', () => {
  it('keeps the most recent keys up to its capacity; an extension replaces what it extends', () => {
    const record = new PrefixRecord(2);
    record.add('alpha beta');
    record.add('alpha beta gamma');
    expect(record.size).toBe(1);
    record.add('delta');
    record.add('epsilon');
    expect(record.size).toBe(2);
    expect(record.longestPrefix('alpha beta gamma delta')).toBe(0);
    expect(record.longestPrefix('delta force')).toBe(5);
    record.clear();
    expect(record.longestPrefix('delta')).toBe(0);
  });

  it('a chat key grows by its reply and next turn, so turn 2 shares all of turn 1', () => {
    const turn1 = [{ role: 'user', content: 'Tell me about the river city' }];
    const record = new PrefixRecord(4);
    record.add(chatKey(turn1) + messageKey('assistant', 'It is old.'));
    const turn2 = [...turn1, { role: 'assistant', content: 'It is old.' }, { role: 'user', content: 'And then?' }];
    const shared = record.longestPrefix(chatKey(turn2));
    expect(shared).toBe(chatKey(turn2.slice(0, 2)).length);
    expect(commonPrefixLength('abc', 'abd')).toBe(2);
    // Text parts and strings are the same text; token ids never match a string.
    expect(chatKey([{ role: 'user', content: [{ type: 'text', text: 'hi' }] }])).toBe(chatKey([{ role: 'user', content: 'hi' }]));
    expect(promptKey(['hello'])).toBe('hello');
    expect(promptKey([1, 2])).not.toBe(promptKey('1,2'));
  });
});

describe('placeReplicas', () => {
  it("'auto' is one replica per visible GPU, each with that GPU alone", () => {
    const placed = placeReplicas('auto', undefined, ['CUDA0', 'CUDA1'], { contextSize: 512 });
    expect(placed).toEqual([
      { device: 'CUDA0', options: { contextSize: 512, gpu: 'auto', mainGpu: 0, splitMode: 'none' } },
      { device: 'CUDA1', options: { contextSize: 512, gpu: 'auto', mainGpu: 1, splitMode: 'none' } },
    ]);
  });

  it('N replicas go round-robin over the devices given', () => {
    const placed = placeReplicas(3, ['CUDA1', 'CUDA0'], ['CUDA0', 'CUDA1'], { gpu: 'cuda' });
    expect(placed.map((p) => [p.device, p.options.mainGpu])).toEqual([
      ['CUDA1', 1],
      ['CUDA0', 0],
      ['CUDA1', 1],
    ]);
  });

  it("without a GPU 'auto' is one replica with the caller's policy; 'CPU' named is gpu: 'cpu'", () => {
    expect(placeReplicas('auto', undefined, [], { gpu: 'auto' })).toEqual([{ device: 'CPU', options: { gpu: 'auto' } }]);
    expect(placeReplicas(2, ['CPU'], ['CUDA0'], {}).map((p) => p.options.gpu)).toEqual(['cpu', 'cpu']);
    expect(placeReplicas('auto', undefined, ['CUDA0'], { gpu: 'cpu' })).toEqual([{ device: 'CPU', options: { gpu: 'cpu' } }]);
  });

  it('refuses a device that is not visible, naming the ones that are', () => {
    expect(() => placeReplicas(2, ['CUDA3'], ['CUDA0'], {})).toThrow(
      /options\.devices must be 'CPU' or a visible CUDA GPU \(CUDA0\), got the string "CUDA3"/,
    );
  });
});

/**
 * The replica router's rule, pure so that it is tested without a model (test/unit/routing.test.ts).
 *
 * Each generation goes to a healthy replica whose load (requests dispatched to it and not settled:
 * running plus waiting in its engine) is within `slack` of the least loaded one; among those, to the
 * one whose recent traffic shares the longest prefix with the request (so a multi-turn chat returns
 * to the replica whose idle sequences most likely still hold its earlier turns' KV cells), provided
 * that prefix is at least `minPrefix` characters; otherwise, and to break ties, to the least loaded,
 * then the lowest index. Requests without a prompt (embeddings, rerank, tokenize) use slack 0 and no
 * prefix: the least loaded healthy replica.
 *
 * The engine does not expose which prefixes its sequences cache, so the router keeps its own guess:
 * per replica, the keys (prompt text, or the canonical text of a chat's messages) of the last
 * `capacity` requests it routed there, each extended with its reply once it settles. `capacity` is
 * the engine's sequence count: the idle sequences it reuses prefixes from.
 */

/** One replica as the rule sees it. */
export interface RouteCandidate {
  healthy: boolean;
  /** Requests dispatched to it and not settled. */
  load: number;
  /** Characters of the request's key shared with the longest matching key in its record (0: none). */
  prefix: number;
}

/** Default slack: a replica one request busier than the least loaded one may still get a conversation back. */
export const DEFAULT_AFFINITY_SLACK = 1;
/** Default minimum shared prefix, in characters, for affinity to count (shorter: any two chats share as much). */
export const DEFAULT_MIN_PREFIX = 16;

/** The index of the replica to use, or -1 when none is healthy. */
export function chooseReplica(
  candidates: readonly RouteCandidate[],
  slack = DEFAULT_AFFINITY_SLACK,
  minPrefix = DEFAULT_MIN_PREFIX,
): number {
  let minLoad = Infinity;
  for (const c of candidates) if (c.healthy && c.load < minLoad) minLoad = c.load;
  if (minLoad === Infinity) return -1;
  let best = -1;
  const affinity = (c: RouteCandidate) => (c.prefix >= minPrefix ? c.prefix : 0);
  candidates.forEach((c, i) => {
    if (!c.healthy || c.load > minLoad + slack) return;
    if (best < 0) {
      best = i;
      return;
    }
    const b = candidates[best]!;
    if (affinity(c) > affinity(b) || (affinity(c) === affinity(b) && c.load < b.load)) best = i;
  });
  return best;
}

/** Characters `a` and `b` share from their start. */
export function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * A replica's record of what it was sent: at most `capacity` keys, the most recent last. A key that
 * extends an entry (the next turn of a conversation) replaces it.
 */
export class PrefixRecord {
  readonly #capacity: number;
  readonly #keys: string[] = [];

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** The longest prefix `key` shares with a recorded key. */
  longestPrefix(key: string): number {
    let best = 0;
    for (const k of this.#keys) best = Math.max(best, commonPrefixLength(k, key));
    return best;
  }

  /** Records `key` as the most recent; an entry it extends (or that equals it) goes. */
  add(key: string): void {
    const at = this.#keys.findIndex((k) => key.startsWith(k));
    if (at >= 0) this.#keys.splice(at, 1);
    this.#keys.push(key);
    if (this.#keys.length > this.#capacity) this.#keys.shift();
  }

  clear(): void {
    this.#keys.length = 0;
  }

  get size(): number {
    return this.#keys.length;
  }
}

/** A chat's routing key: each message's role and text, in order, so that the next turn's key extends this one's. */
export function chatKey(messages: readonly { role: string; content?: unknown; tool_calls?: unknown }[]): string {
  let key = '';
  for (const m of messages) key += messageKey(m.role, m.content, m.tool_calls);
  return key;
}

/** One message's part of a chat key (also the reply's, appended once it settles). */
export function messageKey(role: string, content: unknown, toolCalls?: unknown): string {
  let text: string;
  if (typeof content === 'string') text = content;
  else if (Array.isArray(content)) text = content.map((p: { text?: unknown }) => (typeof p?.text === 'string' ? p.text : '')).join('');
  else text = '';
  const calls = toolCalls === undefined || toolCalls === null ? '' : JSON.stringify(toolCalls);
  return `${role}\u0000${text}\u0000${calls}\u0001`;
}

/** A text completion's routing key: the prompt (a string, or one in an array), or its token ids. */
export function promptKey(prompt: string | readonly (string | number)[]): string {
  if (typeof prompt === 'string') return prompt;
  if (prompt.every((p) => typeof p === 'string')) return prompt.join('');
  return `\u0002${prompt.join(',')},`;
}

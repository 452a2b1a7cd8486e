/**
 * Test hooks, not public API: nothing here is exported from lib/index.ts, and nothing in it is
 * meant for production code. A model registers its generation context here at construction, so
 * that a test can make that context's next llama_decode fail (native Context.injectDecodeFault)
 * and watch what the engine, the replica pool and the server do about it.
 */
import type { NativeContext } from '../binding/native.js';

const contexts = new WeakMap<object, NativeContext>();

/** @internal Called by LlamaModel's constructor with its generation context. */
export function registerFaultTarget(model: object, context: NativeContext): void {
  contexts.set(model, context);
}

/**
 * The next decode step of `model`'s engine returns `rc` without calling llama_decode. The default,
 * -3, is below -1: llama.h's fatal error, which marks the context failed (ERR_CONTEXT_FAILED for
 * every request, running, waiting or later). -1 is an ordinary decode failure (ERR_DECODE for the
 * requests of that batch only).
 */
export function injectDecodeFault(model: object, rc = -3): void {
  const context = contexts.get(model);
  if (context === undefined) throw new TypeError('injectDecodeFault: expected a LlamaModel');
  context.injectDecodeFault(rc);
}

/**
 * Fuzz child: loads the mutant files the parent sends (over the fork IPC channel), one at a time,
 * and reports each outcome. It runs in its own process so that an abort inside llama.cpp kills
 * only this child; the parent then knows which mutant was in flight.
 */
import { CudaLlamaError, Llama } from '../../lib/index.js';

export interface ChildRequest {
  id: number;
  path: string;
}
type Outcome =
  | { outcome: 'loaded'; text: string }
  | { outcome: 'refused'; code: string; message: string }
  | { outcome: 'untyped'; name: string; message: string };
export type ChildOutcome = Outcome & { id: number };

async function tryMutant(path: string): Promise<Outcome> {
  try {
    // Defaults as a user would load it (the context size comes from the file), on one thread
    // because the fuzzer shares a small machine.
    const model = await Llama.load(path, { gpu: 'cpu', threads: 1 });
    try {
      const result = await model.generate('Hello world', { maxTokens: 4, temperature: 0 });
      model.tokenize('<s> </s> <unk> \u00e9\u{1F600} \t\n');
      return { outcome: 'loaded', text: result.text };
    } finally {
      await model.dispose();
    }
  } catch (error) {
    if (error instanceof CudaLlamaError)
      return { outcome: 'refused', code: error.code, message: error.message.split('\n')[0]!.slice(0, 300) };
    const e = error as Error;
    return { outcome: 'untyped', name: e?.name ?? typeof error, message: String(e?.message ?? error).slice(0, 300) };
  }
}

process.on('message', (message: ChildRequest) => {
  void tryMutant(message.path).then((result) => process.send!({ id: message.id, ...result }));
});
process.send!({ ready: true });

// forkModel (lib/model.ts, internal: the replica pool's): a second LlamaModel over the same native
// model with its own context and engine. The fork reports the same info, context sizes and layers
// (the weights' figures are the shared copy's), generates what the original does, and outlives it:
// the weights are freed when the last of them is disposed (SharedWeights' count). A model loaded with
// embeddings gives its fork its own embeddings context. A ReplicaPool of two CPU replicas loads the
// file once and frees the weights on dispose.
import { describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { forkModel, sharedWeights } from '../../lib/model.js';
import { ReplicaPool } from '../../lib/server/replicas.js';
import { syntheticModel } from '../helpers/models.js';

const load = { gpu: 'cpu' as const, contextSize: 256, threads: 1 };
const greedy = { maxTokens: 8, temperature: 0, ignoreEos: true };

describe('forkModel', () => {
  it('shares the weights: same info and layers, its own context, and it outlives the original', async () => {
    const model = await Llama.load(await syntheticModel('tiny'), { ...load, sequences: 2 });
    const weights = sharedWeights(model);
    const fork = await forkModel(model);
    try {
      expect(sharedWeights(fork)).toBe(weights);
      expect(weights.references).toBe(2);
      expect(fork.info).toEqual(model.info);
      expect(fork.contextInfo).toEqual(model.contextInfo);

      // The layer report's weights are the one shared copy, in each report; each context has its own KV cache.
      const [ours, theirs] = await Promise.all([model.layerReport(), fork.layerReport()]);
      expect(theirs.layers).toEqual(ours.layers);
      expect(theirs.devices.map((d) => [d.device, d.weightsBytes])).toEqual(ours.devices.map((d) => [d.device, d.weightsBytes]));
      expect(theirs.kvCache).toEqual(ours.kvCache);

      // Two engines: generations on both at once, the same greedy tokens from the same weights.
      const [a, b] = await Promise.all([model.generate('The weights are shared', greedy), fork.generate('The weights are shared', greedy)]);
      expect(b.tokens).toEqual(a.tokens);
      expect(model.engineStats().steps).toBeGreaterThan(0);
      expect(fork.engineStats().steps).toBeGreaterThan(0);

      // Disposing the model that loaded the weights leaves them to the fork.
      await model.dispose();
      expect(model.disposed).toBe(true);
      expect(() => model.tokenize('x')).toThrow(/model has been disposed/);
      await expect(forkModel(model)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
      expect(weights.references).toBe(1);
      expect(weights.disposed).toBe(false);
      expect(weights.native.disposed).toBe(false);
      const after = await fork.generate('The weights are shared', greedy);
      expect(after.tokens).toEqual(a.tokens);
      expect((await fork.layerReport()).layers).toEqual(ours.layers);

      // A fork of the fork still counts on the same weights.
      const second = await forkModel(fork, { warmup: false });
      expect(sharedWeights(second)).toBe(weights);
      expect(weights.references).toBe(2);
      await second.dispose();
      await second.dispose(); // idempotent: releases once
      expect(weights.references).toBe(1);
    } finally {
      await fork.dispose();
      await model.dispose();
    }
    expect(weights.references).toBe(0);
    expect(weights.disposed).toBe(true);
    expect(weights.native.disposed).toBe(true);
  });

  it('a model loaded with embeddings gives its fork its own embeddings context', async () => {
    const model = await Llama.load(await syntheticModel('tiny'), { ...load, embeddings: true });
    const fork = await forkModel(model);
    try {
      const [ours, theirs] = await Promise.all([model.embed(['hello', 'world']), fork.embed(['hello', 'world'])]);
      expect(theirs.embeddings).toEqual(ours.embeddings);
      await model.dispose();
      expect((await fork.embed(['hello', 'world'])).embeddings).toEqual(ours.embeddings);
      expect((await fork.generate('hello', greedy)).tokens).toHaveLength(8);
    } finally {
      await fork.dispose();
      await model.dispose();
    }
    expect(sharedWeights(fork).native.disposed).toBe(true);
  });

  it('an embedding model forks with its one (embeddings) context', async () => {
    const model = await Llama.load(await syntheticModel('tinyBert'), { ...load });
    const fork = await forkModel(model);
    try {
      expect(fork.info.embeddingModel).toBe(true);
      const [ours, theirs] = await Promise.all([model.embed(['a text']), fork.embed(['a text'])]);
      expect(theirs.embeddings).toEqual(ours.embeddings);
    } finally {
      await Promise.all([model.dispose(), fork.dispose()]);
    }
    expect(sharedWeights(model).disposed).toBe(true);
  });

  it('refuses what is not a LlamaModel, and unknown options', async () => {
    await expect(forkModel({} as never)).rejects.toThrow(TypeError);
    const model = await Llama.load(await syntheticModel('tiny'), load);
    try {
      await expect(forkModel(model, { warm: true } as never)).rejects.toThrow(/warm/);
      expect(sharedWeights(model).references).toBe(1);
    } finally {
      await model.dispose();
    }
  });
});

describe('ReplicaPool on one device', () => {
  it('loads the file once for two CPU replicas and frees the weights when disposed', async () => {
    let fileLoads = 0;
    const pool = new ReplicaPool(await syntheticModel('tiny'), { replicas: 2, devices: ['CPU'], load }, (path, options) => {
      fileLoads++;
      return Llama.load(path, options);
    });
    await pool.ready;
    const [zero, one] = pool.replicas.map((r) => r.model!);
    const weights = sharedWeights(zero!);
    expect(fileLoads).toBe(1);
    expect(sharedWeights(one!)).toBe(weights);
    expect(weights.references).toBe(2);
    expect(pool.replicas[1]!.sharesWeightsWith).toBe(0);
    // Replica 1 keeps generating with replica 0's model disposed.
    await zero!.dispose();
    expect((await one!.generate('still here', greedy)).tokens).toHaveLength(8);
    await pool.dispose();
    expect(weights.disposed).toBe(true);
    expect(weights.native.disposed).toBe(true);
  });
});

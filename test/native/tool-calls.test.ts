// Tool calls that are enforced, for the template families of test/helpers/tool-families.ts (those
// of llama.cpp's collection listed there, and the generic envelope), on random-weight models: with
// toolChoice 'required' every reply is one or more calls, with a named tool exactly that
// function, with 'none' no call; the arguments always parse and validate against the tool's
// parameters (checked with Ajv here, apart from the library's own check); streamed deltas add up
// to the result; a reasoning model thinks within its budget, then calls.
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type ChatDelta, type ChatResult, type LlamaModel } from '../../lib/index.js';
import { TEST_TOOLS, TOOL_FAMILIES, toolFamily, toolFamilyModel, type ToolFamilyName } from '../helpers/tool-families.js';

const ajv = new Ajv({ strict: false });
const validators = new Map(TEST_TOOLS.map((t) => [t.name, ajv.compile(t.parameters)]));
const question = [{ role: 'user', content: 'What is the weather in Paris, and what is 2 + 3?' }];

/** Every call names a tool and its arguments parse and validate; returns the names. */
function expectValidCalls(result: ChatResult, where: string): string[] {
  for (const call of result.toolCalls) {
    const validate = validators.get(call.name);
    expect(validate, `${where}: ${call.name} is a tool`).toBeDefined();
    const parsed: unknown = JSON.parse(call.arguments);
    expect(validate!(parsed), `${where}: ${call.arguments} ${JSON.stringify(validate!.errors)}`).toBe(true);
    expect(call.parsed).toEqual(parsed);
    expect(call.id).toMatch(/\S/);
  }
  return result.toolCalls.map((c) => c.name);
}

/** Deltas put back together: the answer, and each call's id, name and arguments. */
function assemble(deltas: ChatDelta[]) {
  const calls: { id?: string; name?: string; arguments: string }[] = [];
  let content = '';
  for (const d of deltas) {
    content += d.content ?? '';
    if (d.toolCall) {
      const call = (calls[d.toolCall.index] ??= { arguments: '' });
      if (d.toolCall.id !== undefined) call.id = d.toolCall.id;
      if (d.toolCall.name !== undefined) call.name = d.toolCall.name;
      call.arguments += d.toolCall.arguments ?? '';
    }
  }
  return { content, calls };
}

describe.each(Object.keys(TOOL_FAMILIES) as ToolFamilyName[])('%s', (family) => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await Llama.load(await toolFamilyModel(family), { gpu: 'cpu', contextSize: 4096, warmup: false });
  });
  afterAll(async () => {
    await model?.dispose();
  });
  const reasoning = { budget: 12 };

  it("toolChoice 'required': one call, held to its parameters, and no other text", async () => {
    const result = await model.chat(question, {
      tools: TEST_TOOLS,
      toolChoice: 'required',
      parallelToolCalls: false,
      maxTokens: 1000,
      temperature: 1,
      seed: 11,
      reasoning,
    });
    expect(result.stopReason).toBe('toolCalls');
    expect(expectValidCalls(result, family)).toHaveLength(1);
    expect(result.text.trim()).toBe('');
    expect(result.toolCallErrors).toBeUndefined();
  });

  it('a named tool, streamed: exactly that function, and the deltas add up to the result', async () => {
    const stream = model.chatStream(question, {
      tools: TEST_TOOLS,
      toolChoice: { name: 'add' },
      maxTokens: 1000,
      temperature: 1,
      seed: 12,
      reasoning,
    });
    const deltas: ChatDelta[] = [];
    for await (const delta of stream) deltas.push(delta);
    const result = await stream.result;
    expect(result.stopReason === 'toolCalls' || result.stopReason === 'maxTokens').toBe(true);
    const names = expectValidCalls(result, family);
    expect(names.length).toBeGreaterThanOrEqual(1);
    expect(new Set(names)).toEqual(new Set(['add']));
    const streamed = assemble(deltas);
    expect(streamed.calls.map((c) => c.id)).toEqual(result.toolCalls.map((c) => c.id));
    expect(streamed.calls.map((c) => c.name)).toEqual(names);
    // The arguments stream as the model writes them; a call may be re-read at its end.
    streamed.calls.forEach((c, i) => expect(JSON.parse(c.arguments)).toEqual(result.toolCalls[i]!.parsed));
    expect(deltas.reduce((n, d) => n + d.tokens, 0)).toBe(result.tokens.length);
  });

  it("parallel calls allowed under 'required': a call comes first, and every complete call validates", async () => {
    // A random model may go on calling until maxTokens (the last call then cut short, and left
    // out); the first call is complete well within it, since nothing but calls may come first.
    const result = await model.chat(question, {
      tools: TEST_TOOLS,
      toolChoice: 'required',
      maxTokens: 300,
      temperature: 1,
      seed: 13,
      reasoning,
    });
    expect(result.toolCalls.length).toBeGreaterThanOrEqual(1);
    expectValidCalls(result, family);
    expect(result.toolCallErrors).toBeUndefined();
  });

  it("toolChoice 'none': no call, even when the model writes the call's opening token", async () => {
    // A random model hardly opens a call on its own: where the format has an opening token, it is
    // pushed to the top, so that 'none' is what keeps the reply free of calls.
    const start = toolFamily(family).callStart;
    const result = await model.chat(question, {
      tools: TEST_TOOLS,
      toolChoice: 'none',
      maxTokens: 24,
      temperature: 1,
      seed: 14,
      ...(start !== undefined ? { logitBias: [{ token: start, bias: 100 }] } : {}),
    });
    expect(result.toolCalls).toEqual([]);
    expect(result.stopReason).not.toBe('toolCalls');
    if (start !== undefined) expect(result.tokens).toContain(model.tokenize(start, { addSpecial: false, parseSpecial: true })[0]);
  });

  it.runIf(toolFamily(family).reasoning === true)('a reasoning model thinks within its budget, then calls', async () => {
    const budget = 6;
    for (const seed of [21, 22, 23]) {
      const result = await model.chat(question, {
        tools: TEST_TOOLS,
        toolChoice: 'required',
        parallelToolCalls: false,
        maxTokens: 1000,
        temperature: 1,
        seed,
        reasoning: { enabled: true, budget },
      });
      expect(result.stopReason).toBe('toolCalls');
      expectValidCalls(result, family);
      // The budget counts tokens after the start tag; the forced end tag is not part of the text.
      expect(model.tokenize(result.reasoning, { addSpecial: false }).length).toBeLessThanOrEqual(budget + 2);
    }
  });
});

// Chat prompts against llama.cpp's own rendering: every template of the vendored collection
// (vendor/llama.cpp/models/templates), written into a synthetic model's metadata, renders a fixed
// set of conversations through applyChatTemplate() exactly as the reference program
// (test/reference/chat-template-reference.cc, llama-server's path through llama-common) renders
// them, tokens included; a template llama.cpp cannot render fails in both.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CudaLlamaError, Llama, type ChatMessage, type LlamaModel } from '../../lib/index.js';
import { nativeBinary } from '../../lib/binding/load-native.js';
import { chatResult, planChat, validateMessages, validateTemplateOnlyOptions } from '../../lib/chat.js';
import type { GenerateResult } from '../../lib/generation.js';
import { ensureSyntheticModel } from '../../lib/gguf/synthetic-model.js';
import { cacheDir, repoRoot, vocabPath } from '../helpers/models.js';

const templatesDir = join(repoRoot, 'vendor', 'llama.cpp', 'models', 'templates');
const referenceProgram = join(repoRoot, 'build', 'Release', 'cuda-llama-chat-reference');
// Rendering reads only the vocabulary and the metadata; the smallest llama shape keeps 70 files small.
const shape = { nEmbd: 16, nFf: 32, nLayer: 1, nHead: 2, nHeadKv: 1, contextLength: 512 };

interface Case {
  name: string;
  messages: ChatMessage[];
  addGenerationPrompt: boolean;
  /** Absent: llama-server's default (on where the template has a thinking switch). */
  enableThinking?: boolean;
}
const system = { role: 'system', content: 'You are a careful assistant.' };
const user1 = { role: 'user', content: 'What is the capital of France?' };
const assistant1 = { role: 'assistant', content: 'Paris.' };
const user2 = { role: 'user', content: 'And of Italy?' };
const cases: Case[] = [
  { name: 'defaults', messages: [system, user1, assistant1, user2], addGenerationPrompt: true },
  { name: 'system + turns', messages: [system, user1, assistant1, user2], addGenerationPrompt: true, enableThinking: true },
  { name: 'no system', messages: [user1, assistant1, user2], addGenerationPrompt: true, enableThinking: true },
  { name: 'single user turn', messages: [user1], addGenerationPrompt: true, enableThinking: true },
  { name: 'assistant turn last', messages: [system, user1, assistant1], addGenerationPrompt: false, enableThinking: true },
  { name: 'thinking off', messages: [user1], addGenerationPrompt: true, enableThinking: false },
];

type Reference = { prompt: string; tokens: number[] } | { error: string };

async function templateModel(text: string): Promise<string> {
  return ensureSyntheticModel({ cacheDir, shape, vocabPath, chatTemplate: text, label: 'chat' });
}

async function load(path: string): Promise<LlamaModel> {
  return Llama.load(path, { gpu: 'cpu', contextSize: 256, warmup: false });
}

const files = readdirSync(templatesDir)
  .filter((f) => f.endsWith('.jinja'))
  .sort();
const paths: string[] = [];
let references: Reference[][] = [];
let work: string;

beforeAll(async () => {
  if (!existsSync(referenceProgram)) {
    throw new Error(`${referenceProgram} is missing: run \`node scripts/build-tools.mjs cuda-llama-chat-reference\``);
  }
  for (const file of files) paths.push(await templateModel(readFileSync(join(templatesDir, file), 'utf8')));
  work = mkdtempSync(join(tmpdir(), 'cuda-llama-chat-'));
  const jobs = join(work, 'jobs.json');
  writeFileSync(jobs, JSON.stringify(paths.map((model) => ({ model, cases }))));
  references = JSON.parse(execFileSync(referenceProgram, [jobs], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })) as Reference[][];
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("llama.cpp's template collection", () => {
  it('renders every conversation exactly as llama.cpp does, or fails as llama.cpp does', async () => {
    expect(files.length).toBeGreaterThanOrEqual(70);
    const tally = { exact: 0, differ: 0, bothFail: 0, onlyOursFail: 0, onlyReferenceFails: 0 };
    const problems: string[] = [];
    const templatesRendered = new Set<string>();
    for (const [i, file] of files.entries()) {
      const model = await load(paths[i]!);
      try {
        for (const [j, c] of cases.entries()) {
          const reference = references[i]![j]!;
          const where = `${file} (${c.name})`;
          let prompt: string | undefined;
          let error: unknown;
          try {
            prompt = model.applyChatTemplate(c.messages, {
              addGenerationPrompt: c.addGenerationPrompt,
              ...(c.enableThinking !== undefined ? { reasoning: { enabled: c.enableThinking } } : {}),
            });
          } catch (e) {
            error = e;
          }
          if ('error' in reference) {
            if (prompt !== undefined) {
              tally.onlyReferenceFails++;
              problems.push(`${where}: llama.cpp fails (${reference.error}), we render`);
            } else if (error instanceof CudaLlamaError && error.code === 'ERR_CHAT_TEMPLATE' && error.message.includes(reference.error)) {
              tally.bothFail++;
            } else {
              tally.differ++;
              problems.push(`${where}: llama.cpp fails with ${reference.error}; we fail with ${String(error)}`);
            }
            continue;
          }
          if (prompt === undefined) {
            tally.onlyOursFail++;
            problems.push(`${where}: we fail (${String(error)}), llama.cpp renders`);
            continue;
          }
          const tokens = model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
          if (prompt === reference.prompt && JSON.stringify(tokens) === JSON.stringify(reference.tokens)) {
            tally.exact++;
            templatesRendered.add(file);
          } else {
            tally.differ++;
            problems.push(`${where}: prompts differ:\n  ours ${JSON.stringify(prompt)}\n  llama.cpp ${JSON.stringify(reference.prompt)}`);
          }
          // Never a doubled BOS, whether or not the template writes bos_token itself.
          if (tokens[0] === model.info.bosToken) expect(tokens[1], where).not.toBe(model.info.bosToken);
        }
      } finally {
        await model.dispose();
      }
    }
    console.log(
      `chat templates: ${files.length} templates x ${cases.length} conversations: ${tally.exact} exact, ${tally.differ} differ, ` +
        `${tally.bothFail} fail in both; ${templatesRendered.size} templates render at least one conversation`,
    );
    expect(problems).toEqual([]);
    expect(tally.onlyOursFail + tally.onlyReferenceFails).toBe(0);
  }, 600_000);
});

describe('chat templates through the API', () => {
  let model: LlamaModel;
  let llama31: LlamaModel;
  let qwen3: LlamaModel;

  beforeAll(async () => {
    model = await load(await templateModel('chatml'));
    llama31 = await load(await templateModel(readFileSync(join(templatesDir, 'meta-llama-Llama-3.1-8B-Instruct.jinja'), 'utf8')));
    qwen3 = await load(await templateModel(readFileSync(join(templatesDir, 'Qwen-Qwen3-0.6B.jinja'), 'utf8')));
  });

  afterAll(async () => {
    await Promise.all([model?.dispose(), llama31?.dispose(), qwen3?.dispose()]);
  });

  it('a template that writes bos_token gives exactly one BOS token, in applyChatTemplate and in chat()', async () => {
    const source = readFileSync(join(templatesDir, 'meta-llama-Llama-3.1-8B-Instruct.jinja'), 'utf8');
    expect(source).toContain('bos_token');
    const prompt = llama31.applyChatTemplate([user1]);
    // The model's tokenizer adds BOS, so llama.cpp drops the one the template wrote.
    expect(llama31.info.addBos).toBe(true);
    expect(prompt.startsWith('<s>')).toBe(false);
    expect(prompt).toContain('Cutting Knowledge Date');
    const tokens = llama31.tokenize(prompt, { parseSpecial: true });
    expect(tokens.filter((t) => t === llama31.info.bosToken)).toHaveLength(1);
    expect(tokens[0]).toBe(llama31.info.bosToken);
    const reply = await llama31.chat([user1], { maxTokens: 2, temperature: 0 });
    expect(reply.prompt).toBe(prompt);
    expect(reply.promptTokens).toBe(tokens.length);
  });

  it('chat() generates from the rendered prompt and reports the parts', async () => {
    const messages = [user1];
    const prompt = model.applyChatTemplate(messages);
    expect(prompt).toBe('<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n');
    const reply = await model.chat(messages, { maxTokens: 4, temperature: 0 });
    const direct = await model.generate(prompt, { maxTokens: 4, temperature: 0 });
    expect(reply.tokens).toEqual(direct.tokens);
    expect(reply).toMatchObject({ prompt, rawText: direct.text, reasoning: '' });
    const stream = model.chatStream(messages, { maxTokens: 4, temperature: 0 });
    let streamed = '';
    for await (const delta of stream) streamed += delta.content ?? '';
    expect(streamed).toBe((await stream.result).text);
  });

  it("separates the reasoning block from the answer with llama.cpp's chat parser", async () => {
    // The tiny model writes noise; the parse is checked on the reply a thinking model writes, with
    // the parser the template came with (the addon's, as chat() uses it).
    const native = await nativeBinary().addon.Model.load(qwen3.info.path, { vocabOnly: true });
    try {
      const host = { addon: nativeBinary().addon, native, path: qwen3.info.path, thinkingDefault: () => true };
      const plan = planChat(host, validateMessages([user1]), validateTemplateOnlyOptions({}));
      const rendered = plan.rendered;
      const reply: GenerateResult = {
        text: '<think>\nThe user asks for a capital.\n</think>\n\nParis.',
        tokens: [],
        promptTokens: 1,
        cachedTokens: 0,
        cacheSource: 'evaluated',
        droppedTokens: 0,
        stopReason: 'eos',
        timings: { promptMs: 0, timeToFirstTokenMs: 0, generationMs: 0, totalMs: 0, promptTokensPerSecond: 0, tokensPerSecond: 0 },
      };
      const result = chatResult(native, plan, reply);
      expect(result.parseError).toBeUndefined();
      // llama.cpp's parser keeps the newline before the closing tag; llama-server returns the same.
      expect(result).toMatchObject({
        reasoning: 'The user asks for a capital.\n',
        text: 'Paris.',
        rawText: reply.text,
        prompt: rendered.prompt,
      });
    } finally {
      native.dispose();
    }
  });

  it('reasoning.enabled reaches the template; without it, thinking is on where the template has the switch (llama-server)', () => {
    const on = qwen3.applyChatTemplate([user1], { reasoning: { enabled: true } });
    const off = qwen3.applyChatTemplate([user1], { reasoning: { enabled: false } });
    expect(off).toBe(`${on}<think>\n\n</think>\n\n`);
    expect(qwen3.applyChatTemplate([user1])).toBe(on);
  });

  it('options.template takes Jinja text or a built-in name', () => {
    const jinja = '{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}';
    expect(model.applyChatTemplate([{ role: 'user', content: 'x' }], { template: jinja })).toBe('[user]x[assistant]');
    expect(model.applyChatTemplate([{ role: 'user', content: 'x' }], { template: jinja, addGenerationPrompt: false })).toBe('[user]x');
    expect(model.applyChatTemplate([{ role: 'user', content: 'x' }], { template: 'llama3' })).toContain('<|start_header_id|>user');
  });

  it('chatTemplateKwargs reach the template, and are validated like other options', () => {
    const jinja = '{{ greeting }}|{{ config.n }}|{{ preserve_reasoning }}|{% for m in messages %}{{ m.content }}{% endfor %}';
    expect(
      model.applyChatTemplate([{ role: 'user', content: 'x' }], {
        template: jinja,
        chatTemplateKwargs: { greeting: 'hi', config: { n: 2 } },
      }),
    ).toBe('hi|2|True|x');
    expect(
      model.applyChatTemplate([{ role: 'user', content: 'x' }], {
        template: jinja,
        chatTemplateKwargs: { greeting: 'a', config: {}, preserve_reasoning: false },
      }),
    ).toBe('a||False|x');
    expect(() => model.applyChatTemplate([user1], { chatTemplateKwargs: { messages: [] } })).toThrow(RangeError);
    expect(() => model.applyChatTemplate([user1], { chatTemplateKwargs: { enable_thinking: false } })).toThrow(
      /use options\.reasoning\.enabled/,
    );
    expect(() => model.applyChatTemplate([user1], { chatTemplateKwargs: { f: () => 1 } })).toThrow(
      /chatTemplateKwargs\.f must be a JSON value/,
    );
    expect(() => model.applyChatTemplate([user1], { chatTemplateKwargs: 'x' as never })).toThrow(TypeError);
    expect(() => model.applyChatTemplate([user1], { addAssistant: false } as never)).toThrow(/use addGenerationPrompt/);
    expect(() => model.applyChatTemplate([user1], { templateVariables: {} } as never)).toThrow(/use chatTemplateKwargs/);
    expect(() => model.applyChatTemplate([user1], { enableThinking: false } as never)).toThrow(/use reasoning: \{ enabled \}/);
    expect(() => model.applyChatTemplate([user1], { reasoning: { enabled: 'no' } as never })).toThrow(
      /options\.reasoning\.enabled must be a boolean/,
    );
    expect(() => model.applyChatTemplate([{ role: '', content: 'x' }])).toThrow(RangeError);
  });

  it("an invalid template is ERR_CHAT_TEMPLATE with llama.cpp's reason, never a crash", async () => {
    const refuse = (template: string) => {
      try {
        model.applyChatTemplate([user1], { template });
      } catch (error) {
        return error;
      }
      return undefined;
    };
    for (const template of [
      '{% for %}',
      '{{ messages[0].content | no_such_filter }}',
      '{% if %}{% endif',
      '{{ raise_exception("no user role here") }}',
    ]) {
      const error = refuse(template);
      expect(error, template).toBeInstanceOf(CudaLlamaError);
      expect((error as CudaLlamaError).code, template).toBe('ERR_CHAT_TEMPLATE');
    }
    expect(String(refuse('{{ raise_exception("no user role here") }}'))).toContain('no user role here');
    await expect(model.chat([user1], { template: '{% for %}' })).rejects.toMatchObject({ code: 'ERR_CHAT_TEMPLATE' });
    const stream = model.chatStream([user1], { template: '{% for %}' });
    await expect(stream.result).rejects.toMatchObject({ code: 'ERR_CHAT_TEMPLATE' });
    // The model still works afterwards.
    expect(model.applyChatTemplate([user1])).toContain('<|im_start|>user');
  });
});

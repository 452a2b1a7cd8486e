// Test models for tool calling: one per template family of llama.cpp's models/templates that
// supports tools, each with random weights, the template, a llama.cpp vocabulary of its kind
// (byte-level BPE, or SentencePiece where the template opens the reply with nothing) and, as the
// family's real vocabulary has them, its markers added as single tokens (<tool_call>, <think>,
// ...): a reasoning budget counts the thinking tags as the tokens a real model writes. 'generic'
// is a template with no tool-call format of its own (the generic JSON envelope).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSyntheticModel } from '../../lib/gguf/synthetic-model.js';
import { cacheDir, repoRoot } from './models.js';

export interface ToolFamily {
  template: string;
  vocab: string;
  added: string[];
  /** The family thinks before it answers (a thinking block the reasoning budget bounds). */
  reasoning?: boolean;
  /** The single token that opens a call in the family's format, where it has one. */
  callStart?: string;
}

export const TOOL_FAMILIES = {
  'llama-3.1': { template: 'meta-llama-Llama-3.1-8B-Instruct', vocab: 'llama-bpe', added: ['<|python_tag|>', '<|eom_id|>'] },
  'llama-3.2': { template: 'meta-llama-Llama-3.2-3B-Instruct', vocab: 'llama-bpe', added: ['<|python_tag|>', '<|eom_id|>'] },
  'llama-3.3': { template: 'meta-llama-Llama-3.3-70B-Instruct', vocab: 'llama-bpe', added: ['<|python_tag|>', '<|eom_id|>'] },
  'qwen-2.5': { template: 'Qwen-Qwen2.5-7B-Instruct', vocab: 'qwen2', added: ['<tool_call>', '</tool_call>'], callStart: '<tool_call>' },
  'qwen-3': {
    template: 'Qwen-Qwen3-0.6B',
    vocab: 'qwen2',
    added: ['<think>', '</think>', '<tool_call>', '</tool_call>'],
    reasoning: true,
    callStart: '<tool_call>',
  },
  'mistral-nemo': {
    template: 'mistralai-Mistral-Nemo-Instruct-2407',
    vocab: 'llama-spm',
    added: ['[INST]', '[/INST]', '[TOOL_CALLS]', '[AVAILABLE_TOOLS]', '[/AVAILABLE_TOOLS]', '[TOOL_RESULTS]', '[/TOOL_RESULTS]'],
    callStart: '[TOOL_CALLS]',
  },
  'hermes-2-pro': {
    template: 'NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use',
    vocab: 'qwen2',
    added: ['<tool_call>', '</tool_call>'],
    callStart: '<tool_call>',
  },
  'functionary-3.1': { template: 'meetkai-functionary-medium-v3.1', vocab: 'llama-bpe', added: ['<|eom_id|>'] },
  'functionary-3.2': { template: 'meetkai-functionary-medium-v3.2', vocab: 'llama-bpe', added: [] },
  'deepseek-r1': {
    template: 'deepseek-ai-DeepSeek-R1-Distill-Qwen-32B',
    vocab: 'deepseek-llm',
    added: [
      '<｜User｜>',
      '<｜Assistant｜>',
      '<think>',
      '</think>',
      '<｜tool▁calls▁begin｜>',
      '<｜tool▁calls▁end｜>',
      '<｜tool▁call▁begin｜>',
      '<｜tool▁call▁end｜>',
      '<｜tool▁sep｜>',
      '<｜tool▁outputs▁begin｜>',
      '<｜tool▁outputs▁end｜>',
      '<｜tool▁output▁begin｜>',
      '<｜tool▁output▁end｜>',
    ],
    reasoning: true,
  },
  'command-r7b': {
    template: 'CohereForAI-c4ai-command-r7b-12-2024-tool_use',
    vocab: 'llama-bpe',
    added: [
      '<|START_OF_TURN_TOKEN|>',
      '<|END_OF_TURN_TOKEN|>',
      '<|SYSTEM_TOKEN|>',
      '<|USER_TOKEN|>',
      '<|CHATBOT_TOKEN|>',
      '<|START_THINKING|>',
      '<|END_THINKING|>',
      '<|START_RESPONSE|>',
      '<|END_RESPONSE|>',
      '<|START_ACTION|>',
      '<|END_ACTION|>',
      '<|START_TOOL_RESULT|>',
      '<|END_TOOL_RESULT|>',
    ],
    reasoning: true,
  },
  'gpt-oss': {
    template: 'openai-gpt-oss-120b',
    vocab: 'llama-bpe',
    added: ['<|start|>', '<|end|>', '<|message|>', '<|channel|>', '<|constrain|>', '<|return|>', '<|call|>'],
  },
  'granite-3.3': {
    template: 'ibm-granite-granite-3.3-2B-Instruct',
    vocab: 'llama-bpe',
    added: ['<|start_of_role|>', '<|end_of_role|>', '<|end_of_text|>', '<think>', '</think>', '<response>', '</response>'],
  },
  'granite-4.0': {
    template: 'ibm-granite-granite-4.0',
    vocab: 'llama-bpe',
    added: ['<|start_of_role|>', '<|end_of_role|>', '<|end_of_text|>', '<tool_call>', '</tool_call>'],
  },
  generic: { template: 'google-gemma-2-2b-it', vocab: 'llama-spm', added: ['<start_of_turn>', '<end_of_turn>'] },
} satisfies Record<string, ToolFamily>;

export type ToolFamilyName = keyof typeof TOOL_FAMILIES;

/** A family's settings, with every optional field in its type. */
export function toolFamily(name: ToolFamilyName): ToolFamily {
  return TOOL_FAMILIES[name];
}

/** Small: what is tested is the grammar and the parser, not the model. */
const shape = { nEmbd: 64, nFf: 128, nLayer: 2, nHead: 4, nHeadKv: 2, contextLength: 4096 };

export function templateText(template: string): string {
  return readFileSync(join(repoRoot, 'vendor', 'llama.cpp', 'models', 'templates', `${template}.jinja`), 'utf8');
}

/** The family's test model (generated once into the test model cache). */
export function toolFamilyModel(name: ToolFamilyName): Promise<string> {
  const family = toolFamily(name);
  return ensureSyntheticModel({
    cacheDir,
    shape,
    vocabPath: join(repoRoot, 'vendor', 'llama.cpp', 'models', `ggml-vocab-${family.vocab}.gguf`),
    chatTemplate: templateText(family.template),
    addedTokens: family.added,
    label: `tools-${name}`,
  });
}

/** Two functions with bounded arguments, so that a random model's calls end within a few hundred tokens. */
export const TEST_TOOLS = [
  {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { location: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['location'],
      additionalProperties: false,
    },
  },
  {
    name: 'add',
    description: 'Adds two numbers',
    parameters: {
      type: 'object',
      properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } },
      required: ['a', 'b'],
      additionalProperties: false,
    },
  },
];

/**
 * Tool calling for chat(): the tool definitions and tool_choice (validated and named, as OpenAI's
 * function tools), the tool calls of a reply (ids, arguments parsed and checked against the
 * tool's parameters), and the generic format for templates that have no tool-call format of
 * their own: the tools described in the system message and the reply constrained to a JSON
 * envelope, {"tool_calls": [{"name", "arguments"}]} (or {"response": "..."} with 'auto').
 *
 * Templates with a format of their own get the tools through llama.cpp's chat layer
 * (native/chat_templates.cc): the template renders them, common's grammar constrains the call
 * and common's parser reads it back.
 */
import { randomBytes } from 'node:crypto';
import { checkJsonSchema, schemaViolation, type JsonSchema } from './structured/json-schema.js';
import { expectString, optionalBoolean, rangeError, rejectUnknownKeys, typeError } from './validate.js';

/** A function the model may call (OpenAI's function tool). */
export interface ToolDefinition {
  /** 1-64 letters, digits, '_', '-' or '.'. */
  name: string;
  /** What it does, for the model. */
  description?: string;
  /** Its arguments, as a JSON Schema of an object (default: no arguments). The arguments of every call are held to it. */
  parameters?: JsonSchema;
}

/** A tool: the definition itself, or OpenAI's wrapper `{ type: 'function', function }`. */
export type Tool = ToolDefinition | { type: 'function'; function: ToolDefinition };

/**
 * 'auto': the model decides (a call it starts is held to the grammar); 'none': no tool call;
 * 'required': at least one call; `{ name }`: exactly that function.
 */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

/** A tool call as a conversation carries it (an earlier assistant message). */
export interface ToolCall {
  /** Its id; a `tool` message with the result names it as toolCallId. */
  id: string;
  name: string;
  /** The arguments as JSON text (an object is accepted in a conversation and written as JSON). */
  arguments: string;
}

/** A tool call in a result: its arguments as the model wrote them and parsed. */
export interface ResultToolCall extends ToolCall {
  /** The arguments parsed (they match the tool's parameters). */
  parsed: unknown;
}

/** The tools as lib/ uses them: validated, parameters checked against what llama.cpp enforces. */
export interface ValidTool {
  name: string;
  description: string;
  parameters: JsonSchema;
}

const TOOL_NAME = /^[a-zA-Z0-9_.-]{1,64}$/;
const MAX_TOOLS = 128;
/** What a tool without parameters takes: an object with nothing in it. */
const NO_PARAMETERS: JsonSchema = { type: 'object', properties: {}, additionalProperties: false };

const isObject = (v: unknown): v is JsonSchema => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `value` as an object; unlike validate.ts expectObject, undefined is not one (a tool or its function is required). */
function requireObject(name: string, value: unknown): Record<string, unknown> {
  if (!isObject(value)) throw typeError(name, 'an object', value);
  return value;
}

export function validateTools(input: unknown): ValidTool[] {
  if (!Array.isArray(input)) throw typeError('options.tools', 'an array of tools ({ name, description, parameters })', input);
  if (input.length > MAX_TOOLS) throw rangeError('options.tools', `at most ${MAX_TOOLS} tools`, input.length);
  const names = new Set<string>();
  return input.map((raw: unknown, i) => {
    let tool = requireObject(`options.tools[${i}]`, raw);
    let at = `options.tools[${i}]`;
    if (tool.type !== undefined || tool.function !== undefined) {
      rejectUnknownKeys(at, tool, ['type', 'function']);
      if (tool.type !== 'function') throw typeError(`${at}.type`, "'function'", tool.type);
      at = `${at}.function`;
      tool = requireObject(at, tool.function);
    }
    rejectUnknownKeys(at, tool, ['name', 'description', 'parameters', 'strict']);
    const name = expectString(`${at}.name`, tool.name);
    if (!TOOL_NAME.test(name)) throw rangeError(`${at}.name`, '1 to 64 letters, digits, _, - or .', name);
    if (names.has(name)) throw rangeError(`${at}.name`, 'a name no other tool has', name);
    names.add(name);
    const description = tool.description === undefined ? '' : expectString(`${at}.description`, tool.description);
    optionalBoolean(`${at}.strict`, tool.strict); // always enforced; accepted as OpenAI clients send it
    let parameters = NO_PARAMETERS;
    if (tool.parameters !== undefined && !(isObject(tool.parameters) && Object.keys(tool.parameters).length === 0)) {
      parameters = checkJsonSchema(tool.parameters, `${at}.parameters`);
      // Arguments are an object: a schema that says so, or one of properties alone.
      const type = parameters.type;
      if (type === undefined ? parameters.properties === undefined : type !== 'object') {
        throw rangeError(`${at}.parameters.type`, "'object' (arguments are an object)", type);
      }
    }
    return { name, description, parameters };
  });
}

/** toolChoice, checked against the tools (a named tool must be one of them). */
export function validateToolChoice(input: unknown, tools: ValidTool[]): ToolChoice {
  if (input === undefined) return 'auto';
  if (input === 'auto' || input === 'none' || input === 'required') return input;
  if (isObject(input)) {
    rejectUnknownKeys('options.toolChoice', input, ['name']);
    const name = expectString('options.toolChoice.name', input.name);
    if (!tools.some((t) => t.name === name)) {
      throw rangeError(
        'options.toolChoice.name',
        `the name of one of options.tools (${tools.map((t) => t.name).join(', ') || 'none given'})`,
        name,
      );
    }
    return { name };
  }
  throw typeError('options.toolChoice', "'auto', 'none', 'required' or { name }", input);
}

/** A call id: the model's where its format has one, else ours, OpenAI-style. */
export function newToolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

/**
 * The tool call as a result carries it, or why it is not one: arguments that are not JSON, or
 * that do not match the tool's parameters (possible only where no grammar held the model to them:
 * 'auto' with a template whose calls have no start marker to trigger the grammar on).
 */
export function checkToolCall(
  tools: ValidTool[],
  call: { name: string; arguments: string },
  id: string,
): { call: ResultToolCall } | { error: string } {
  const tool = tools.find((t) => t.name === call.name);
  if (tool === undefined) return { error: `the model called ${JSON.stringify(call.name)}, which is not among the tools` };
  const args = call.arguments === '' ? '{}' : call.arguments;
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch (error) {
    return { error: `the arguments of ${call.name} are not JSON: ${(error as Error).message}` };
  }
  const violation = schemaViolation(tool.parameters, parsed, `the parameters of ${call.name}`);
  if (violation !== undefined) return { error: `the arguments of ${call.name} do not match its parameters: ${violation}` };
  return { call: { id, name: call.name, arguments: args, parsed } };
}

/**
 * `schema` with its "#/..." references moved under `base` (a JSON pointer): a $ref is resolved from
 * the root of the document it is in, so parameters placed inside the envelope must point into
 * themselves there. Only schema positions are walked (checkJsonSchema allows no others), not values.
 */
function rebaseRefs(schema: JsonSchema, base: string): JsonSchema {
  const out: JsonSchema = { ...schema };
  const one = (v: unknown) => (isObject(v) ? rebaseRefs(v, base) : v);
  const many = (v: unknown) => (Array.isArray(v) ? v.map(one) : one(v));
  if (typeof out.$ref === 'string' && out.$ref.startsWith('#/')) out.$ref = `#${base}${out.$ref.slice(1)}`;
  for (const key of ['properties', '$defs', 'definitions']) {
    if (isObject(out[key])) out[key] = Object.fromEntries(Object.entries(out[key]).map(([name, s]) => [name, one(s)]));
  }
  for (const key of ['additionalProperties', 'items', 'prefixItems', 'anyOf', 'oneOf', 'allOf']) if (key in out) out[key] = many(out[key]);
  return out;
}

/** The tools the model may call under `choice`: the named one, or all. */
function offeredTools(tools: ValidTool[], choice: ToolChoice): ValidTool[] {
  return typeof choice === 'object' ? tools.filter((t) => t.name === choice.name) : tools;
}

/** The generic format: the envelope the reply must be, as a JSON Schema (llama.cpp turns it into the grammar). */
export function genericEnvelopeSchema(tools: ValidTool[], choice: ToolChoice, parallel: boolean): JsonSchema {
  const offered = offeredTools(tools, choice);
  // Where each tool's arguments schema sits in the envelope, for its own $refs.
  const items = `${choice === 'auto' ? '/anyOf/0' : ''}/properties/tool_calls/items`;
  const call = (tool: ValidTool, i: number): JsonSchema => ({
    type: 'object',
    properties: {
      name: { const: tool.name },
      arguments: rebaseRefs(tool.parameters, `${items}${offered.length === 1 ? '' : `/anyOf/${i}`}/properties/arguments`),
    },
    required: ['name', 'arguments'],
    additionalProperties: false,
  });
  const calls: JsonSchema = {
    type: 'object',
    properties: {
      tool_calls: {
        type: 'array',
        items: offered.length === 1 ? call(offered[0]!, 0) : { anyOf: offered.map(call) },
        minItems: 1,
        ...(parallel ? {} : { maxItems: 1 }),
      },
    },
    required: ['tool_calls'],
    additionalProperties: false,
  };
  if (choice !== 'auto') return calls;
  const response: JsonSchema = {
    type: 'object',
    properties: { response: { type: 'string' } },
    required: ['response'],
    additionalProperties: false,
  };
  return { anyOf: [calls, response] };
}

/** The system message of the generic format: the tools and how to answer. */
export function genericSystemPrompt(tools: ValidTool[], choice: ToolChoice): string {
  const list = offeredTools(tools, choice)
    .map((t) => JSON.stringify({ name: t.name, description: t.description, parameters: t.parameters }))
    .join('\n');
  const answer =
    choice === 'auto'
      ? 'Answer with a JSON object: {"tool_calls": [{"name": ..., "arguments": {...}}]} to call tools, or {"response": "..."} to reply.'
      : 'Answer with a JSON object that calls tools: {"tool_calls": [{"name": ..., "arguments": {...}}]}.';
  return `You can call these tools:\n${list}\n${answer}`;
}

/**
 * The generic format's reply read back: the calls (name and arguments text) or the answer;
 * undefined for anything that is not the envelope, including a call without a string name or an
 * arguments object (the envelope requires both).
 */
export function parseGenericReply(text: string): { calls: { name: string; arguments: string }[]; content: string } | undefined {
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(reply)) return undefined;
  if (Array.isArray(reply.tool_calls)) {
    const calls: { name: string; arguments: string }[] = [];
    for (const c of reply.tool_calls as unknown[]) {
      if (!isObject(c) || typeof c.name !== 'string' || !isObject(c.arguments)) return undefined;
      calls.push({ name: c.name, arguments: JSON.stringify(c.arguments) });
    }
    return { calls, content: '' };
  }
  return typeof reply.response === 'string' ? { calls: [], content: reply.response } : undefined;
}

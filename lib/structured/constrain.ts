/**
 * A request's output held by a grammar, and read back: the grammar from GBNF text or a JSON
 * schema (llama.cpp's converter), checked before anything decodes, and the JSON value of a
 * schema-constrained output with the reason when there is none. Used by generate() (lib/request.ts)
 * and chat() (lib/chat.ts) alike.
 */
import { fromNativeError } from '../errors.js';
import type { NativeAddon, NativeGrammar, NativeModel } from '../binding/native.js';
import { checkGrammar } from './grammar-guards.js';
import { schemaViolation, type JsonSchema } from './json-schema.js';

/** What checking a grammar needs from the model: llama.cpp's own parser (grammarProblem). */
export interface GrammarHost {
  addon: NativeAddon;
  native: NativeModel;
}

/** `text` as a grammar held from the first token, once the guards and llama.cpp's parser accept it; `where` names it in errors. */
export function checkedGrammar(host: GrammarHost, text: string, kind: NativeGrammar['kind'], where: string): NativeGrammar {
  checkGrammar(text, where, (t) => host.addon.grammarProblem(host.native, t, 'root'));
  return { text, kind, lazy: false, triggers: [], generationPrompt: '' };
}

/** The grammar of a (checked) JSON schema: llama.cpp's json_schema_to_grammar, repaired natively, then checked. */
export function schemaGrammar(host: GrammarHost, schema: JsonSchema, kind: NativeGrammar['kind'], where: string): NativeGrammar {
  let text: string;
  try {
    text = host.addon.jsonSchemaToGrammar(JSON.stringify(schema));
  } catch (error) {
    throw fromNativeError(error);
  }
  return checkedGrammar(host, text, kind, where);
}

/**
 * The value of an output a schema's grammar held, or why there is none: cut short (any stop but
 * the end of generation or a stop string), not JSON, or not matching the schema (Ajv: what no
 * grammar enforces, like `format`). `what` names the output in the reason ("the output").
 */
export function parseJsonOutput(
  text: string,
  stopReason: string,
  schema: JsonSchema,
  schemaName: string,
  what: string,
): { parsed: unknown } | { parseError: string } {
  if (stopReason !== 'eos' && stopReason !== 'stop') {
    return { parseError: `${what} was cut short (${stopReason}) before the JSON value was complete` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { parseError: `${what} is not JSON: ${(error as Error).message}` };
  }
  const violation = schemaViolation(schema, value, schemaName);
  return violation === undefined ? { parsed: value } : { parseError: `${what} does not match the schema: ${violation}` };
}

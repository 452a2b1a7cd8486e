/**
 * JSON Schemas for structured output and tool parameters: what llama.cpp's conversion to a
 * grammar (common/json-schema.cpp, common/json-schema-to-grammar.cpp) really enforces, checked
 * before anything reaches it, and the validator (Ajv) that reads results back.
 *
 * llama.cpp converts what it can and quietly drops the rest: a keyword it does not know is
 * ignored, an unsupported regex becomes "any string" (a warning on stderr), `number` bounds and
 * most formats are not enforced, a negated character class lets a raw quote into a JSON string,
 * and minLength > maxLength becomes a repetition {m,n} with m > n that hangs its grammar parser.
 * Output from such a grammar does not validate against the schema the caller gave. So every
 * keyword is checked here against the list of those the grammar enforces exactly, and anything
 * else is ERR_JSON_SCHEMA naming the keyword and where it is (a JSON pointer), with what to use
 * instead. docs/structured-output.md has the list.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { ErrorCode, JsonSchemaError } from '../errors.js';
import { MAX_REPETITION, checkPattern } from './json-schema-pattern.js';

/** A JSON Schema object (draft-07 or 2020-12). */
export type JsonSchema = Record<string, unknown>;

/** Keywords that only describe: allowed anywhere, no effect on the output. */
const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
]);

/** Keywords the grammar enforces exactly (with the checks below). */
const ENFORCED = new Set([
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'anyOf',
  'oneOf',
  'allOf',
  '$ref',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);

/** Why a known keyword is refused, and what to use instead. */
const REFUSED: Record<string, string> = {
  not: "llama.cpp's grammar cannot express negation",
  if: "llama.cpp's grammar has no conditionals; use anyOf",
  then: "llama.cpp's grammar has no conditionals; use anyOf",
  else: "llama.cpp's grammar has no conditionals; use anyOf",
  patternProperties: 'llama.cpp does not enforce it; list the properties, or use additionalProperties',
  propertyNames: 'llama.cpp does not enforce it',
  minProperties: 'llama.cpp does not enforce it; make the properties required',
  maxProperties: 'llama.cpp does not enforce it',
  dependentRequired: 'llama.cpp does not enforce it',
  dependentSchemas: 'llama.cpp does not enforce it',
  dependencies: 'llama.cpp does not enforce it',
  contains: 'llama.cpp does not enforce it',
  minContains: 'llama.cpp does not enforce it',
  maxContains: 'llama.cpp does not enforce it',
  uniqueItems: 'llama.cpp does not enforce it (false is accepted)',
  multipleOf: 'llama.cpp does not enforce it',
  unevaluatedProperties: 'llama.cpp does not enforce it; use additionalProperties',
  unevaluatedItems: 'llama.cpp does not enforce it',
  contentEncoding: 'llama.cpp does not enforce it',
  contentMediaType: 'llama.cpp does not enforce it',
  $dynamicRef: 'only $ref into the same document is supported',
  $recursiveRef: 'only $ref into the same document is supported',
  $anchor: 'only $ref by JSON pointer ("#/$defs/name") is supported',
};

/** Formats the grammar enforces as the validator checks them. */
const FORMATS = new Set(['time', 'uuid']);
const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'object', 'array']);
/** Deeper schemas are refused before llama.cpp's recursive conversion sees them. */
export const MAX_SCHEMA_DEPTH = 48;
/** More $refs are refused: llama.cpp resolves a chain of them by recursion. */
export const MAX_REFS = 256;
/** Larger schemas (JSON text, bytes) are refused: a grammar for them would be huge. */
export const MAX_SCHEMA_BYTES = 256 * 1024;

function refuse(where: string, pointer: string, message: string, remedy: string): never {
  const at = pointer === '' ? '' : ` at ${pointer}`;
  throw new JsonSchemaError(ErrorCode.JSON_SCHEMA, `${where}${at}: ${message}`, { remedy, details: { pointer } });
}

const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

function typesOf(schema: JsonSchema): string[] | undefined {
  const { type } = schema;
  if (type === undefined) return undefined;
  return Array.isArray(type) ? (type as string[]) : [type as string];
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function valueFitsTypes(value: unknown, types: string[]): boolean {
  const t = jsonType(value);
  return types.includes(t) || (t === 'integer' && types.includes('number'));
}

interface Walk {
  where: string;
  /** Every schema checked, by its JSON pointer: what a $ref may point at. */
  schemas: Map<string, JsonSchema>;
  /** Every $ref, checked against `schemas` once the walk is done (its target may come later). */
  refs: { ref: string; pointer: string }[];
  /** Checks that read through a $ref: run once every $ref is known to point at a checked schema. */
  deferred: (() => void)[];
}

/**
 * The schema `ref` points at, or ERR_JSON_SCHEMA at `pointer`: it must be one the walk has checked,
 * not a value (a default, an enum) that would reach llama.cpp's conversion unchecked. The only
 * check of a $ref's target; run after the walk, when every schema has been read.
 */
function refTarget(walk: Walk, ref: string, pointer: string): JsonSchema {
  const target = walk.schemas.get(ref.slice(1));
  if (target === undefined)
    refuse(
      walk.where,
      pointer,
      `$ref ${JSON.stringify(ref)} does not point at a schema in this document (nothing there, or a value such as a default)`,
      'point it at a schema, e.g. "#/$defs/name"',
    );
  return target;
}

/** The schema itself, or the one its $ref points at (one step, as signature and allOf read it). */
function followRef(walk: Walk, schema: JsonSchema, pointer: string): JsonSchema {
  return typeof schema.$ref === 'string' ? refTarget(walk, schema.$ref, `${pointer}/$ref`) : schema;
}

/** What the schema admits at its top level, for the disjointness of oneOf: [types, const values]. */
function signature(s: JsonSchema): { types?: string[]; discriminators: Map<string, unknown> } {
  const discriminators = new Map<string, unknown>();
  const properties = (s.properties ?? {}) as Record<string, JsonSchema>;
  for (const [key, prop] of Object.entries(properties)) {
    if (prop && typeof prop === 'object' && 'const' in prop && ((s.required as string[] | undefined) ?? []).includes(key))
      discriminators.set(key, prop.const);
  }
  return { types: typesOf(s), discriminators };
}

/**
 * oneOf is converted as anyOf: exact only when no value matches two alternatives. Accepted when
 * every alternative has one type and no two share it, or all are objects told apart by a required
 * property with a different `const` in each (a discriminated union).
 */
function oneOfIsDisjoint(walk: Walk, alternatives: JsonSchema[], pointer: string): boolean {
  const sigs = alternatives.map((a, i) => signature(followRef(walk, a, `${pointer}/${i}`)));
  const single = sigs.map((s) => (s.types?.length === 1 ? s.types[0] : undefined));
  if (single.every((t) => t !== undefined) && new Set(single).size === single.length && !single.includes('number')) return true;
  for (const key of sigs[0]?.discriminators.keys() ?? []) {
    const values = sigs.map((s) => (s.discriminators.has(key) ? JSON.stringify(s.discriminators.get(key)) : undefined));
    if (values.every((v) => v !== undefined) && new Set(values).size === values.length) return true;
  }
  return false;
}

function checkNode(walk: Walk, node: unknown, pointer: string, depth: number): void {
  const { where } = walk;
  if (depth > MAX_SCHEMA_DEPTH) refuse(where, pointer, `nested deeper than ${MAX_SCHEMA_DEPTH} levels`, 'flatten the schema, or use $ref');
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    refuse(
      where,
      pointer,
      'a schema must be an object (boolean schemas such as true/false are supported only as additionalProperties)',
      'write {} for "anything"',
    );
  }
  const schema = node as JsonSchema;
  walk.schemas.set(pointer, schema);
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key) || ENFORCED.has(key)) continue;
    if (key === 'uniqueItems' && schema.uniqueItems === false) continue;
    const reason = REFUSED[key] ?? "llama.cpp's grammar conversion ignores it, so the output would not be held to it";
    refuse(
      where,
      `${pointer}/${escapePointer(key)}`,
      `the keyword "${key}" is not supported: ${reason}`,
      'remove it, or express the constraint with the supported keywords (docs/structured-output.md)',
    );
  }
  for (const container of ['$defs', 'definitions'] as const) {
    const defs = schema[container];
    if (defs === undefined) continue;
    if (defs === null || typeof defs !== 'object' || Array.isArray(defs))
      refuse(where, `${pointer}/${container}`, 'must be an object of schemas', 'fix the schema');
    for (const [name, def] of Object.entries(defs as Record<string, unknown>))
      checkNode(walk, def, `${pointer}/${container}/${escapePointer(name)}`, depth + 1);
  }
  const types = typesOf(schema);
  if (types !== undefined) {
    if (types.length === 0 || types.some((t) => typeof t !== 'string' || !TYPES.has(t))) {
      refuse(where, `${pointer}/type`, `"type" must be one of ${[...TYPES].join(', ')} or an array of them`, 'fix the type');
    }
  }
  if (schema.$ref !== undefined) {
    const ref = schema.$ref;
    // Where it points is checked once the walk is done (refTarget); here only its form.
    if (typeof ref !== 'string' || !ref.startsWith('#/')) {
      refuse(
        where,
        `${pointer}/$ref`,
        `$ref ${JSON.stringify(ref)} does not point into this schema`,
        'use "#/$defs/name" references to definitions in the same schema',
      );
    }
    // llama.cpp follows a pointer's parts as written, without JSON pointer's ~0/~1 escapes.
    if (ref.includes('~'))
      refuse(
        where,
        `${pointer}/$ref`,
        `$ref ${JSON.stringify(ref)} uses a ~ escape, which llama.cpp does not decode`,
        'name the definition without "/" or "~"',
      );
    // llama.cpp resolves each $ref by recursion: a long chain of them would overflow its stack.
    if (walk.refs.length >= MAX_REFS) refuse(where, `${pointer}/$ref`, `more than ${MAX_REFS} $refs`, 'use fewer references');
    walk.refs.push({ ref, pointer: `${pointer}/$ref` });
    const others = Object.keys(schema).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
    if (others.length > 0)
      refuse(
        where,
        pointer,
        `$ref beside ${others.join(', ')}: llama.cpp follows the $ref and ignores the rest`,
        'wrap them in allOf, or move them into the referenced schema',
      );
    return;
  }
  if ('enum' in schema || 'const' in schema) {
    const key = 'const' in schema ? 'const' : 'enum';
    // common/json-schema.cpp build_node follows anyOf/oneOf before const/enum, and const/enum
    // before every other keyword but type: what is beside them would not hold the output.
    const others = Object.keys(schema).filter((k) => k !== key && k !== 'type' && !ANNOTATIONS.has(k));
    if (others.length > 0)
      refuse(
        where,
        pointer,
        `${key} beside ${others.join(', ')}: llama.cpp writes one of the values and ignores the rest`,
        `remove ${others.join(', ')}, or list only values that satisfy them`,
      );
    const values = key === 'const' ? [schema.const] : (schema.enum as unknown[]);
    if (!Array.isArray(values) || values.length === 0)
      refuse(where, `${pointer}/enum`, 'enum must be a non-empty array', 'list the allowed values');
    if (types !== undefined) {
      const misfit = values.find((v) => !valueFitsTypes(v, types));
      if (misfit !== undefined)
        refuse(
          where,
          pointer,
          `the value ${JSON.stringify(misfit)} is not of type ${types.join(' or ')}: no output can match`,
          'make the values and the type agree',
        );
    }
    return; // llama.cpp writes one of the values and ignores everything else
  }
  if ('anyOf' in schema || 'oneOf' in schema) {
    const key = 'anyOf' in schema ? 'anyOf' : 'oneOf';
    if ('anyOf' in schema && 'oneOf' in schema)
      refuse(where, pointer, 'both anyOf and oneOf: llama.cpp uses anyOf only', 'combine them into one anyOf');
    const alternatives = schema[key];
    if (!Array.isArray(alternatives) || alternatives.length === 0)
      refuse(where, `${pointer}/${key}`, `${key} must be a non-empty array of schemas`, 'list the alternatives');
    const others = Object.keys(schema).filter((k) => k !== key && !ANNOTATIONS.has(k));
    if (others.length > 0)
      refuse(
        where,
        pointer,
        `${key} beside ${others.join(', ')}: llama.cpp uses the alternatives and ignores the rest`,
        'move those keywords into each alternative',
      );
    alternatives.forEach((alt, i) => checkNode(walk, alt, `${pointer}/${key}/${i}`, depth + 1));
    if (key === 'oneOf') {
      walk.deferred.push(() => {
        if (!oneOfIsDisjoint(walk, alternatives as JsonSchema[], `${pointer}/oneOf`))
          refuse(
            where,
            `${pointer}/oneOf`,
            'oneOf is enforced as anyOf, which admits a value matching two alternatives',
            'use anyOf, or give each alternative its own type or a required property with a distinct const',
          );
      });
    }
    return;
  }
  if ('allOf' in schema) checkAllOf(walk, schema, pointer, depth);
  checkObject(walk, schema, types, pointer, depth);
  checkArray(walk, schema, pointer, depth);
  checkString(walk, schema, pointer);
  checkNumber(walk, schema, types, pointer);
}

function checkAllOf(walk: Walk, schema: JsonSchema, pointer: string, depth: number): void {
  const { where } = walk;
  const members = schema.allOf;
  if (!Array.isArray(members) || members.length === 0)
    refuse(where, `${pointer}/allOf`, 'allOf must be a non-empty array of schemas', 'list the schemas');
  // build_node converts {"type": "string", "allOf": [...]} as the members' merged object, which is not a string.
  if (schema.type !== undefined && schema.type !== 'object')
    refuse(
      where,
      `${pointer}/type`,
      'allOf is merged as an object, so "type" beside it must be "object"',
      'remove the type, or make it "object"',
    );
  const others = Object.keys(schema).filter((k) => k !== 'allOf' && k !== 'type' && !ANNOTATIONS.has(k));
  if (others.length > 0)
    refuse(
      where,
      pointer,
      `allOf beside ${others.join(', ')}: llama.cpp merges the allOf members' properties and ignores the rest`,
      'move those keywords into a member',
    );
  members.forEach((member: unknown, i) => checkNode(walk, member, `${pointer}/allOf/${i}`, depth + 1));
  walk.deferred.push(() => {
    const seen = new Set<string>();
    (members as JsonSchema[]).forEach((member, i) => {
      const at = `${pointer}/allOf/${i}`;
      const m = followRef(walk, member, at);
      const keys = Object.keys(m).filter((k) => !ANNOTATIONS.has(k));
      if (!keys.every((k) => ['type', 'properties', 'required'].includes(k)) || (m.type !== undefined && m.type !== 'object')) {
        refuse(
          where,
          at,
          'llama.cpp merges allOf only for objects with properties and required',
          'write the merged object out, or use only properties/required in each member',
        );
      }
      for (const name of Object.keys((m.properties ?? {}) as object)) {
        if (seen.has(name)) refuse(where, at, `the property "${name}" is in two allOf members`, 'declare each property once');
        seen.add(name);
      }
    });
  });
}

function checkObject(walk: Walk, schema: JsonSchema, types: string[] | undefined, pointer: string, depth: number): void {
  const { where } = walk;
  const properties = schema.properties;
  if (properties !== undefined) {
    if (properties === null || typeof properties !== 'object' || Array.isArray(properties))
      refuse(where, `${pointer}/properties`, 'properties must be an object of schemas', 'fix the schema');
    for (const [name, prop] of Object.entries(properties as Record<string, unknown>))
      checkNode(walk, prop, `${pointer}/properties/${escapePointer(name)}`, depth + 1);
  }
  const additional = schema.additionalProperties;
  if (additional !== undefined && typeof additional !== 'boolean')
    checkNode(walk, additional, `${pointer}/additionalProperties`, depth + 1);
  if (schema.required !== undefined) {
    if (!Array.isArray(schema.required) || schema.required.some((r) => typeof r !== 'string'))
      refuse(where, `${pointer}/required`, 'required must be an array of property names', 'fix the schema');
    const declared = new Set(Object.keys((properties ?? {}) as object));
    const missing = (schema.required as string[]).filter((r) => !declared.has(r));
    if (missing.length > 0 && types?.includes('object') !== false && schema.allOf === undefined) {
      refuse(
        where,
        `${pointer}/required`,
        `required names ${missing.map((m) => JSON.stringify(m)).join(', ')}, which properties does not declare: llama.cpp would never write them`,
        'declare each required property under properties',
      );
    }
  }
}

function checkArray(walk: Walk, schema: JsonSchema, pointer: string, depth: number): void {
  const { where } = walk;
  const items = schema.items ?? schema.prefixItems;
  const key = schema.items !== undefined ? 'items' : 'prefixItems';
  if (schema.items !== undefined && schema.prefixItems !== undefined)
    refuse(where, pointer, 'both items and prefixItems: llama.cpp uses items only', 'use one of them');
  if (Array.isArray(items)) {
    items.forEach((item, i) => checkNode(walk, item, `${pointer}/${key}/${i}`, depth + 1));
    if (schema.minItems !== undefined || schema.maxItems !== undefined)
      refuse(where, pointer, 'minItems/maxItems beside a tuple (items as an array): llama.cpp writes exactly the tuple', 'remove them');
  } else if (items !== undefined) {
    checkNode(walk, items, `${pointer}/${key}`, depth + 1);
  }
  checkBounds(where, pointer, schema, 'minItems', 'maxItems');
}

function checkBounds(where: string, pointer: string, schema: JsonSchema, lower: string, upper: string): void {
  for (const key of [lower, upper]) {
    const v = schema[key];
    // Each becomes a grammar repetition {m,n}, bounded by MAX_REPETITION (json-schema-pattern.ts).
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_REPETITION)) {
      refuse(where, `${pointer}/${key}`, `${key} must be an integer from 0 to ${MAX_REPETITION}`, 'fix the bound');
    }
  }
  const min = schema[lower] as number | undefined;
  const max = schema[upper] as number | undefined;
  if (min !== undefined && max !== undefined && min > max) {
    // Converted as a repetition {min,max}, which hangs llama.cpp's grammar parser (min > max).
    refuse(where, pointer, `${lower} ${min} is above ${upper} ${max}: no value can match`, `make ${lower} at most ${upper}`);
  }
}

function checkString(walk: Walk, schema: JsonSchema, pointer: string): void {
  const { where } = walk;
  checkBounds(where, pointer, schema, 'minLength', 'maxLength');
  if (schema.format !== undefined) {
    if (typeof schema.format !== 'string' || !FORMATS.has(schema.format)) {
      const why =
        schema.format === 'date' || schema.format === 'date-time'
          ? "llama.cpp's date grammar admits impossible dates (February 30), which fail the format"
          : 'llama.cpp does not enforce it';
      refuse(
        where,
        `${pointer}/format`,
        `the format ${JSON.stringify(schema.format)} is not supported: ${why}`,
        `supported formats: ${[...FORMATS].join(', ')}; or use a pattern`,
      );
    }
    if (schema.pattern !== undefined || schema.minLength !== undefined || schema.maxLength !== undefined)
      refuse(where, pointer, 'format beside pattern/minLength/maxLength: llama.cpp uses one of them', 'keep one');
  }
  if (schema.pattern !== undefined) {
    if (typeof schema.pattern !== 'string') refuse(where, `${pointer}/pattern`, 'pattern must be a string', 'fix the pattern');
    const problem = checkPattern(schema.pattern);
    if (problem !== undefined)
      refuse(where, `${pointer}/pattern`, `the pattern ${JSON.stringify(schema.pattern)} ${problem.message}`, problem.remedy);
    if (schema.minLength !== undefined || schema.maxLength !== undefined)
      refuse(
        where,
        pointer,
        'pattern beside minLength/maxLength: llama.cpp enforces the pattern alone',
        'write the lengths into the pattern ({m,n})',
      );
  }
}

function checkNumber(walk: Walk, schema: JsonSchema, types: string[] | undefined, pointer: string): void {
  const { where } = walk;
  const bounds = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'].filter((k) => schema[k] !== undefined);
  if (bounds.length === 0) return;
  if (types === undefined || types.length !== 1 || types[0] !== 'integer') {
    refuse(
      where,
      `${pointer}/${bounds[0]!}`,
      `${bounds[0]!} is enforced for "type": "integer" only (llama.cpp writes any number otherwise)`,
      'use "type": "integer", or drop the bound',
    );
  }
  for (const key of bounds) {
    if (typeof schema[key] !== 'number' || !Number.isFinite(schema[key]))
      refuse(where, `${pointer}/${key}`, `${key} must be a number`, 'fix the bound');
  }
  // common/json-schema.cpp build_integer reads exclusiveMinimum only without minimum (and exclusiveMaximum only without maximum).
  for (const [inclusive, exclusive] of [
    ['minimum', 'exclusiveMinimum'],
    ['maximum', 'exclusiveMaximum'],
  ] as const) {
    if (schema[inclusive] !== undefined && schema[exclusive] !== undefined)
      refuse(
        where,
        `${pointer}/${exclusive}`,
        `${exclusive} beside ${inclusive}: llama.cpp enforces ${inclusive} alone`,
        'keep one of them',
      );
  }
  const low =
    schema.minimum !== undefined
      ? Math.ceil(schema.minimum as number)
      : schema.exclusiveMinimum !== undefined
        ? Math.floor(schema.exclusiveMinimum as number) + 1
        : -Infinity;
  const high =
    schema.maximum !== undefined
      ? Math.floor(schema.maximum as number)
      : schema.exclusiveMaximum !== undefined
        ? Math.ceil(schema.exclusiveMaximum as number) - 1
        : Infinity;
  if (low > high) refuse(where, pointer, `no integer lies between the bounds (${low} > ${high})`, 'fix the bounds');
  if ([low, high].some((b) => Number.isFinite(b) && Math.abs(b) > Number.MAX_SAFE_INTEGER))
    refuse(where, pointer, 'bounds beyond ±2^53 cannot be checked exactly', 'use smaller bounds');
}

/**
 * Refuses what llama.cpp's grammar would not hold the output to (ERR_JSON_SCHEMA, naming the
 * keyword and its JSON pointer). `where` names the schema in messages ("options.jsonSchema").
 */
export function checkJsonSchema(schema: unknown, where: string): JsonSchema {
  let text: string | undefined;
  try {
    text = JSON.stringify(schema);
  } catch {
    text = undefined;
  }
  if (text === undefined || schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    refuse(where, '', 'must be a JSON Schema object (plain JSON: no functions, BigInts or cycles)', 'pass a plain object');
  }
  if (Buffer.byteLength(text) > MAX_SCHEMA_BYTES)
    refuse(where, '', `is larger than ${MAX_SCHEMA_BYTES / 1024} KiB as JSON`, 'use a smaller schema');
  const walk: Walk = { where, schemas: new Map(), refs: [], deferred: [] };
  checkNode(walk, schema, '', 0);
  for (const { ref, pointer } of walk.refs) refTarget(walk, ref, pointer);
  for (const check of walk.deferred) check();
  compileValidator(schema as JsonSchema, where);
  return schema as JsonSchema;
}

const validators = new Map<string, ValidateFunction>();
const MAX_CACHED_VALIDATORS = 256;
// ajv-formats is CommonJS; its default export is the plugin under either module system.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv,
) => Ajv;

/** Whether a schema uses the keyword prefixItems (draft 2020-12) anywhere; a property named so does not count. */
function usesPrefixItems(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(usesPrefixItems);
  if (node === null || typeof node !== 'object') return false;
  const schema = node as JsonSchema;
  if (schema.prefixItems !== undefined) return true;
  const named = ['properties', '$defs', 'definitions'].flatMap((k) =>
    schema[k] !== null && typeof schema[k] === 'object' ? Object.values(schema[k] as object) : [],
  );
  return [...named, schema.items, schema.additionalProperties, schema.anyOf, schema.oneOf, schema.allOf].some(usesPrefixItems);
}

/** Ajv's validator for the schema (draft 2020-12 where it says so or uses prefixItems, else draft-07); cached by its JSON. */
export function compileValidator(schema: JsonSchema, where: string): ValidateFunction {
  // By its JSON, not the object: a schema object changed between two calls gets a grammar and a validator of its new self.
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (validate !== undefined) return validate;
  const draft2020 = String(schema.$schema ?? '').includes('2020-12') || usesPrefixItems(schema);
  const ajv = draft2020 ? new Ajv2020({ strict: false, allErrors: false }) : new Ajv({ strict: false, allErrors: false });
  addFormats(ajv as Ajv);
  try {
    validate = ajv.compile(schema);
  } catch (error) {
    refuse(where, '', `is not a valid JSON Schema: ${(error as Error).message}`, 'fix the schema');
  }
  if (validators.size >= MAX_CACHED_VALIDATORS) validators.delete(validators.keys().next().value as string);
  validators.set(key, validate);
  return validate;
}

/** Why `value` does not match `schema` (Ajv's first error), or undefined when it does. */
export function schemaViolation(schema: JsonSchema, value: unknown, where: string): string | undefined {
  const validate = compileValidator(schema, where);
  if (validate(value)) return undefined;
  const error = validate.errors?.[0];
  return error ? `${error.instancePath || '/'} ${error.message ?? 'is invalid'}` : 'does not match the schema';
}

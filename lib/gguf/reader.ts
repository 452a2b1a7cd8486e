/**
 * GGUF reader and validator. llama.cpp answers some malformed files with an assert that kills
 * the whole process, so every file is checked here first and rejected with a ModelFileError.
 * Only the header, metadata and tensor-info region is read; tensor data is never touched, which
 * keeps this cheap for multi-gigabyte models.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ErrorCode, ModelFileError } from '../errors.js';
import { ggmlTypeInfo } from './ggml-types.js';

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** llama.cpp's GGML_MAX_DIMS and GGML_MAX_NAME (a name must be shorter than this, in bytes). */
export const GGML_MAX_DIMS = 4;
export const GGML_MAX_NAME = 64;

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigIntType = 'u64' | 'i64';
export type GgufItemType = GgufNumberType | GgufBigIntType | 'bool' | 'string';

/** The JS container each array item type is kept in. */
export interface GgufArrayValues {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  u32: Uint32Array;
  i32: Int32Array;
  f32: Float32Array;
  f64: Float64Array;
  u64: BigUint64Array;
  i64: BigInt64Array;
  bool: boolean[];
  string: string[];
}

/**
 * Values carry their GGUF type because JS numbers cannot say whether they were a u32 or an f32,
 * and copying metadata from one file to another must keep the exact type.
 */
export type GgufScalarValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string };
export type GgufArrayValue = {
  [K in GgufItemType]: { type: 'array'; itemType: K; value: GgufArrayValues[K] };
}[GgufItemType];
export type GgufValue = GgufScalarValue | GgufArrayValue;

/** GGUF value type ids, indexed by the on-disk id (9 is "array"). */
export const GGUF_VALUE_TYPES: readonly (GgufItemType | 'array')[] = [
  'u8',
  'i8',
  'u16',
  'i16',
  'u32',
  'i32',
  'f32',
  'bool',
  'string',
  'array',
  'u64',
  'i64',
  'f64',
];
export function ggufValueTypeId(type: GgufItemType | 'array'): number {
  return GGUF_VALUE_TYPES.indexOf(type);
}
/** On-disk bytes of one item; strings have at least their 8-byte length. */
export const GGUF_ITEM_SIZE: Record<GgufItemType, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  string: 8,
  u64: 8,
  i64: 8,
  f64: 8,
};

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

export interface GgufTensorInfo {
  name: string;
  /** ne0-first, as stored. */
  dims: number[];
  type: number;
  typeName: string;
  /** Relative to dataOffset, as stored in the file. */
  offset: number;
  /** Absolute position of the data in the file. */
  fileOffset: number;
  nElements: number;
  byteSize: number;
}

/** Byte positions of header fields; only filled with `{ layout: true }` (tests patch files with it). */
export interface GgufLayout {
  kvs: { key: string; keyOffset: number; typeOffset: number; valueOffset: number }[];
  tensors: { name: string; nameOffset: number; nDimsOffset: number; dimsOffset: number; typeOffset: number; offsetOffset: number }[];
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
  layout?: GgufLayout;
}

export interface ReadGgufOptions {
  /** Largest metadata array accepted; a corrupted count above it is rejected instead of read. */
  maxArrayItems?: number;
  layout?: boolean;
}

const DEFAULT_MAX_ARRAY_ITEMS = 1 << 24;
const CHUNK = 1 << 20;
const INT64_MAX = (1n << 63n) - 1n;
// Smallest possible encodings, used to reject counts that could not fit in the file at all.
const MIN_KV_BYTES = 8 + 1 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;

const REMEDY = 'the file is damaged (for example an interrupted download) or is not a GGUF model: download or convert it again';

class Invalid extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly remedy = REMEDY,
  ) {
    super(message);
  }
}

/** Reads forward through the file through a window buffer that is refilled (and grown) on demand. */
class Cursor {
  pos = 0;
  private buf = Buffer.alloc(CHUNK);
  private start = 0;
  private end = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  get remaining(): number {
    return this.size - this.pos;
  }

  has(n: number): boolean {
    return this.pos + n <= this.end;
  }

  /** Makes n bytes at pos available in the window; fails as "truncated" past the end of the file. */
  async need(n: number, what: string): Promise<void> {
    if (this.has(n)) return;
    if (this.pos + n > this.size) {
      throw new Invalid(
        'truncated',
        `truncated: metadata extends to at least byte ${this.pos + n} but the file has ${this.size} bytes (while reading ${what})`,
      );
    }
    const want = Math.min(Math.max(CHUNK, n), this.size - this.pos);
    if (this.buf.length < want) this.buf = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.fh.read(this.buf, got, want - got, this.pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    this.start = this.pos;
    this.end = this.pos + got;
    if (got < n) throw new Invalid('truncated', `truncated: the file ended while reading ${what} at byte ${this.pos}`);
  }

  /** Views n bytes at pos and advances; the caller must have called need(n). */
  take(n: number): Buffer {
    const at = this.pos - this.start;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    return this.take(4).readUInt32LE(0);
  }

  async i32(what: string): Promise<number> {
    await this.need(4, what);
    return this.take(4).readInt32LE(0);
  }

  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    return this.take(8).readBigUInt64LE(0);
  }

  async i64(what: string): Promise<bigint> {
    await this.need(8, what);
    return this.take(8).readBigInt64LE(0);
  }

  async string(what: string): Promise<string> {
    if (!this.has(8)) await this.need(8, what);
    const at = this.pos;
    const len = this.take(8).readBigUInt64LE(0);
    if (len > BigInt(this.remaining)) {
      throw new Invalid('string-length', `string length ${len} at byte ${at} (${what}) runs past the end of the file (size ${this.size})`);
    }
    const n = Number(len);
    if (!this.has(n)) await this.need(n, what);
    return this.take(n).toString('utf8');
  }
}

/** The typed array that holds a numeric GGUF array of each item type (the reader's and the writer's). */
export const TYPED_ARRAYS = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  f64: Float64Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
} as const;

async function readScalar(cur: Cursor, type: GgufItemType, what: string): Promise<GgufScalarValue> {
  if (type === 'string') return { type, value: await cur.string(what) };
  await cur.need(GGUF_ITEM_SIZE[type], what);
  const b = cur.take(GGUF_ITEM_SIZE[type]);
  switch (type) {
    case 'u8':
      return { type, value: b.readUInt8(0) };
    case 'i8':
      return { type, value: b.readInt8(0) };
    case 'u16':
      return { type, value: b.readUInt16LE(0) };
    case 'i16':
      return { type, value: b.readInt16LE(0) };
    case 'u32':
      return { type, value: b.readUInt32LE(0) };
    case 'i32':
      return { type, value: b.readInt32LE(0) };
    case 'f32':
      return { type, value: b.readFloatLE(0) };
    case 'f64':
      return { type, value: b.readDoubleLE(0) };
    case 'u64':
      return { type, value: b.readBigUInt64LE(0) };
    case 'i64':
      return { type, value: b.readBigInt64LE(0) };
    case 'bool':
      return { type, value: b.readInt8(0) !== 0 };
  }
}

async function readArray(cur: Cursor, key: string, maxItems: number): Promise<GgufArrayValue> {
  const typeId = await cur.i32(`the item type of array '${key}'`);
  const itemType = GGUF_VALUE_TYPES[typeId];
  if (itemType === undefined) throw new Invalid('value-type', `array '${key}' has invalid item type ${typeId}`);
  if (itemType === 'array') throw new Invalid('value-type', `array '${key}' holds nested arrays, which llama.cpp does not support`);
  const count = await cur.u64(`the length of array '${key}'`);
  if (count > BigInt(maxItems)) {
    throw new Invalid('array-length', `array '${key}' claims ${count} items, more than the limit of ${maxItems}`);
  }
  const n = Number(count);
  const itemSize = GGUF_ITEM_SIZE[itemType];
  if (n * itemSize > cur.remaining) {
    throw new Invalid(
      'truncated',
      `truncated: metadata extends to at least byte ${cur.pos + n * itemSize} but the file has ${cur.size} bytes (array '${key}' claims ${n} items)`,
    );
  }
  const what = `array '${key}'`;
  if (itemType === 'string') {
    const value: string[] = [];
    for (let i = 0; i < n; i++) value.push(await cur.string(what));
    return { type: 'array', itemType, value };
  }
  await cur.need(n * itemSize, what);
  const bytes = cur.take(n * itemSize);
  if (itemType === 'bool') return { type: 'array', itemType, value: Array.from(bytes, (b) => b !== 0) };
  // Copied into a fresh buffer because the window may be reused and typed arrays need alignment.
  const copy = new Uint8Array(bytes).buffer;
  return { type: 'array', itemType, value: new TYPED_ARRAYS[itemType](copy) } as GgufArrayValue;
}

function plausibleCount(count: bigint, minBytes: number, cur: Cursor, what: string): number {
  if (count < 0n || count * BigInt(minBytes) > BigInt(cur.size)) {
    throw new Invalid(
      'implausible-count',
      `${what} count ${count} is not plausible: the file has ${cur.size} bytes and each entry takes at least ${minBytes} (the file is corrupted or truncated)`,
    );
  }
  return Number(count);
}

interface GgufHeader {
  version: number;
  nTensors: number;
  nKv: number;
}

async function readHeader(cur: Cursor): Promise<GgufHeader> {
  if (cur.size === 0) throw new Invalid('empty', 'file is empty');
  if (cur.size < 4) throw new Invalid('bad-magic', `not a GGUF file (only ${cur.size} bytes)`);
  const magic = await cur.u32('the magic');
  if (magic !== GGUF_MAGIC) {
    throw new Invalid(
      'bad-magic',
      `not a GGUF file (magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x${GGUF_MAGIC.toString(16)} "GGUF")`,
    );
  }
  const version = await cur.u32('the version');
  if (version !== 2 && version !== 3) {
    const hint = (version & 0xffff) === 0 ? ' (a big-endian file?)' : version === 1 ? ' (GGUF v1 is obsolete)' : '';
    throw new Invalid(
      'bad-version',
      `unsupported GGUF version ${version}${hint}; versions 2 and 3 are supported`,
      'convert the model again with a current llama.cpp (convert_hf_to_gguf.py), or download a current GGUF',
    );
  }
  const nTensors = plausibleCount(await cur.i64('the tensor count'), MIN_TENSOR_INFO_BYTES, cur, 'tensor');
  const nKv = plausibleCount(await cur.i64('the metadata count'), MIN_KV_BYTES, cur, 'metadata key');
  return { version, nTensors, nKv };
}

async function readMetadata(cur: Cursor, nKv: number, maxItems: number, layout: GgufLayout | undefined): Promise<Map<string, GgufValue>> {
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const keyOffset = cur.pos;
    const key = await cur.string(`metadata key #${i}`);
    if (key === '') throw new Invalid('empty-key', `metadata key #${i} at byte ${keyOffset} is empty`);
    if (metadata.has(key)) throw new Invalid('duplicate-key', `metadata key '${key}' appears twice`);
    const typeOffset = cur.pos;
    const typeId = await cur.i32(`the type of '${key}'`);
    const type = GGUF_VALUE_TYPES[typeId];
    if (type === undefined) throw new Invalid('value-type', `metadata key '${key}' has invalid value type ${typeId}`);
    const valueOffset = cur.pos;
    metadata.set(key, type === 'array' ? await readArray(cur, key, maxItems) : await readScalar(cur, type, `the value of '${key}'`));
    layout?.kvs.push({ key, keyOffset, typeOffset, valueOffset });
  }
  return metadata;
}

function alignmentOf(metadata: Map<string, GgufValue>): number {
  const align = metadata.get('general.alignment');
  if (!align) return GGUF_DEFAULT_ALIGNMENT;
  if (align.type !== 'u32') throw new Invalid('bad-alignment', `general.alignment must be a u32, not ${align.type}`);
  if (align.value === 0 || (align.value & (align.value - 1)) !== 0) {
    throw new Invalid('bad-alignment', `general.alignment ${align.value} is not a power of 2`);
  }
  return align.value;
}

/**
 * Entry #i of the tensor table, with fileOffset still 0 (the data section's start is not known
 * yet); `names` holds the earlier entries' names and gets this one's.
 */
async function readTensorInfo(
  cur: Cursor,
  i: number,
  names: Set<string>,
  alignment: number,
  layout: GgufLayout | undefined,
): Promise<GgufTensorInfo> {
  const nameOffset = cur.pos;
  const name = await cur.string(`the name of tensor #${i}`);
  if (Buffer.byteLength(name) >= GGML_MAX_NAME) {
    throw new Invalid('tensor-name', `tensor #${i} name '${name.slice(0, 80)}' is longer than ${GGML_MAX_NAME - 1} bytes`);
  }
  if (names.has(name)) throw new Invalid('duplicate-tensor', `duplicate tensor name '${name}' (tensor #${i})`);
  names.add(name);
  const nDimsOffset = cur.pos;
  const nDims = await cur.u32(`the dimension count of '${name}'`);
  if (nDims > GGML_MAX_DIMS) {
    throw new Invalid('tensor-dims', `tensor '${name}' has ${nDims} dimensions; at most ${GGML_MAX_DIMS} are allowed`);
  }
  const dimsOffset = cur.pos;
  const dims: number[] = [];
  let elements = 1n;
  for (let d = 0; d < nDims; d++) {
    const ne = await cur.i64(`the dimensions of '${name}'`);
    if (ne <= 0n) throw new Invalid('tensor-dims', `tensor '${name}' dimension ${d} is ${ne}; dimensions must be positive`);
    elements *= ne;
    if (elements > INT64_MAX) throw new Invalid('tensor-dims', `tensor '${name}' has more than 2^63 elements`);
    dims.push(Number(ne));
  }
  const typeOffset = cur.pos;
  const type = await cur.i32(`the type of '${name}'`);
  const info = ggmlTypeInfo(type);
  if (!info) throw new Invalid('tensor-type', `tensor '${name}' has unknown or removed ggml type id ${type}`);
  if ((dims[0] ?? 1) % info.blockSize !== 0) {
    throw new Invalid(
      'tensor-dims',
      `tensor '${name}' of type ${info.name} has ${dims[0]} elements per row, not a multiple of the block size ${info.blockSize}`,
    );
  }
  const byteSize = (elements / BigInt(info.blockSize)) * BigInt(info.typeSize);
  if (byteSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Invalid('tensor-dims', `tensor '${name}' would take ${byteSize} bytes, more than any file can hold`);
  }
  const offsetOffset = cur.pos;
  const offset = await cur.u64(`the data offset of '${name}'`);
  if (offset % BigInt(alignment) !== 0n) {
    throw new Invalid('tensor-offset', `tensor '${name}' data offset ${offset} is not a multiple of the alignment ${alignment}`);
  }
  // Bounds are checked once the whole table is read, so a table cut short reads as truncated.
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Invalid('tensor-bounds', `tensor '${name}' data offset ${offset} lies outside the file (size ${cur.size})`);
  }
  layout?.tensors.push({ name, nameOffset, nDimsOffset, dimsOffset, typeOffset, offsetOffset });
  return {
    name,
    dims,
    type,
    typeName: info.name,
    offset: Number(offset),
    fileOffset: 0,
    nElements: Number(elements),
    byteSize: Number(byteSize),
  };
}

async function readTensorInfos(
  cur: Cursor,
  nTensors: number,
  alignment: number,
  layout: GgufLayout | undefined,
): Promise<GgufTensorInfo[]> {
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) tensors.push(await readTensorInfo(cur, i, names, alignment, layout));
  return tensors;
}

/** Sets each tensor's fileOffset from the data section's start and checks that the data lies in the file, packed in order. */
function placeTensorData(tensors: GgufTensorInfo[], dataOffset: number, alignment: number, size: number): void {
  if (dataOffset > size) {
    throw new Invalid('truncated', `truncated: the tensor data section starts at byte ${dataOffset} but the file has ${size} bytes`);
  }
  for (const t of tensors) {
    t.fileOffset = dataOffset + t.offset;
    const end = t.fileOffset + t.byteSize;
    if (end > size) {
      throw new Invalid(
        'tensor-bounds',
        `tensor '${t.name}' data [${t.fileOffset}, ${end}) lies outside the file (size ${size}); the file is probably truncated`,
      );
    }
  }
  // The vendored gguf.cpp requires the data to be packed in table order, each tensor padded to
  // the alignment; this also rules out overlapping tensors.
  let expected = 0;
  for (const t of tensors) {
    if (t.offset !== expected) {
      throw new Invalid(
        'tensor-offset',
        `tensor '${t.name}' has data offset ${t.offset} but ${expected} was expected (tensor data must be packed in order)`,
      );
    }
    expected += alignUp(t.byteSize, alignment);
  }
}

async function parse(fh: FileHandle, size: number, opts: ReadGgufOptions, path: string): Promise<GgufFile> {
  const cur = new Cursor(fh, size);
  const { version, nTensors, nKv } = await readHeader(cur);
  const layout: GgufLayout | undefined = opts.layout ? { kvs: [], tensors: [] } : undefined;
  const metadata = await readMetadata(cur, nKv, opts.maxArrayItems ?? DEFAULT_MAX_ARRAY_ITEMS, layout);
  const alignment = alignmentOf(metadata);
  const tensors = await readTensorInfos(cur, nTensors, alignment, layout);
  // llama.cpp only pads up to the data section when there are tensors.
  const dataOffset = nTensors > 0 ? alignUp(cur.pos, alignment) : cur.pos;
  placeTensorData(tensors, dataOffset, alignment, size);
  return { path, version, metadata, tensors, alignment, dataOffset, fileSize: size, ...(layout ? { layout } : {}) };
}

/**
 * Reads and validates a GGUF file's header, metadata and tensor table. Rejects with a
 * ModelFileError (ERR_MODEL_INVALID) naming the exact defect for anything malformed; a missing
 * file or a directory rejects with the plain fs error (callers map those themselves).
 */
export async function readGguf(path: string, opts: ReadGgufOptions = {}): Promise<GgufFile> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return await parse(fh, size, opts, path);
  } catch (error) {
    if (error instanceof Invalid) {
      throw new ModelFileError(ErrorCode.MODEL_INVALID, `${path}: ${error.message}`, {
        remedy: error.remedy,
        details: { path, reason: error.reason },
      });
    }
    throw error;
  } finally {
    await fh.close();
  }
}

/** A string metadata value, or undefined when missing or not a string. */
export function ggufString(file: Pick<GgufFile, 'metadata'>, key: string): string | undefined {
  const v = file.metadata.get(key);
  return v?.type === 'string' ? v.value : undefined;
}

/** A numeric scalar metadata value (64-bit integers converted to number), or undefined. */
export function ggufNumber(file: Pick<GgufFile, 'metadata'>, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (!v || v.type === 'array' || v.type === 'string' || v.type === 'bool') return undefined;
  return Number(v.value);
}

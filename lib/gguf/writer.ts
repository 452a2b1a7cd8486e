/**
 * Streaming GGUF v3 writer. Metadata and the tensor table are built in memory (they are small),
 * tensor data is streamed by the caller chunk by chunk so multi-gigabyte files never sit in memory.
 * The file is written under a temporary name and renamed at the end, so an interrupted run never
 * leaves a half-written file under the real name.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { ggmlTensorByteSize, ggmlTypeName } from './ggml-types.js';
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_ITEM_SIZE,
  GGUF_MAGIC,
  TYPED_ARRAYS,
  alignUp,
  ggufValueTypeId,
  type GgufArrayValues,
  type GgufItemType,
  type GgufValue,
} from './reader.js';

/** Builders for explicitly typed values, since a JS number does not say which GGUF type it is. */
export const gguf = {
  u8: (value: number): GgufValue => ({ type: 'u8', value }),
  i8: (value: number): GgufValue => ({ type: 'i8', value }),
  u16: (value: number): GgufValue => ({ type: 'u16', value }),
  i16: (value: number): GgufValue => ({ type: 'i16', value }),
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  f64: (value: number): GgufValue => ({ type: 'f64', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'u64', value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: 'i64', value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  array: <K extends GgufItemType>(itemType: K, values: ArrayLike<ElementOf<K>>): GgufValue => toArrayValue(itemType, values),
};

type ElementOf<K extends GgufItemType> = K extends 'string'
  ? string
  : K extends 'bool'
    ? boolean
    : K extends 'u64' | 'i64'
      ? bigint | number
      : number;

const INT_RANGE: Partial<Record<GgufItemType, [number, number]>> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGE: Partial<Record<GgufItemType, [bigint, bigint]>> = {
  u64: [0n, (1n << 64n) - 1n],
  i64: [-(1n << 63n), (1n << 63n) - 1n],
};

function checkItem(type: GgufItemType, v: unknown, key: string): void {
  const bad = (why: string) => new RangeError(`GGUF key '${key}': ${why}`);
  if (type === 'string') {
    if (typeof v !== 'string') throw bad(`expected a string, got ${typeof v}`);
    return;
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') throw bad(`expected a boolean, got ${typeof v}`);
    return;
  }
  const big = BIG_RANGE[type];
  if (big) {
    if (typeof v !== 'bigint' || v < big[0] || v > big[1]) throw bad(`${String(v)} is not a valid ${type}`);
    return;
  }
  if (typeof v !== 'number') throw bad(`expected a number, got ${typeof v}`);
  const range = INT_RANGE[type];
  if (range && (!Number.isInteger(v) || v < range[0] || v > range[1])) throw bad(`${v} is not a valid ${type}`);
}

function toArrayValue(itemType: GgufItemType, values: ArrayLike<unknown>): GgufValue {
  if (itemType === 'string') return { type: 'array', itemType, value: Array.from(values as ArrayLike<string>) };
  if (itemType === 'bool') return { type: 'array', itemType, value: Array.from(values as ArrayLike<boolean>) };
  if (itemType === 'u64' || itemType === 'i64') {
    const big = Array.from(values as ArrayLike<bigint | number>, (v) => BigInt(v));
    return { type: 'array', itemType, value: itemType === 'u64' ? BigUint64Array.from(big) : BigInt64Array.from(big) } as GgufValue;
  }
  const nums = values as ArrayLike<number>;
  // Range-check before the typed-array conversion silently wraps out-of-range integers.
  for (let i = 0; i < nums.length; i++) checkItem(itemType, nums[i], `[${i}]`);
  return { type: 'array', itemType, value: TYPED_ARRAYS[itemType].from(nums) } as GgufValue;
}

function isTagged(v: unknown): v is GgufValue {
  return typeof v === 'object' && v !== null && 'type' in v && 'value' in v;
}

export interface GgufWriterTensor {
  index: number;
  name: string;
  dims: number[];
  type: number;
  byteSize: number;
  /** Relative to the data section. */
  offset: number;
}

/** Receives one tensor's data; the bytes written across all calls must equal the tensor's byteSize. */
export interface GgufChunkWriter {
  write(chunk: Uint8Array): Promise<void>;
  readonly written: number;
}

export type FillTensor = (index: number, tensor: GgufWriterTensor, out: GgufChunkWriter) => Promise<void>;

/** Grows as metadata is appended; only the header goes through it. */
class Bytes {
  buf = Buffer.alloc(1 << 16);
  len = 0;

  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len += n;
    return at;
  }

  // room() may swap this.buf, so it is always called before this.buf is read.
  u32(v: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  i32(v: number): void {
    const at = this.room(4);
    this.buf.writeInt32LE(v, at);
  }
  u64(v: number | bigint): void {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }

  raw(bytes: Uint8Array): void {
    const at = this.room(bytes.length);
    this.buf.set(bytes, at);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.raw(bytes);
  }

  item(type: GgufItemType, v: unknown): void {
    if (type === 'string') return this.string(v as string);
    const at = this.room(GGUF_ITEM_SIZE[type]);
    const b = this.buf;
    switch (type) {
      case 'u8':
        b.writeUInt8(v as number, at);
        break;
      case 'i8':
        b.writeInt8(v as number, at);
        break;
      case 'u16':
        b.writeUInt16LE(v as number, at);
        break;
      case 'i16':
        b.writeInt16LE(v as number, at);
        break;
      case 'u32':
        b.writeUInt32LE(v as number, at);
        break;
      case 'i32':
        b.writeInt32LE(v as number, at);
        break;
      case 'f32':
        b.writeFloatLE(v as number, at);
        break;
      case 'f64':
        b.writeDoubleLE(v as number, at);
        break;
      case 'u64':
        b.writeBigUInt64LE(v as bigint, at);
        break;
      case 'i64':
        b.writeBigInt64LE(v as bigint, at);
        break;
      case 'bool':
        b.writeInt8(v ? 1 : 0, at);
        break;
    }
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

const MAX_CHUNK = 64 * 1024 * 1024;

export class GgufWriter {
  private readonly kvs = new Map<string, GgufValue>();
  private readonly tensors: GgufWriterTensor[] = [];
  private dataSize = 0;
  private frozen = false;

  /**
   * Adds a metadata key. Strings, booleans and tagged values (see `gguf.u32(...)`) need no type;
   * numbers, bigints and arrays of them need `type` (for arrays: the item type).
   */
  addKv(key: string, value: GgufValue | string | boolean | number | bigint | ArrayLike<unknown>, type?: GgufItemType): this {
    if (this.frozen) throw new Error('GgufWriter: metadata cannot change once tensors were added');
    if (!key) throw new RangeError('GGUF keys must not be empty');
    if (this.kvs.has(key)) throw new RangeError(`GGUF key '${key}' was already added`);
    let v: GgufValue;
    if (isTagged(value)) v = value;
    else if (typeof value === 'string' || typeof value === 'boolean') {
      v = type ? ({ type, value } as GgufValue) : typeof value === 'string' ? gguf.string(value) : gguf.bool(value);
    } else if (typeof value === 'number' || typeof value === 'bigint') {
      if (!type) throw new TypeError(`GGUF key '${key}': a number needs an explicit type (u32, f32, ...)`);
      v = { type, value: type === 'u64' || type === 'i64' ? BigInt(value) : value } as GgufValue;
    } else {
      const first = value.length > 0 ? value[0] : undefined;
      const itemType = type ?? (typeof first === 'string' ? 'string' : typeof first === 'boolean' ? 'bool' : undefined);
      if (!itemType) throw new TypeError(`GGUF key '${key}': an array of numbers needs an explicit item type`);
      v = toArrayValue(itemType, value);
    }
    if (v.type === 'array') {
      if (v.itemType === 'string' || v.itemType === 'bool') for (const item of v.value) checkItem(v.itemType, item, key);
    } else {
      checkItem(v.type, v.value, key);
    }
    if (key === 'general.alignment') {
      if (v.type !== 'u32' || v.value === 0 || (v.value & (v.value - 1)) !== 0) {
        throw new RangeError('general.alignment must be a u32 power of two');
      }
    }
    this.kvs.set(key, v);
    return this;
  }

  get alignment(): number {
    const v = this.kvs.get('general.alignment');
    return v?.type === 'u32' ? v.value : GGUF_DEFAULT_ALIGNMENT;
  }

  /** Adds a tensor (dims ne0-first); byteSize, when given, must match what the type and dims imply. */
  addTensor(name: string, dims: readonly number[], ggmlType: number, byteSize?: number): GgufWriterTensor {
    this.frozen = true;
    if (!name || Buffer.byteLength(name) >= GGML_MAX_NAME) {
      throw new RangeError(`tensor name '${name}' must be 1 to ${GGML_MAX_NAME - 1} bytes`);
    }
    if (this.tensors.some((t) => t.name === name)) throw new RangeError(`tensor '${name}' was already added`);
    if (dims.length < 1 || dims.length > GGML_MAX_DIMS || dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new RangeError(`tensor '${name}': dims [${dims.join(', ')}] must be 1 to ${GGML_MAX_DIMS} positive integers`);
    }
    const size = ggmlTensorByteSize(ggmlType, dims);
    if (byteSize !== undefined && byteSize !== size) {
      throw new RangeError(`tensor '${name}': ${ggmlTypeName(ggmlType)} [${dims.join(', ')}] takes ${size} bytes, not ${byteSize}`);
    }
    const tensor: GgufWriterTensor = {
      index: this.tensors.length,
      name,
      dims: [...dims],
      type: ggmlType,
      byteSize: size,
      offset: this.dataSize,
    };
    this.tensors.push(tensor);
    this.dataSize += alignUp(size, this.alignment);
    return tensor;
  }

  get tensorInfos(): readonly GgufWriterTensor[] {
    return this.tensors;
  }

  /** The serialized header: magic, counts, metadata and tensor table, padded to the data section. */
  header(): Buffer {
    const b = new Bytes();
    b.u32(GGUF_MAGIC);
    b.u32(3);
    b.u64(this.tensors.length);
    b.u64(this.kvs.size);
    for (const [key, v] of this.kvs) {
      b.string(key);
      if (v.type !== 'array') {
        b.i32(ggufValueTypeId(v.type));
        b.item(v.type, v.value);
        continue;
      }
      b.i32(ggufValueTypeId('array'));
      b.i32(ggufValueTypeId(v.itemType));
      b.u64(v.value.length);
      if (v.itemType === 'string' || v.itemType === 'bool') {
        for (const item of v.value as GgufArrayValues['string'] | GgufArrayValues['bool']) b.item(v.itemType, item);
      } else {
        const typed = v.value as Exclude<GgufArrayValues[GgufItemType], string[] | boolean[]>;
        b.raw(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
      }
    }
    for (const t of this.tensors) {
      b.string(t.name);
      b.u32(t.dims.length);
      for (const d of t.dims) b.u64(d);
      b.i32(t.type);
      b.u64(t.offset);
    }
    const padded = this.tensors.length > 0 ? alignUp(b.len, this.alignment) : b.len;
    const out = Buffer.alloc(padded);
    b.buf.copy(out, 0, 0, b.len);
    return out;
  }

  /**
   * Writes the file. `fill` is called once per tensor, in order, and must write exactly the
   * tensor's byteSize through `out` (chunks of at most 64 MiB) and await every write.
   */
  async write(path: string, fill: FillTensor): Promise<void> {
    const header = this.header();
    const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
    const fh = await open(tmp, 'w');
    let ok = false;
    try {
      await writeAll(fh, header, 0);
      const align = this.alignment;
      const padding = Buffer.alloc(align);
      for (const t of this.tensors) {
        const base = header.length + t.offset;
        let written = 0;
        const out: GgufChunkWriter = {
          get written() {
            return written;
          },
          write: async (chunk) => {
            if (chunk.length > MAX_CHUNK) throw new RangeError(`tensor '${t.name}': chunks must be at most 64 MiB`);
            if (written + chunk.length > t.byteSize) {
              throw new RangeError(`tensor '${t.name}': ${written + chunk.length} bytes written, more than its ${t.byteSize}`);
            }
            // Reserve the range before awaiting so concurrent writes from the caller stay in order.
            const at = base + written;
            written += chunk.length;
            await writeAll(fh, chunk, at);
          },
        };
        await fill(t.index, t, out);
        if (written !== t.byteSize) {
          throw new Error(`tensor '${t.name}': ${written} bytes were written, expected ${t.byteSize}`);
        }
        // Pad every tensor, the last one too: gguf.cpp sizes the data section that way.
        const pad = alignUp(t.byteSize, align) - t.byteSize;
        if (pad > 0) await writeAll(fh, padding.subarray(0, pad), base + t.byteSize);
      }
      // No fsync: the rename only has to survive the process dying, not the machine; the page
      // cache already holds every byte, and syncing gigabytes would dominate the run time.
      await fh.close();
      await rename(tmp, path);
      ok = true;
    } finally {
      if (!ok) {
        await fh.close().catch(() => {});
        await unlink(tmp).catch(() => {});
      }
    }
  }
}

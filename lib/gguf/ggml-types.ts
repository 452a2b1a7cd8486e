/**
 * ggml's tensor types: the one table of ids and block layouts in lib/. The GGUF reader and writer
 * need it without the addon (they run before any binary loads, and in pure unit tests), so it is
 * written out here rather than asked of ggml; test/native/ggml-types.test.ts checks every entry
 * against the addon's `ggmlTypes()` (ggml_type_name, ggml_blck_size, ggml_type_size), so an
 * upgrade of the vendored ggml that moves or adds a type fails there, not in a user's file.
 */

/**
 * [ggml_type id, elements per block, bytes per block], by ggml's name in upper case.
 * Ids 4, 5, 31-33 and 36-38 were removed from ggml and have no entry, so files using them are rejected.
 */
const GGML_TYPES = {
  F32: [0, 1, 4],
  F16: [1, 1, 2],
  Q4_0: [2, 32, 18],
  Q4_1: [3, 32, 20],
  Q5_0: [6, 32, 22],
  Q5_1: [7, 32, 24],
  Q8_0: [8, 32, 34],
  Q8_1: [9, 32, 36],
  Q2_K: [10, 256, 84],
  Q3_K: [11, 256, 110],
  Q4_K: [12, 256, 144],
  Q5_K: [13, 256, 176],
  Q6_K: [14, 256, 210],
  Q8_K: [15, 256, 292],
  IQ2_XXS: [16, 256, 66],
  IQ2_XS: [17, 256, 74],
  IQ3_XXS: [18, 256, 98],
  IQ1_S: [19, 256, 50],
  IQ4_NL: [20, 32, 18],
  IQ3_S: [21, 256, 110],
  IQ2_S: [22, 256, 82],
  IQ4_XS: [23, 256, 136],
  I8: [24, 1, 1],
  I16: [25, 1, 2],
  I32: [26, 1, 4],
  I64: [27, 1, 8],
  F64: [28, 1, 8],
  IQ1_M: [29, 256, 56],
  BF16: [30, 1, 2],
  TQ1_0: [34, 256, 54],
  TQ2_0: [35, 256, 66],
  MXFP4: [39, 32, 17],
  NVFP4: [40, 64, 36],
  Q1_0: [41, 128, 18],
  Q2_0: [42, 64, 18],
} as const satisfies Record<string, readonly [id: number, blockSize: number, typeSize: number]>;

export type GgmlTypeName = keyof typeof GGML_TYPES;

/** ggml_type ids (ggml/include/ggml.h), by name: `GgmlType.Q4_K === 12`. */
export const GgmlType = Object.freeze(Object.fromEntries(Object.entries(GGML_TYPES).map(([name, [id]]) => [name, id]))) as {
  readonly [K in GgmlTypeName]: (typeof GGML_TYPES)[K][0];
};

export interface GgmlTypeInfo {
  id: number;
  /** Upper case, as lib/ writes it ("Q4_K"); ggml_type_name gives it in lower case with a capital K ("q4_K"). */
  name: GgmlTypeName;
  /** ggml_blck_size: elements per block (1 for plain types). */
  blockSize: number;
  /** ggml_type_size: bytes per block. */
  typeSize: number;
}

const BY_ID = new Map<number, GgmlTypeInfo>(
  Object.entries(GGML_TYPES).map(([name, [id, blockSize, typeSize]]) => [id, { id, name: name as GgmlTypeName, blockSize, typeSize }]),
);

/** Every type in the table, in id order. */
export function ggmlTypeInfos(): GgmlTypeInfo[] {
  return [...BY_ID.values()].sort((a, b) => a.id - b.id);
}

/** The layout of a ggml type id, or undefined for an id ggml does not have (or removed). */
export function ggmlTypeInfo(type: number): GgmlTypeInfo | undefined {
  return BY_ID.get(type);
}

/** Upper-case ggml type name ("F16", "Q4_K"), or "UNKNOWN(id)". */
export function ggmlTypeName(type: number): string {
  return BY_ID.get(type)?.name ?? `UNKNOWN(${type})`;
}

/** Bytes of a tensor's data; throws RangeError when ne0 is not a whole number of blocks. */
export function ggmlTensorByteSize(type: number, dims: readonly number[]): number {
  const info = ggmlTypeInfo(type);
  if (!info) throw new RangeError(`unknown ggml type ${type}`);
  const ne0 = dims[0] ?? 1;
  if (ne0 % info.blockSize !== 0) {
    throw new RangeError(`${info.name} rows must be a multiple of ${info.blockSize} elements, got ${ne0}`);
  }
  return (dims.reduce((a, b) => a * b, 1) / info.blockSize) * info.typeSize;
}

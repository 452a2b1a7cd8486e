// lib/'s hand-written mirrors of ggml's and llama.cpp's enums, checked against the vendored build:
// a llama.cpp upgrade that moves, adds or resizes a type fails here, not in a user's model file.
import { describe, expect, it } from 'vitest';
import { nativeBinary } from '../../lib/binding/load-native.js';
import { LlamaFileType, type NativeGgmlType } from '../../lib/binding/native.js';
import { GgmlType, ggmlTypeInfo, ggmlTypeInfos, ggmlTypeName } from '../../lib/gguf/ggml-types.js';
import { ggmlTypeIds } from '../../lib/options.js';

const { addon } = nativeBinary();
const ggml: NativeGgmlType[] = addon.ggmlTypes();
const byId = new Map(ggml.map((t) => [t.id, t]));

describe('ggml types (lib/gguf/ggml-types.ts against ggml)', () => {
  it('ggml reports its types', () => {
    expect(ggml.length).toBeGreaterThan(30);
    expect(byId.get(0)).toEqual({ id: 0, name: 'f32', blockSize: 1, typeSize: 4, quantized: false });
    expect(byId.get(8)).toEqual({ id: 8, name: 'q8_0', blockSize: 32, typeSize: 34, quantized: true });
  });

  it('holds exactly the ids ggml has', () => {
    expect(ggmlTypeInfos().map((t) => t.id)).toEqual(ggml.map((t) => t.id));
  });

  it.each(ggml.map((t) => [t.name, t] as const))('%s: same id, name, block size and type size', (_name, t) => {
    // ggml names are lower case but for the K of the k-quants ("q4_K"); lib/ writes them upper case.
    expect(ggmlTypeInfo(t.id)).toEqual({ id: t.id, name: t.name.toUpperCase(), blockSize: t.blockSize, typeSize: t.typeSize });
    expect(ggmlTypeName(t.id)).toBe(t.name.toUpperCase());
    expect(GgmlType[t.name.toUpperCase() as keyof typeof GgmlType]).toBe(t.id);
  });

  it('removed ids stay unknown', () => {
    for (const id of [4, 5, 31, 32, 33, 36, 37, 38]) {
      expect(byId.has(id), `ggml has type ${id} again`).toBe(false);
      expect(ggmlTypeInfo(id)).toBeUndefined();
    }
  });
});

describe('other tables in lib/', () => {
  it('KV-cache types (lib/options.ts) are ggml types of the same name', () => {
    for (const [option, id] of Object.entries(ggmlTypeIds)) expect(byId.get(id)?.name, option).toBe(option);
  });

  it('LlamaFileType (lib/binding/native.ts) names the llama_ftype values llama.h gives them', () => {
    for (const [name, ftype] of Object.entries(LlamaFileType)) {
      expect(addon.fileTypeName(ftype), name).toBe(name === 'F32' ? 'all F32' : name);
    }
  });
});

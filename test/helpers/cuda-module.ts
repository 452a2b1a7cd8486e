// Small CUDA modules for tests: ELF64 files with a .nv_fatbin section laid out as nvcc writes it
// (fatbin blobs of entry headers), whose payloads are filler bytes (0xab): the reader only reads
// headers, and a test can see whether code was zeroed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaCodeImage } from '../../lib/gpu/fatbin.js';

type Image = CudaCodeImage;
export const sass = (arch: number, variant?: 'a' | 'f'): Image => ({ kind: 'sass', arch, ...(variant ? { variant } : {}) });
export const ptx = (arch: number, ptxIsa: string, variant?: 'a' | 'f'): Image => ({
  kind: 'ptx',
  arch,
  ptxIsa,
  ...(variant ? { variant } : {}),
});

/** The flags nvcc (CUDA 13.0) writes at byte 40 of an entry header, read from its output: 64-bit, Linux, and the variant bit. */
const entryFlags = (image: Image) =>
  (image.kind === 'ptx' ? 0x8011 : 0x1000011) | (image.variant === 'a' ? 0x100000 : image.variant === 'f' ? 0x200000 : 0);

function fatbinBlob(images: Image[]): Buffer {
  const entries = images.map((image, i) => {
    const header = Buffer.alloc(64);
    const payload = Buffer.alloc(16 + 8 * i, 0xab); // varied sizes, so offsets are really followed
    header.writeUInt16LE(image.kind === 'ptx' ? 1 : 2, 0);
    header.writeUInt16LE(0x101, 2);
    header.writeUInt32LE(header.length, 4);
    header.writeBigUInt64LE(BigInt(payload.length), 8);
    const [major, minor] = (image.ptxIsa ?? '1.8').split('.').map(Number);
    header.writeUInt16LE(minor!, 24);
    header.writeUInt16LE(major!, 26);
    header.writeUInt32LE(image.arch, 28);
    header.writeUInt32LE(entryFlags(image), 40);
    return Buffer.concat([header, payload]);
  });
  const body = Buffer.concat(entries);
  const header = Buffer.alloc(16);
  header.writeUInt32LE(0xba55ed50, 0);
  header.writeUInt16LE(1, 4);
  header.writeUInt16LE(16, 6);
  header.writeBigUInt64LE(BigInt(body.length), 8);
  return Buffer.concat([header, body]);
}

/** An ELF64 file with a .shstrtab and a .nv_fatbin section holding one blob per unit (8 bytes of padding between them). */
export function writeModule(units: Image[][], dir = mkdtempSync(join(tmpdir(), 'cuda-llama-fatbin-'))): string {
  const names = Buffer.from('\0.shstrtab\0.nv_fatbin\0', 'latin1');
  const fatbin = Buffer.concat(units.flatMap((u) => [fatbinBlob(u), Buffer.alloc(8)]));
  const elf = Buffer.alloc(64);
  elf.writeUInt32LE(0x464c457f, 0);
  elf[4] = 2; // 64-bit
  elf[5] = 1; // little-endian
  elf[6] = 1;
  const namesAt = 64;
  const fatbinAt = namesAt + names.length;
  const tableAt = fatbinAt + fatbin.length;
  elf.writeBigUInt64LE(BigInt(tableAt), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(1, 0x3e);
  const section = (name: number, offset: number, size: number) => {
    const s = Buffer.alloc(64);
    s.writeUInt32LE(name, 0);
    s.writeBigUInt64LE(BigInt(offset), 24);
    s.writeBigUInt64LE(BigInt(size), 32);
    return s;
  };
  const path = join(dir, 'libggml-cuda.so');
  writeFileSync(
    path,
    Buffer.concat([elf, names, fatbin, section(0, 0, 0), section(1, namesAt, names.length), section(11, fatbinAt, fatbin.length)]),
  );
  return path;
}

/**
 * What GPU code a CUDA module (a shared library built by nvcc) carries, read from the file's
 * `.nv_fatbin` section, and whether a given device and driver can run it.
 *
 * Why read the file: ggml's own ARCHS feature lists the architectures compiled for but not how.
 * SASS (a cubin for sm_XY) runs only on devices of the same major version and at least that
 * minor one; PTX (compute_XY) is compiled by the driver at first use, for any device at or above
 * XY, but only by a driver at least as new as the toolkit that wrote it (its PTX ISA version). A
 * module that has neither for the device loads, lists the device, and then aborts the process at
 * its first kernel launch ("no kernel image is available", or "the provided PTX was compiled with
 * an unsupported toolchain"). Reading the fatbin headers turns that crash into a reason up front.
 *
 * The fatbin layout is NVIDIA's, undocumented but stable since CUDA 4: a section of blobs, each a
 * 16-byte header (magic 0xBA55ED50, version, header size, payload size) followed by entries, each
 * with its own header: kind (1 PTX, 2 ELF/SASS), header size, padded payload size, the PTX ISA
 * (for PTX entries), the architecture, and flags, whose bits 0x100000 and 0x200000 mark code
 * built for an arch-specific target (sm_120a, compute_120a) or a family-specific one (sm_120f)
 * (read from CUDA 13.0 nvcc's output for the same kernel built for 120, 120a and 120f). Only
 * headers are read, never the (compressed) code.
 *
 * Why the variants matter: ggml builds every 12X architecture as 12Xa (for Blackwell's FP4
 * instructions), and arch-specific code runs only on exactly that compute capability. An sm_120a
 * cubin does not run on a 12.1 GPU (a DGX Spark's GB10), where a plain sm_120 one would.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export interface CudaCodeImage {
  kind: 'sass' | 'ptx';
  /** Architecture as nvcc numbers it: 90 for sm_90 / compute_90, 121 for sm_121. */
  arch: number;
  /**
   * 'a': arch-specific (sm_120a), runs only on exactly that compute capability. 'f': family-specific
   * (sm_120f), runs on that one and later minor versions of the same major one. Absent: plain.
   */
  variant?: 'a' | 'f';
  /** PTX entries: the PTX ISA version ("9.1"), which fixes the oldest driver that can compile it. */
  ptxIsa?: string;
}

export interface CudaModuleCode {
  path: string;
  /**
   * The images of each fatbin in the file, one per translation unit that has device code. A kernel
   * runs only if its own unit has code the device can use, so every unit is checked.
   */
  units: CudaCodeImage[][];
}

const ELF_MAGIC = 0x464c457f; // "\x7fELF", little-endian
const FATBIN_MAGIC = 0xba55ed50;
const FATBIN_HEADER_BYTES = 16;
const ENTRY_HEADER_MIN_BYTES = 32;
/** Where an entry header's flags are, when the header is long enough to hold them (nvcc's are 64 bytes and more). */
const ENTRY_FLAGS_OFFSET = 40;
const FLAG_ARCH_SPECIFIC = 0x100000;
const FLAG_FAMILY_SPECIFIC = 0x200000;

class FileReader {
  private readonly fd: number;
  constructor(path: string) {
    this.fd = openSync(path, 'r');
  }
  read(offset: number, length: number): Buffer {
    const buffer = Buffer.alloc(length);
    const got = readSync(this.fd, buffer, 0, length, offset);
    if (got !== length) throw new RangeError(`short read at ${offset}`);
    return buffer;
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** The .nv_fatbin section's file offset and size, or null (not a 64-bit little-endian ELF, or no such section). */
function findFatbinSection(file: FileReader): { offset: number; size: number } | null {
  const header = file.read(0, 64);
  if (header.readUInt32LE(0) !== ELF_MAGIC || header[4] !== 2 || header[5] !== 1) return null;
  const sectionTable = Number(header.readBigUInt64LE(0x28));
  const entrySize = header.readUInt16LE(0x3a);
  const count = header.readUInt16LE(0x3c);
  const namesIndex = header.readUInt16LE(0x3e);
  if (entrySize < 64 || count === 0 || namesIndex >= count) return null;
  const table = file.read(sectionTable, entrySize * count);
  const section = (i: number) => ({
    name: table.readUInt32LE(i * entrySize),
    offset: Number(table.readBigUInt64LE(i * entrySize + 24)),
    size: Number(table.readBigUInt64LE(i * entrySize + 32)),
  });
  const names = section(namesIndex);
  const nameTable = file.read(names.offset, names.size);
  for (let i = 0; i < count; i++) {
    const s = section(i);
    const end = nameTable.indexOf(0, s.name);
    if (nameTable.toString('latin1', s.name, end < 0 ? undefined : end) === '.nv_fatbin') return { offset: s.offset, size: s.size };
  }
  return null;
}

/** One fatbin entry: its image, which unit it belongs to, and where its (compressed) code lies in the file. */
export interface FatbinEntry {
  unit: number;
  /** 'other': a kind that runs nowhere as it is (LTO IR). */
  image: CudaCodeImage | { kind: 'other'; arch: number };
  payloadOffset: number;
  payloadBytes: number;
}

/**
 * Every entry of every fatbin in the file, or null when it has none this reader understands (not
 * an ELF, no .nv_fatbin, or headers out of bounds).
 */
export function readFatbinEntries(path: string): FatbinEntry[] | null {
  const file = new FileReader(path);
  try {
    const section = findFatbinSection(file);
    if (!section) return null;
    const end = section.offset + section.size;
    const entries: FatbinEntry[] = [];
    let unit = 0;
    let blob = section.offset;
    while (blob + FATBIN_HEADER_BYTES <= end) {
      const header = file.read(blob, FATBIN_HEADER_BYTES);
      // Blobs are 8-byte aligned, with padding between them.
      if (header.readUInt32LE(0) !== FATBIN_MAGIC) {
        blob += 8;
        continue;
      }
      const entriesStart = blob + header.readUInt16LE(6);
      const entriesEnd = entriesStart + Number(header.readBigUInt64LE(8));
      if (entriesEnd > end) return null;
      for (let entry = entriesStart; entry < entriesEnd;) {
        const first = file.read(entry, ENTRY_HEADER_MIN_BYTES);
        const kind = first.readUInt16LE(0);
        const headerBytes = first.readUInt32LE(4);
        const payloadBytes = Number(first.readBigUInt64LE(8));
        if (headerBytes < ENTRY_HEADER_MIN_BYTES || entry + headerBytes + payloadBytes > entriesEnd) return null;
        const e = headerBytes >= ENTRY_FLAGS_OFFSET + 4 ? file.read(entry, ENTRY_FLAGS_OFFSET + 4) : first;
        const arch = e.readUInt32LE(28);
        const flags = e.length >= ENTRY_FLAGS_OFFSET + 4 ? e.readUInt32LE(ENTRY_FLAGS_OFFSET) : 0;
        const variant: CudaCodeImage['variant'] = flags & FLAG_ARCH_SPECIFIC ? 'a' : flags & FLAG_FAMILY_SPECIFIC ? 'f' : undefined;
        const withVariant = variant ? { variant } : {};
        // Kind 1 is PTX, with its ISA as minor/major at 24/26; kind 2 is a cubin.
        const image: FatbinEntry['image'] =
          kind === 1
            ? { kind: 'ptx', arch, ptxIsa: `${e.readUInt16LE(26)}.${e.readUInt16LE(24)}`, ...withVariant }
            : kind === 2
              ? { kind: 'sass', arch, ...withVariant }
              : { kind: 'other', arch };
        entries.push({ unit, image, payloadOffset: entry + headerBytes, payloadBytes });
        entry += headerBytes + payloadBytes;
      }
      unit++;
      blob = entriesEnd;
    }
    return entries.length > 0 ? entries : null;
  } catch (error) {
    if (error instanceof RangeError) return null; // a header pointing past the end of the file
    throw error;
  } finally {
    file.close();
  }
}

/** The GPU code in a CUDA module, by unit; null when its fatbin cannot be read (the caller then knows nothing, rather than something wrong). */
export function readCudaModuleCode(path: string): CudaModuleCode | null {
  const entries = readFatbinEntries(path);
  if (!entries) return null;
  const units: CudaCodeImage[][] = [];
  for (const { unit, image } of entries) {
    units[unit] ??= [];
    if (image.kind !== 'other') units[unit].push(image);
  }
  return { path, units: Array.from(units, (u) => u ?? []) };
}

/**
 * The oldest CUDA version ([major, minor]) whose driver compiles PTX of this ISA, from NVIDIA's PTX
 * release history: ISA 7.x is CUDA 11.x and 8.x is 12.x, minor for minor, except that CUDA 12.6
 * kept ISA 8.5 (so 8.6 is 12.7, 8.7 is 12.8, 8.8 is 12.9); 9.x is 13.x. Older ISAs: null (any
 * driver that runs a CUDA 11+ runtime has them).
 */
export function cudaVersionForPtxIsa(isa: string): [number, number] | null {
  const [major, minor] = isa.split('.').map(Number) as [number, number];
  if (!Number.isInteger(major) || !Number.isInteger(minor) || major < 7) return null;
  if (major === 8 && minor >= 6) return [12, minor + 1];
  return [major + 4, minor];
}

/** "sm_90", "compute_100", "sm_120a". */
export const archName = (image: CudaCodeImage) => `${image.kind === 'sass' ? 'sm' : 'compute'}_${image.arch}${image.variant ?? ''}`;
const archParts = (arch: number): [number, number] => [Math.floor(arch / 10), arch % 10];

/**
 * Whether a device of architecture `deviceArch` (nvcc's number: 121 for 12.1) can use the image:
 * SASS of the same major version and at most its minor one (arch-specific: exactly it); PTX of
 * any architecture at or below it (arch-specific: exactly it; family-specific: the same major one).
 */
export function imageFitsDevice(image: CudaCodeImage, deviceArch: number): boolean {
  if (image.variant === 'a') return image.arch === deviceArch;
  const [major, minor] = archParts(image.arch);
  const [deviceMajor, deviceMinor] = archParts(deviceArch);
  if (image.kind === 'sass' || image.variant === 'f') return major === deviceMajor && minor <= deviceMinor;
  return image.arch <= deviceArch;
}
const versionAtLeast = (have: [number, number], need: [number, number]) => have[0] > need[0] || (have[0] === need[0] && have[1] >= need[1]);

/** "SASS sm_86, sm_90; PTX compute_75, compute_100 (PTX ISA 9.0: CUDA 13.0 drivers and newer)": the images any unit has. */
export function describeCudaCode(code: CudaModuleCode): string {
  const distinct = new Map<string, CudaCodeImage>();
  for (const image of code.units.flat()) distinct.set(`${archName(image)} ${image.ptxIsa ?? ''}`, image);
  const images = [...distinct.values()].sort((a, b) => a.arch - b.arch);
  const sass = images.filter((i) => i.kind === 'sass').map(archName);
  const ptx = images.filter((i) => i.kind === 'ptx');
  const isas = [...new Set(ptx.map((i) => i.ptxIsa!))];
  const isaNote = isas
    .map((isa) => {
      const cuda = cudaVersionForPtxIsa(isa);
      return `PTX ISA ${isa}${cuda ? `: CUDA ${cuda.join('.')} drivers and newer` : ''}`;
    })
    .join('; ');
  const parts: string[] = [];
  if (sass.length) parts.push(`SASS ${[...new Set(sass)].join(', ')}`);
  if (ptx.length) parts.push(`PTX ${[...new Set(ptx.map(archName))].join(', ')} (${isaNote})`);
  return parts.join('; ') || 'no GPU code';
}

export type CudaCodeVerdict =
  | {
      runs: true;
      /** What the driver uses, e.g. "SASS sm_90" or "PTX compute_90, compiled by the driver at first use". */
      via: string;
      /** Whether some of it is PTX the driver compiles on the first load (a one-time wait, then its JIT cache). */
      jit: boolean;
    }
  | { runs: false; reason: string; fix: 'rebuild' }
  /** The PTX there is needs a newer driver than this one: `driverCuda` ("13.1") or later. */
  | { runs: false; reason: string; fix: 'driver'; driverCuda: string };

/**
 * Whether a device of compute capability `capability` ("9.0"), under a driver for CUDA
 * `driverCuda` ("13.0", from NVML; null when unknown), can run every unit of `code`. Per unit the
 * driver takes SASS of the same major version and at most the device's minor one, else the newest
 * PTX at or below the device, which it must be new enough to compile.
 */
export function cudaCodeVerdict(code: CudaModuleCode, capability: string, driverCuda: string | null): CudaCodeVerdict {
  const deviceArch = Math.round(Number(capability) * 10);
  const driver = driverCuda === null ? null : (driverCuda.split('.').map(Number) as [number, number]);
  const ways = new Set<string>();
  let jit = false;
  let missing = 0;
  let tooNewPtx: { image: CudaCodeImage; need: [number, number] } | undefined;
  for (const unit of code.units) {
    const sass = unit.filter((i) => i.kind === 'sass' && imageFitsDevice(i, deviceArch)).sort((a, b) => b.arch - a.arch)[0];
    if (sass) {
      ways.add(`SASS ${archName(sass)}`);
      continue;
    }
    const ptx = unit.filter((i) => i.kind === 'ptx' && imageFitsDevice(i, deviceArch)).sort((a, b) => b.arch - a.arch)[0];
    if (!ptx) {
      missing++;
      continue;
    }
    const need = cudaVersionForPtxIsa(ptx.ptxIsa ?? '');
    if (need && driver && !versionAtLeast(driver, need)) {
      tooNewPtx = { image: ptx, need };
      missing++;
      continue;
    }
    ways.add(`PTX ${archName(ptx)}, compiled by the driver at first use`);
    jit = true;
  }
  if (missing === 0) return { runs: true, via: [...ways].join(' / '), jit };
  const of = missing === code.units.length ? '' : ` (${missing} of its ${code.units.length} code units)`;
  if (tooNewPtx) {
    return {
      runs: false,
      fix: 'driver',
      driverCuda: tooNewPtx.need.join('.'),
      reason:
        `its only code for compute capability ${capability}${of} is PTX ${archName(tooNewPtx.image)} of PTX ISA ${tooNewPtx.image.ptxIsa}, ` +
        `which only a CUDA ${tooNewPtx.need.join('.')} or newer driver can compile; this driver is CUDA ${driverCuda}`,
    };
  }
  return {
    runs: false,
    fix: 'rebuild',
    reason: `it holds no code that compute capability ${capability} can run${of}: ${describeCudaCode(code)}`,
  };
}

export interface GpuCodeVerdict {
  /** NVML's name for it, or "GPU <index>". */
  gpu: string;
  computeCapability: string;
  verdict: CudaCodeVerdict;
}

/**
 * cudaCodeVerdict for each GPU NVML reports (one whose compute capability it did not give is left
 * out), and whether none of them can run the module: the case in which cuda-llama's policy refuses
 * CUDA, and the benchmark keeps node-llama-cpp off its own module.
 */
export function cudaCodeVerdicts(
  code: CudaModuleCode,
  gpus: { index?: number; name: string | null; computeCapability: string | null }[],
  driverCuda: string | null,
): { perGpu: GpuCodeVerdict[]; noneRuns: boolean } {
  const perGpu = gpus.flatMap((g, i) =>
    g.computeCapability === null
      ? []
      : [
          {
            gpu: g.name ?? `GPU ${g.index ?? i}`,
            computeCapability: g.computeCapability,
            verdict: cudaCodeVerdict(code, g.computeCapability, driverCuda),
          },
        ],
  );
  return { perGpu, noneRuns: gpus.length > 0 && perGpu.length === gpus.length && perGpu.every((v) => !v.verdict.runs) };
}

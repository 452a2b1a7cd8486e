// What a released CUDA module holds, as a manifest: per architecture its SASS and PTX, in how many
// of the module's code units and how many bytes, read from the fatbin (lib/gpu/fatbin.ts), set
// against the architecture list the build asked for. Pure functions plus two file readers; the
// wiring (build, strip, pack, write) is scripts/release-cuda.ts.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { cudaVersionForPtxIsa, readFatbinEntries, type CudaCodeImage, type FatbinEntry } from '../lib/gpu/fatbin.js';
import { CUDA13_MINIMUM_LINUX_DRIVER } from '../lib/gpu/availability.js';
import { parseCudaArchitectures, RELEASE_CUDA_ARCHITECTURES, TARBALL_LIMIT_BYTES, type RequestedArchitecture } from './cuda-release.mjs';
import { describeBuildTime, type BuildTime } from './build-time.js';

type Variant = CudaCodeImage['variant'];

/**
 * The driver the CUDA 13.0 runtime needs on Linux: the loader's own constant (lib/gpu/availability.ts),
 * with where NVIDIA says so.
 */
export const CUDA13_DRIVER = {
  cuda: '13.0',
  linux: CUDA13_MINIMUM_LINUX_DRIVER,
  source:
    'NVIDIA CUDA Toolkit 13.0 release notes, CUDA Driver: https://docs.nvidia.com/cuda/archive/13.0.0/cuda-toolkit-release-notes/index.html',
};

/** SASS or PTX of one architecture: in how many code units, and its bytes as stored in the fatbin (compressed where nvcc compressed it). */
export interface CodeCount {
  units: number;
  bytes: number;
}

export interface ArchitectureRow {
  /** "120a", "86". */
  name: string;
  arch: number;
  variant?: Variant;
  /** The GPUs the release list gives for it; null for an architecture it does not name. */
  gpus: string | null;
  /** The list entry that asked for it; null when none did. */
  requested: string | null;
  sass: CodeCount | null;
  /** With the PTX ISA versions found (one, unless units came from different toolkits). */
  ptx: (CodeCount & { isa: string[] }) | null;
}

export interface ModuleCode {
  /** Code units: one per translation unit with device code (plus nvlink's, when nvcc linked it). */
  units: number;
  architectures: ArchitectureRow[];
  /** Each PTX ISA in the module, and the oldest driver (CUDA version) that can compile it. */
  ptx: { isa: string; driverCuda: string | null }[];
  /** What differs from the request: missing code, code in only some units, code nobody asked for. */
  problems: string[];
}

const rowName = (arch: number, variant: Variant) => `${arch}${variant ?? ''}`;
const label = (kind: 'sass' | 'ptx', name: string) => `${kind === 'sass' ? 'SASS sm_' : 'PTX compute_'}${name}`;

const releaseGpus = new Map(
  RELEASE_CUDA_ARCHITECTURES.flatMap((entry) =>
    parseCudaArchitectures(entry.spec).map((r) => [rowName(r.arch, r.variant), entry.gpus] as const),
  ),
);

/** The per-architecture rows of a module's fatbin entries, against the list it was built from (null: unknown). */
export function describeModuleCode(entries: FatbinEntry[], requested: RequestedArchitecture[] | null): ModuleCode {
  const units = new Set(entries.map((e) => e.unit)).size;
  const rows = new Map<string, ArchitectureRow>();
  const unitsOf = new Map<string, Set<number>>(); // "sass 120a" -> the units that have it
  const row = (arch: number, variant: Variant) => {
    const name = rowName(arch, variant);
    if (!rows.has(name))
      rows.set(name, {
        name,
        arch,
        ...(variant ? { variant } : {}),
        gpus: releaseGpus.get(name) ?? null,
        requested: null,
        sass: null,
        ptx: null,
      });
    return rows.get(name)!;
  };
  for (const want of requested ?? []) row(want.arch, want.variant).requested = want.spec;
  for (const { unit, image, payloadBytes } of entries) {
    if (image.kind === 'other') continue;
    const r = row(image.arch, image.variant);
    const key = `${image.kind} ${r.name}`;
    unitsOf.set(key, (unitsOf.get(key) ?? new Set()).add(unit));
    if (image.kind === 'sass') {
      r.sass = { units: unitsOf.get(key)!.size, bytes: (r.sass?.bytes ?? 0) + payloadBytes };
    } else {
      const isa = new Set([...(r.ptx?.isa ?? []), image.ptxIsa ?? 'unknown']);
      r.ptx = { units: unitsOf.get(key)!.size, bytes: (r.ptx?.bytes ?? 0) + payloadBytes, isa: [...isa].sort() };
    }
  }
  const problems: string[] = [];
  const architectures = [...rows.values()].sort((a, b) => a.arch - b.arch || (a.variant ?? '').localeCompare(b.variant ?? ''));
  for (const r of architectures) {
    const want = requested?.find((w) => rowName(w.arch, w.variant) === r.name);
    for (const kind of ['sass', 'ptx'] as const) {
      const have = r[kind];
      if (want?.[kind] && !have) problems.push(`${label(kind, r.name)} was asked for (${want.spec}) but the module has none`);
      if (have && have.units < units) problems.push(`${label(kind, r.name)} is in only ${have.units} of the module's ${units} code units`);
      if (requested && have && !want?.[kind]) problems.push(`${label(kind, r.name)} is in the module but the list does not ask for it`);
    }
  }
  const isas = [...new Set(architectures.flatMap((r) => r.ptx?.isa ?? []))].sort();
  const ptx = isas.map((isa) => ({ isa, driverCuda: cudaVersionForPtxIsa(isa)?.join('.') ?? null }));
  return { units, architectures, ptx, problems };
}

/**
 * A digest of every fatbin entry (its unit, image, size and code bytes), or null without a fatbin:
 * stripping must leave it unchanged. Offsets are left out, since stripping may move sections.
 */
export function fatbinFingerprint(path: string): { entries: number; sha256: string } | null {
  const entries = readFatbinEntries(path);
  if (!entries) return null;
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    for (const entry of entries) {
      hash.update(JSON.stringify([entry.unit, entry.image, entry.payloadBytes]));
      const payload = Buffer.alloc(entry.payloadBytes);
      if (readSync(fd, payload, 0, payload.length, entry.payloadOffset) !== payload.length) return null;
      hash.update(payload);
    }
  } finally {
    closeSync(fd);
  }
  return { entries: entries.length, sha256: hash.digest('hex') };
}

export interface SizeCheck {
  tarballBytes: number;
  limitBytes: number;
  /** 'ok': under the limit; 'split': pack one package per family (--split families); 'refine': split already, and a family is still over. */
  action: 'ok' | 'split' | 'refine';
  message: string;
}

/** Whether a tarball of `tarballBytes` may be published as it is, or the package must be split (`split`: it is one family's already). */
export function sizeCheck(tarballBytes: number, split: boolean, limitBytes = TARBALL_LIMIT_BYTES): SizeCheck {
  const size = `the tarball is ${mib(tarballBytes)}`;
  const limit = `the ${mib(limitBytes)} limit (TARBALL_LIMIT_BYTES, scripts/cuda-release.mjs)`;
  if (tarballBytes <= limitBytes) return { tarballBytes, limitBytes, action: 'ok', message: `${size}, within ${limit}` };
  return split
    ? {
        tarballBytes,
        limitBytes,
        action: 'refine',
        message: `${size}, over ${limit} even for one family: split the families further (the family field of RELEASE_CUDA_ARCHITECTURES)`,
      }
    : {
        tarballBytes,
        limitBytes,
        action: 'split',
        message: `${size}, over ${limit}, which the registry refuses in practice: pack one package per family instead with \`npm run release:cuda -- --split families\``,
      };
}

export interface CudaReleaseManifest {
  /** Null for a module that is not in a package folder (--inspect-only). */
  package: { name: string; version: string } | null;
  /** ISO date of the manifest. */
  date: string;
  /** This repository's commit, and whether the working tree had uncommitted changes. */
  commit: { sha: string; dirty: boolean } | null;
  llamaCpp: { commit: string; tag: string };
  /** nvcc's version ("13.0.88"); null when unknown. */
  toolkit: string | null;
  /** The CMAKE_CUDA_ARCHITECTURES list asked for; null when unknown. */
  architecturesRequested: string | null;
  module: string;
  code: ModuleCode;
  driver: typeof CUDA13_DRIVER;
  /** The package's files, with the unstripped size of those that were stripped. */
  files: { name: string; bytes: number; unstrippedBytes: number | null }[];
  tarball: { file: string; bytes: number; unpackedBytes: number } | null;
  size: SizeCheck | null;
  buildTime: (BuildTime & { text: string }) | null;
}

export const withText = (time: BuildTime) => ({ ...time, text: describeBuildTime(time) });

export function mib(bytes: number): string {
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** The manifest as markdown: a summary table, one row per architecture, and the problems. */
export function manifestMarkdown(m: CudaReleaseManifest): string {
  const title = m.package ? `${m.package.name}@${m.package.version}` : m.module;
  const commit = m.commit
    ? `cuda-llama \`${m.commit.sha.slice(0, 12)}\`${m.commit.dirty ? ' (with uncommitted changes)' : ''}`
    : 'cuda-llama (commit unknown)';
  const summary: [string, string][] = [
    ['built', `${m.date.slice(0, 10)}, ${commit}, llama.cpp \`${m.llamaCpp.commit.slice(0, 12)}\` (${m.llamaCpp.tag})`],
    ['toolkit', m.toolkit ? `CUDA ${m.toolkit}` : 'unknown'],
    ['architectures asked for', m.architecturesRequested ? `\`${m.architecturesRequested}\`` : 'unknown'],
    ['code units', String(m.code.units)],
    ['driver', `CUDA ${m.driver.cuda} runtime: Linux driver ${m.driver.linux} or newer`],
    [
      'PTX',
      m.code.ptx
        .map((p) => `ISA ${p.isa}: ${p.driverCuda ? `drivers for CUDA ${p.driverCuda} and newer compile it` : 'any driver'}`)
        .join('; ') || 'none',
    ],
    [
      'files',
      m.files
        .map((f) => `${f.name} ${mib(f.bytes)}${f.unstrippedBytes !== null ? ` (unstripped ${mib(f.unstrippedBytes)})` : ''}`)
        .join(', '),
    ],
  ];
  if (m.tarball) summary.push(['tarball', `${m.tarball.file}: ${mib(m.tarball.bytes)}, unpacked ${mib(m.tarball.unpackedBytes)}`]);
  if (m.size) summary.push(['size check', m.size.message]);
  if (m.buildTime) summary.push(['build time', m.buildTime.text]);
  const count = (c: CodeCount | null, extra = '') => (c ? `${c.units}/${m.code.units}, ${mib(c.bytes)}${extra}` : '–');
  const rows = m.code.architectures.map(
    (r) =>
      `| ${r.name} | ${r.gpus ?? '–'} | ${r.requested ? `\`${r.requested}\`` : '–'} | ${count(r.sass)} | ${count(r.ptx, r.ptx ? `, ISA ${r.ptx.isa.join(', ')}` : '')} |`,
  );
  return [
    `#### ${title}`,
    '',
    '| | |',
    '|---|---|',
    ...summary.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '| architecture | GPUs | asked as | SASS: units, bytes | PTX: units, bytes, ISA |',
    '|---|---|---|---|---|',
    ...rows,
    ...(m.code.problems.length ? ['', ...m.code.problems.map((p) => `- ${p}`)] : []),
  ].join('\n');
}

export const DOCS_BEGIN = '<!-- release:cuda begin: written by `npm run release:cuda -- --write-docs` -->';
export const DOCS_END = '<!-- release:cuda end -->';
export const DOCS_NOT_BUILT = 'Not yet built: `npm run release:cuda` records it here.';

/** The docs section: the release list by GPU generation, then each package's manifest (or that none is built yet). */
export function docsSection(manifests: CudaReleaseManifest[]): string {
  const parsed = RELEASE_CUDA_ARCHITECTURES.map((entry) => ({ entry, r: parseCudaArchitectures(entry.spec)[0]! }));
  const code = (r: RequestedArchitecture) =>
    [r.sass ? `SASS sm_${rowName(r.arch, r.variant)}` : '', r.ptx ? `PTX compute_${rowName(r.arch, r.variant)}` : '']
      .filter(Boolean)
      .join(' + ');
  // SASS runs on later minor versions of its major one (not an arch-specific 12Xa): B300 runs sm_100's. PTX runs on anything newer.
  const rows = parsed.flatMap(({ entry, r }) => [
    `| ${entry.gpus} | ${(r.arch / 10).toFixed(1)} | ${code(r)} |`,
    ...(r.sass && r.arch === 100 && !r.variant ? ['| Blackwell Ultra: B300, GB300 | 10.3 | SASS sm_100 |'] : []),
  ]);
  const ptx = parsed.filter(({ r }) => r.ptx).map(({ r }) => `PTX compute_${rowName(r.arch, r.variant)}`);
  if (ptx.length) rows.push(`| GPUs newer than the SASS above | | ${ptx.join(', ')}, compiled by the driver on the first load |`);
  return [
    '| GPUs | compute capability | code in the package |',
    '|---|---|---|',
    ...rows,
    '',
    manifests.length ? manifests.map(manifestMarkdown).join('\n\n') : DOCS_NOT_BUILT,
  ].join('\n');
}

/** `text` with what lies between the markers replaced by `section`; throws when the markers are missing. */
export function replaceDocsSection(text: string, section: string): string {
  const begin = text.indexOf(DOCS_BEGIN);
  const end = text.indexOf(DOCS_END);
  if (begin < 0 || end < begin) throw new Error(`the docs have no release section between '${DOCS_BEGIN}' and '${DOCS_END}'`);
  return `${text.slice(0, begin + DOCS_BEGIN.length)}\n\n${section}\n\n${text.slice(end)}`;
}

/**
 * Finding the CUDA runtime libraries a CUDA backend module needs (libcudart, libcublas, ...) where
 * users have them: the system loader's paths first, then CUDA_LLAMA_CUDA_LIB_DIRS, CUDA_PATH /
 * CUDA_HOME, /usr/local/cuda, and the PyPI nvidia wheels of python3. A library found outside the
 * loader's paths is preloaded by absolute path, which satisfies the module's need by soname.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NativeAddon } from '../binding/native.js';

export interface LibraryDir {
  dir: string;
  source: string;
}

export interface PreloadedLibrary {
  soname: string;
  path: string;
  source: string;
}

export interface RuntimeResolution {
  /** What we loaded from outside the loader's own search path. */
  preloaded: PreloadedLibrary[];
  /** The module's remaining load error after everything we could find; null when it loads. */
  error: string | null;
  searched: LibraryDir[];
}

/**
 * The PyPI wheels of the CUDA 13 runtime the CUDA module links (libcudart, libcublas and its
 * libcublasLt). From CUDA 13 on they carry no -cuXX suffix (nvidia-cuda-runtime-cu13 is an empty
 * deprecation stub) and install into site-packages/nvidia/cu13/lib, which pythonWheelLibDirs
 * searches. 13.0.* matches the toolkit the module is built with.
 */
export const CUDA_RUNTIME_WHEELS = ['nvidia-cuda-runtime==13.0.*', 'nvidia-cublas==13.0.*'] as const;

/** The one remedy for a missing libcudart / libcublas, wherever it is found missing. */
export function cudaRuntimeRemedy(): string {
  return (
    `the CUDA 13 runtime is missing: \`pip install ${CUDA_RUNTIME_WHEELS.map((w) => `"${w}"`).join(' ')}\` or install the CUDA 13 toolkit; ` +
    "cuda-llama looks in python3's nvidia/cu13/lib, CUDA_PATH / CUDA_HOME, /usr/local/cuda, and any folder on LD_LIBRARY_PATH or CUDA_LLAMA_CUDA_LIB_DIRS"
  );
}

function pythonWheelLibDirs(): LibraryDir[] {
  const found = spawnSync('python3', ['-c', 'import nvidia, json; print(json.dumps(list(nvidia.__path__)))'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (found.status !== 0) return [];
  try {
    return (JSON.parse(found.stdout) as string[]).flatMap((root) =>
      ['cu13', 'cu12'].map((v) => ({ dir: join(root, v, 'lib'), source: `python3 nvidia wheels (${v})` })),
    );
  } catch {
    return []; // an unusual python3: no wheel folders from it
  }
}

/** Candidate folders, in search order; python3 is asked only when the cheaper places did not do. */
export function cudaLibraryDirs(env: NodeJS.ProcessEnv = process.env, withPython = true): LibraryDir[] {
  const dirs: LibraryDir[] = [];
  for (const dir of (env.CUDA_LLAMA_CUDA_LIB_DIRS ?? '').split(':').filter(Boolean)) dirs.push({ dir, source: 'CUDA_LLAMA_CUDA_LIB_DIRS' });
  for (const name of ['CUDA_PATH', 'CUDA_HOME'] as const) {
    if (env[name])
      dirs.push({ dir: join(env[name] as string, 'lib64'), source: name }, { dir: join(env[name] as string, 'lib'), source: name });
  }
  dirs.push({ dir: '/usr/local/cuda/lib64', source: '/usr/local/cuda' });
  if (withPython) dirs.push(...pythonWheelLibDirs());
  return dirs.filter((d) => existsSync(d.dir));
}

/** The library a dlopen error says is missing ("libcudart.so.13: cannot open shared object file"). */
export function missingLibrary(error: string): string | null {
  return error.match(/(lib[\w.+-]+\.so(?:\.\d+)*): cannot open shared object file/)?.[1] ?? null;
}

/**
 * Makes `modulePath` loadable by preloading, in dependency order, every library its load error
 * names that can be found in `dirs`. Stops at the first library found nowhere.
 */
export function satisfyLibraries(
  addon: Pick<NativeAddon, 'probeLibrary' | 'preloadLibrary'>,
  modulePath: string,
  dirs: () => LibraryDir[],
): RuntimeResolution {
  const preloaded: PreloadedLibrary[] = [];
  const tried = new Set<string>();
  let searched: LibraryDir[] | undefined;
  const find = (soname: string) => {
    searched ??= dirs();
    return searched.map((d) => ({ ...d, path: join(d.dir, soname) })).find((d) => existsSync(d.path));
  };
  const satisfy = (path: string): string | null => {
    for (;;) {
      const error = addon.probeLibrary(path);
      if (error === null) return null;
      const soname = missingLibrary(error);
      if (soname === null || tried.has(soname)) return error;
      tried.add(soname);
      const found = find(soname);
      if (!found) return error;
      const depError = satisfy(found.path); // e.g. libcublas needs libcublasLt from the same folder
      if (depError !== null) return depError;
      const preloadError = addon.preloadLibrary(found.path);
      if (preloadError !== null) return preloadError;
      preloaded.push({ soname, path: found.path, source: found.source });
    }
  };
  const error = satisfy(modulePath);
  return { preloaded, error, searched: searched ?? [] };
}

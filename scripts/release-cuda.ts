/**
 * npm run release:cuda: builds (or resumes) the release CUDA module, packs it as the optional
 * package @cuda-llama/linux-x64-cuda13, and writes what it holds as prebuilds/linux-x64-cuda13/
 * manifest.json (also printed as markdown).
 *
 *   npm run release:cuda [-- --install-wheels] [--no-build] [--split families] [--write-docs]
 *   npm run release:cuda -- --inspect-only PATH [--arch LIST] [--nvcc PATH] [--out DIR]
 *
 * 1. Build in build-release-cuda13/ (build-release-cuda13-<family>/ per family) with the release
 *    list (RELEASE_CUDA_ARCHITECTURES, scripts/cuda-release.mjs) through scripts/build-cuda.mjs,
 *    with the CUDA 13.0 PyPI wheels in that folder as the only toolkit (CUDA_PATH points there;
 *    installed when missing or with --install-wheels), so every attempt has the same inputs and an
 *    interrupted build resumes where ninja stopped. Each attempt's time is kept in the folder
 *    (scripts/build-time.ts); the manifest gives the sum and the number of attempts. A second
 *    build into the same folder is refused while one runs. --no-build packs what the folder has.
 * 2. Copy libggml-cuda.so into the package folder, stripped (scripts/cuda-release.mjs
 *    packageCudaModule), and check that its fatbin entries are the unstripped module's, byte for byte.
 * 3. Read its fatbin (lib/gpu/fatbin.ts) into the manifest (scripts/cuda-manifest.ts), then
 *    `npm pack` the folder into prebuilds/ and add the tarball's sizes. Exit 1 when the module
 *    differs from the list (missing code, code in only some units).
 * 4. A tarball over TARBALL_LIMIT_BYTES is named with its size, and exits 1: rerun with
 *    `--split families` to pack one package per family instead, each from its own build folder.
 * 5. --write-docs replaces the release section of docs/install.md with the manifests.
 * --inspect-only PATH writes the manifest of an existing module (no build, no pack) into --out
 * (default prebuilds/linux-x64-cuda13-inspect/); --arch gives the list it was built from (default: its
 * cuda-llama-build.json), --nvcc the compiler to ask for the toolkit version.
 *
 * Split packages (--split families): @cuda-llama/linux-x64-cuda13-sm75-89 and -sm90-121, each a
 * whole libggml-cuda.so for its family's architectures only. The loader does not choose between
 * them yet (lib/binding/load-native.ts knows CUDA_PACKAGE only). When it does, it must:
 *  - take the whole package when it is installed, else each family package that is;
 *  - keep the one whose code runs on every GPU it will use, judged from the module itself
 *    (readCudaModuleCode + cudaCodeVerdict against NVML's compute capabilities and driver), never
 *    from a hard-coded range, so that regrouping the families needs no loader change;
 *  - load one at most: ggml loads one CUDA backend module per process, so GPUs of two families in
 *    one machine cannot both be served by split packages; say so with both package names (the
 *    whole package serves them) rather than use some GPUs silently;
 *  - apply the llama.cpp-commit check of locateCudaModule to the family package too;
 *  - name the family package that fits the GPU in its remedies. Users install one family package
 *    by hand: as optionalDependencies npm would install every family, which undoes the split.
 */
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readFatbinEntries } from '../lib/gpu/fatbin.js';
import {
  buildTime,
  finishAttempt,
  HEARTBEAT_MS,
  heartbeat,
  isBuildInto,
  ninjaLogRuns,
  runningAttempt,
  startAttempt,
  STATE_FILE,
  type BuildState,
  type NinjaRun,
} from './build-time.js';
import {
  CUDA13_DRIVER,
  describeModuleCode,
  docsSection,
  fatbinFingerprint,
  manifestMarkdown,
  replaceDocsSection,
  sizeCheck,
  withText,
  type CudaReleaseManifest,
} from './cuda-manifest.js';
import {
  CUDA_FAMILIES,
  cudaPackageDir,
  cudaPackageName,
  packageCudaModule,
  parseCudaArchitectures,
  RELEASE_CUDA_ARCHITECTURES,
  releaseArchitectureList,
  releaseBuildDirName,
} from './cuda-release.mjs';

const { values } = parseArgs({
  options: {
    'install-wheels': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    split: { type: 'string' },
    'write-docs': { type: 'boolean', default: false },
    'inspect-only': { type: 'string' },
    arch: { type: 'string' },
    nvcc: { type: 'string' },
    out: { type: 'string' },
  },
});

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const say = (message: string) => process.stderr.write(`[cuda-llama] ${message}\n`);
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const pin = readJson(join(repoRoot, 'vendor', 'llama.cpp.pin.json')) as { commit: string; tag: string };

function gitCommit(): CudaReleaseManifest['commit'] {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  if (head.status !== 0) return null; // not a git checkout: the manifest says "commit unknown"
  const status = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot, encoding: 'utf8' });
  return { sha: head.stdout.trim(), dirty: status.stdout.trim() !== '' };
}

/** "13.0.88" from `nvcc --version` ("Cuda compilation tools, release 13.0, V13.0.88"). */
function nvccVersion(nvcc: string): string | null {
  const result = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
  return /\bV(\d+\.\d+\.\d+)/.exec(result.stdout ?? '')?.[1] ?? /release (\d+\.\d+)/.exec(result.stdout ?? '')?.[1] ?? null;
}

function stripped(path: string): { path: string; fingerprintsMatch: boolean } {
  const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-strip-'));
  const copy = join(dir, basename(path));
  copyFileSync(path, copy);
  execFileSync('strip', ['--strip-all', copy]);
  return { path: copy, fingerprintsMatch: sameFatbin(path, copy) };
}

function sameFatbin(unstripped: string, stripped: string): boolean {
  const before = fatbinFingerprint(unstripped);
  const after = fatbinFingerprint(stripped);
  return before !== null && after !== null && before.entries === after.entries && before.sha256 === after.sha256;
}

// ---- the build, resumable, with its time kept across attempts

const readState = (buildDir: string): BuildState | null =>
  existsSync(join(buildDir, STATE_FILE)) ? (readJson(join(buildDir, STATE_FILE)) as BuildState) : null;

function writeState(buildDir: string, state: BuildState): void {
  const path = join(buildDir, STATE_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${path}.tmp`, path); // a kill mid-write leaves the previous heartbeat, never half a file
}

/** Ninja runs of this list from before the state file: a build started by hand, or by an older script. */
function earlierRuns(buildDir: string, list: string): NinjaRun[] {
  const cache = join(buildDir, 'CMakeCache.txt');
  const log = join(buildDir, '.ninja_log');
  if (!existsSync(cache) || !existsSync(log)) return [];
  const configured = /^CUDA_LLAMA_CUDA_ARCHITECTURES:STRING=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1];
  return configured === list ? ninjaLogRuns(readFileSync(log, 'utf8')) : [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A process building into `dirName` (scripts/install.mjs's cmake-js), started by this script or by hand. */
function buildProcessInto(dirName: string): number | null {
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // the process ended while we looked
    }
    if (isBuildInto(argv, dirName)) return Number(pid);
  }
  return null;
}

async function build(family: string | null): Promise<void> {
  const dirName = releaseBuildDirName(family);
  const buildDir = join(repoRoot, dirName);
  const list = releaseArchitectureList(family);
  const running = runningAttempt(readState(buildDir), new Date(), alive);
  const other = buildProcessInto(dirName);
  if (running || other !== null) {
    throw new Error(
      `a build into ${dirName}/ is running (pid ${running?.pid ?? other}): two would race on its outputs; wait for it or stop it`,
    );
  }
  mkdirSync(buildDir, { recursive: true });
  const wheelRoot = join(buildDir, 'cuda-wheels', 'nvidia', 'cu13');
  const installWheels = values['install-wheels'] || !existsSync(join(wheelRoot, 'bin', 'nvcc'));
  let state = startAttempt(readState(buildDir), list, new Date(), process.pid, () => earlierRuns(buildDir, list));
  writeState(buildDir, state);
  say(`building ${list} in ${dirName}/ (attempt ${state.attempts.length}; an interrupted build resumes where it stopped)`);
  const beat = setInterval(() => writeState(buildDir, (state = heartbeat(state, new Date()))), HEARTBEAT_MS);
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'scripts', 'build-cuda.mjs'), '--arch', list, ...(installWheels ? ['--install-wheels'] : [])],
    {
      stdio: 'inherit',
      // The wheels in the build folder are the toolkit: another one found first (CUDA_HOME, nvcc on
      // PATH) would change the build's inputs, and CMake would start over.
      env: { ...process.env, CUDA_LLAMA_BUILD_DIR: dirName, CUDA_PATH: wheelRoot, CUDA_HOME: '' },
    },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward).on('SIGTERM', forward);
  const exit = await new Promise<number | string>((done) => child.on('exit', (code, signal) => done(code ?? signal ?? 'unknown')));
  clearInterval(beat);
  process.off('SIGINT', forward).off('SIGTERM', forward);
  writeState(buildDir, (state = finishAttempt(state, new Date(), exit)));
  if (exit !== 0) throw new Error(`the build in ${dirName}/ ended with ${exit}: run \`npm run release:cuda\` again to resume it`);
}

// ---- packing and the manifest

function pack(dir: string): NonNullable<CudaReleaseManifest['tarball']> {
  // npm pack of the package folder alone, into prebuilds/; npm_execpath is the npm running this script.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const out = execFileSync(npm[0]!, [...npm.slice(1), 'pack', '--json', '--pack-destination', dirname(dir)], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [packed] = JSON.parse(out) as { filename: string; size: number; unpackedSize: number }[];
  return { file: relative(repoRoot, join(dirname(dir), packed!.filename)), bytes: packed!.size, unpackedBytes: packed!.unpackedSize };
}

async function release(family: string | null, split: boolean): Promise<CudaReleaseManifest> {
  const dirName = releaseBuildDirName(family);
  const list = releaseArchitectureList(family);
  if (!values['no-build']) await build(family);
  else if (!existsSync(join(repoRoot, dirName, 'Release', 'libggml-cuda.so')))
    throw new Error(`--no-build: ${dirName}/ has no finished build to pack; run \`npm run release:cuda\` without --no-build`);
  const gpus = RELEASE_CUDA_ARCHITECTURES.filter((a) => family === null || a.family === family)
    .map((a) => a.gpus.split(':')[0])
    .filter((g, i, all) => all.indexOf(g) === i)
    .join(', ');
  const pkg = packageCudaModule({
    from: dirName,
    name: cudaPackageName(family),
    dir: cudaPackageDir(family),
    gpus,
    driver: CUDA13_DRIVER.linux,
  });
  if (pkg.metadata.cudaArchitectures !== list) {
    throw new Error(`${dirName}/ was built for ${pkg.metadata.cudaArchitectures}, not the release list ${list}: run without --no-build`);
  }
  const entries = readFatbinEntries(pkg.module);
  if (!entries) throw new Error(`${pkg.module} has no fatbin this reader understands`);
  if (!sameFatbin(pkg.source, pkg.module))
    throw new Error(`stripping changed the fatbin of ${pkg.module}: pack it unstripped and report this`);
  const buildDir = join(repoRoot, dirName);
  const state = readState(buildDir) ?? { architectures: list, created: '', attempts: [], earlier: earlierRuns(buildDir, list) };
  const settings = existsSync(join(buildDir, 'build-settings.json')) ? readJson(join(buildDir, 'build-settings.json')) : {};
  const packed = JSON.parse(readFileSync(join(pkg.dir, 'package.json'), 'utf8')) as { files: string[] };
  const tarball = pack(pkg.dir);
  const manifest: CudaReleaseManifest = {
    package: { name: pkg.name, version: pkg.version },
    date: new Date().toISOString(),
    commit: gitCommit(),
    llamaCpp: { commit: pin.commit, tag: pin.tag },
    toolkit: settings.CUDA_LLAMA_NVCC ? nvccVersion(settings.CUDA_LLAMA_NVCC) : ((pkg.metadata.cudaCompilerVersion as string) ?? null),
    architecturesRequested: list,
    module: relative(repoRoot, pkg.module),
    code: describeModuleCode(entries, parseCudaArchitectures(list)),
    driver: CUDA13_DRIVER,
    files: packed.files.map((name) => ({
      name,
      bytes: statSync(join(pkg.dir, name)).size,
      unstrippedBytes: name === 'libggml-cuda.so' ? statSync(pkg.source).size : null,
    })),
    tarball,
    size: sizeCheck(tarball.bytes, split),
    buildTime: state.attempts.length + state.earlier.length ? withText(buildTime(state)) : null,
  };
  writeFileSync(join(pkg.dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

function inspect(path: string): CudaReleaseManifest {
  const entries = readFatbinEntries(path);
  if (!entries) throw new Error(`${path} has no .nv_fatbin this reader understands (not a CUDA module?)`);
  const beside = (name: string) => (existsSync(join(dirname(path), name)) ? readJson(join(dirname(path), name)) : null);
  const metadata = beside('cuda-llama-build.json') as { cudaArchitectures?: string; cudaCompilerVersion?: string } | null;
  const packageJson = beside('package.json') as { name: string; version: string } | null;
  const list = values.arch ?? metadata?.cudaArchitectures ?? null;
  const copy = stripped(path);
  if (!copy.fingerprintsMatch) throw new Error(`stripping changed the fatbin of ${path}`);
  // A module in <build>/Release: that build folder's attempts, when release:cuda made it.
  const state = basename(dirname(path)) === 'Release' ? readState(dirname(dirname(path))) : null;
  const manifest: CudaReleaseManifest = {
    package: packageJson ? { name: packageJson.name, version: packageJson.version } : null,
    date: new Date().toISOString(),
    commit: gitCommit(),
    llamaCpp: { commit: pin.commit, tag: pin.tag },
    toolkit: values.nvcc ? nvccVersion(values.nvcc) : (metadata?.cudaCompilerVersion ?? null),
    architecturesRequested: list,
    module: path,
    code: describeModuleCode(entries, list === null ? null : parseCudaArchitectures(list)),
    driver: CUDA13_DRIVER,
    files: [{ name: basename(path), bytes: statSync(copy.path).size, unstrippedBytes: statSync(path).size }],
    tarball: null,
    size: null,
    buildTime: state ? withText(buildTime(state)) : null,
  };
  rmSync(dirname(copy.path), { recursive: true, force: true });
  const out = resolve(values.out ?? `${cudaPackageDir()}-inspect`); // prebuilds/*-cuda*: never in the main tarball
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  say(`manifest: ${join(out, 'manifest.json')}`);
  return manifest;
}

async function main(): Promise<number> {
  if (values.split !== undefined && values.split !== 'families') throw new RangeError(`--split takes 'families', got '${values.split}'`);
  const inspectPath = values['inspect-only'];
  if (inspectPath === undefined) {
    for (const name of ['arch', 'nvcc', 'out'] as const)
      if (values[name] !== undefined) throw new RangeError(`--${name} goes with --inspect-only (a release builds the release list)`);
  } else {
    for (const name of ['split', 'no-build', 'install-wheels', 'write-docs'] as const)
      if (values[name]) throw new RangeError(`--inspect-only builds and packs nothing: drop --${name}`);
    const manifest = inspect(resolve(inspectPath));
    process.stdout.write(`${manifestMarkdown(manifest)}\n`);
    return 0;
  }

  const split = values.split === 'families';
  const manifests: CudaReleaseManifest[] = [];
  for (const family of split ? CUDA_FAMILIES : [null]) manifests.push(await release(family, split));
  process.stdout.write(`${manifests.map(manifestMarkdown).join('\n\n')}\n`);
  let status = 0;
  for (const m of manifests) {
    if (m.size!.action !== 'ok') say(`${m.package!.name}: ${m.size!.message}`);
    if (m.code.problems.length) say(`${m.package!.name}: the module is not what the list asks for:\n  ${m.code.problems.join('\n  ')}`);
    if (m.size!.action !== 'ok' || m.code.problems.length) status = 1;
  }
  if (values['write-docs']) {
    if (status !== 0) {
      say('not writing docs/install.md: a package above is not fit to publish');
    } else {
      const docs = join(repoRoot, 'docs', 'install.md');
      writeFileSync(docs, replaceDocsSection(readFileSync(docs, 'utf8'), docsSection(manifests)));
      say('docs/install.md: the release section now holds these manifests');
    }
  }
  return status;
}

main().then(
  (status) => process.exit(status),
  (error: unknown) => {
    say(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);

#!/usr/bin/env node
// npm run test:pack: the packed tarball installs into an empty project on a PATH with no C/C++
// compiler, cmake or git, and loads and generates from its prebuilt binary.
//
//   node scripts/test-pack.mjs [--build native|all] [--cuda]
//     --build V   run `npm run prebuild -- --cpu-variants V` first (CI uses native: minutes, not a quarter hour)
//     --cuda      also pack the optional CUDA package (prebuilds/<platform>-<arch>-cuda13, made by
//                 `npm run prebuild -- --cuda` from a CUDA build), install it beside the main one,
//                 and check the loader takes the CUDA module from it: CUDA usable on a GPU host,
//                 else refused for the missing driver or runtime library it names
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { repoRoot, say } from './build-common.mjs';

const argv = process.argv.slice(2);
const build = argv.includes('--build') ? argv[argv.indexOf('--build') + 1] : undefined;
const withCuda = argv.includes('--cuda');
const cudaPackageDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}-cuda13`);
if (withCuda && !existsSync(join(cudaPackageDir, 'package.json'))) {
  say('--cuda: no CUDA package in prebuilds/: run `npm run build:cuda` and `npm run prebuild -- --cuda` first');
  process.exit(1);
}
const platformDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);

if (build) execFileSync(process.execPath, [join(repoRoot, 'scripts', 'prebuild.mjs'), '--cpu-variants', build], { stdio: 'inherit' });
if (!existsSync(join(platformDir, 'cuda_llama.node'))) {
  say('no prebuilt binary: run `npm run prebuild` (or pass --build native) first');
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'cuda-llama-pack-'));
try {
  // 1. The tarball, and what is (not) in it.
  const npmCli = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const npm = (args, options = {}) => execFileSync(process.execPath, [npmCli, ...args], { encoding: 'utf8', ...options });
  const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', work], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] }));
  const files = packed[0].files.map((f) => f.path);
  const tarball = join(work, packed[0].filename);
  // Of scripts/, only what an install or a build at the user's site runs (`npm run build:native`,
  // and `npm run build:cuda`, which the loader's remedies name).
  const installScripts = ['scripts/install.mjs', 'scripts/build-common.mjs', 'scripts/native-sources.mjs', 'scripts/build-cuda.mjs'];
  const must = [
    'dist/index.js',
    'dist/tools/cli.js',
    `prebuilds/${process.platform}-${process.arch}/cuda_llama.node`,
    'assets/ggml-vocab-llama-spm.gguf',
    ...installScripts,
    'vendor/materialize.mjs',
    'vendor/llama.cpp.pin.json',
    'CMakeLists.txt',
  ];
  const missing = must.filter((f) => !files.includes(f));
  const forbidden = files.filter(
    (f) =>
      /^(test|build|build-[^/]+|docs)\//.test(f) ||
      /^prebuilds\/[^/]*-cuda/.test(f) ||
      f.startsWith('vendor/llama.cpp/') ||
      /\.git\//.test(f) ||
      (f.endsWith('.gguf') && !f.startsWith('assets/')) ||
      (f.startsWith('scripts/') && !installScripts.includes(f)),
  );
  if (missing.length || forbidden.length)
    throw new Error(`tarball content: missing ${JSON.stringify(missing)}, must not contain ${JSON.stringify(forbidden.slice(0, 5))}`);
  say(`${packed[0].filename}: ${files.length} files, ${(packed[0].size / 2 ** 20).toFixed(1)} MiB packed`);

  // 2. An empty project, and a PATH that has node and nothing to compile with.
  const project = join(work, 'project');
  const bin = join(work, 'bin');
  mkdirSync(project);
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh')); // npm runs install scripts through sh
  const env = { ...process.env, PATH: bin, npm_config_foreground_scripts: 'true' };
  for (const tool of ['cc', 'gcc', 'g++', 'c++', 'cmake', 'make', 'ninja', 'git', 'nvcc']) {
    if (spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env }).status === 0) throw new Error(`${tool} is still on the test PATH`);
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const install = spawnSync(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', tarball], {
    cwd: project,
    env,
    encoding: 'utf8',
  });
  if (install.status !== 0) throw new Error(`npm install of the tarball failed:\n${install.stdout}\n${install.stderr}`);
  if (!/using the prebuilt binary/.test(install.stdout + install.stderr))
    throw new Error(`the install did not use the prebuilt binary:\n${install.stdout}\n${install.stderr}`);
  say('installed from the tarball with no compiler on PATH, using the prebuilt binary');
  // The runtime stands on its own: nothing under dist/ reaches into the build scripts.
  const installed = join(project, 'node_modules', 'cuda-llama');
  const upward = readdirSync(join(installed, 'dist'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.js'))
    .filter((f) => /from ['"](\.\.\/)+scripts\//.test(readFileSync(join(installed, 'dist', f), 'utf8')));
  if (upward.length) throw new Error(`dist/ imports from scripts/: ${upward.join(', ')}`);

  // 3. Load and generate, as a user would, with a model the package itself can make.
  writeFileSync(
    join(project, 'use.mjs'),
    `
    import { Llama } from 'cuda-llama';
    const build = Llama.build();
    const model = await Llama.load(process.argv[2], { gpu: 'cpu', contextSize: 256 });
    const result = await model.generate('Hello from the tarball', { maxTokens: 8, temperature: 0 });
    console.log(JSON.stringify({ source: build.source, variant: build.metadata?.variant, prebuild: build.metadata?.prebuild, tokens: result.tokens.length, text: result.text }));
    await model.dispose();
  `,
  );
  const modelsDir = join(repoRoot, 'test', '.models');
  const model = existsSync(modelsDir) ? readdirSync(modelsDir).find((f) => /^tiny-.*-f16\.gguf$/.test(f)) : undefined;
  if (!model) throw new Error('no tiny test model in test/.models: run `npm test` first');
  const use = spawnSync(process.execPath, ['use.mjs', join(modelsDir, model)], { cwd: project, env, encoding: 'utf8' });
  if (use.status !== 0) throw new Error(`loading from the installed package failed:\n${use.stdout}\n${use.stderr}`);
  const out = JSON.parse(use.stdout.trim().split('\n').pop() ?? '');
  if (out.source !== 'prebuild' || out.tokens !== 8) throw new Error(`unexpected result: ${use.stdout}`);
  const doctor = spawnSync(join(project, 'node_modules', '.bin', 'cuda-llama'), ['doctor', '--cpu'], {
    cwd: project,
    env,
    encoding: 'utf8',
  });
  if (doctor.status !== 0) throw new Error(`cuda-llama doctor --cpu failed in the installed package:\n${doctor.stdout}\n${doctor.stderr}`);
  say(`generated ${out.tokens} tokens from the ${out.source} (${out.variant}); doctor --cpu passed`);
  let passed = 1;

  // 4. The optional CUDA package, installed beside the main one.
  if (withCuda) {
    const cudaPacked = JSON.parse(
      npm(['pack', '--json', '--pack-destination', work], { cwd: cudaPackageDir, stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    say(`${cudaPacked[0].filename}: ${cudaPacked[0].files.length} files, ${(cudaPacked[0].size / 2 ** 20).toFixed(1)} MiB packed`);
    const add = spawnSync(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', join(work, cudaPacked[0].filename)], {
      cwd: project,
      env,
      encoding: 'utf8',
    });
    if (add.status !== 0) throw new Error(`npm install of the CUDA package failed:\n${add.stdout}\n${add.stderr}`);
    writeFileSync(
      join(project, 'cuda.mjs'),
      `
      import { Llama } from 'cuda-llama';
      const build = Llama.build();
      console.log(JSON.stringify({ cudaModule: build.cudaModule, cuda: build.cuda }));
    `,
    );
    const probe = spawnSync(process.execPath, ['cuda.mjs'], { cwd: project, env, encoding: 'utf8' });
    if (probe.status !== 0) throw new Error(`Llama.build() with the CUDA package failed:\n${probe.stdout}\n${probe.stderr}`);
    const { cudaModule, cuda } = JSON.parse(probe.stdout.trim().split('\n').pop() ?? '');
    if (cudaModule?.source !== 'package' || cudaModule.problem)
      throw new Error(`the loader did not take the CUDA module from the package: ${probe.stdout}`);
    // On a GPU host it must work; elsewhere it must have been tried and refused for a named library.
    // A container may hide /proc/driver/nvidia yet pass the device nodes through: either one counts.
    const driverPresent = existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
    if (!cuda.available && (driverPresent || !/lib(cuda|cudart|cublas)[\w.]*\.so/.test(cuda.reason ?? ''))) {
      throw new Error(
        `unexpected CUDA availability with the package (NVIDIA driver ${driverPresent ? 'present' : 'absent'}): ${JSON.stringify(cuda)}`,
      );
    }
    say(
      `CUDA module taken from ${cudaModule.path.replace(project, '<project>')} (architectures ${cudaModule.metadata?.cudaArchitectures}); ` +
        (cuda.available ? `CUDA devices: ${cuda.devices.join(', ')}` : `refused as it should be here: ${cuda.reason}`),
    );
    passed++;
  }
  console.log(`test:pack: ${passed} passed, 0 failed`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

#!/usr/bin/env node
// Materializes the pinned llama.cpp source into vendor/llama.cpp (git-ignored).
//
// The source comes from the npm registry only: node-llama-cpp ships the full llama.cpp tree as a
// git bundle. We fetch that package tarball with `npm pack` (npm's own cache and registry settings),
// check the tarball's sha512, the bundle's sha256, and the checked-out commit and tree against
// vendor/llama.cpp.pin.json. Idempotent: a checkout that already matches the pin is left alone.
//
// Plain ESM JavaScript on purpose: it runs at install time, before any TypeScript tooling exists.
//
// Usage: node vendor/materialize.mjs [--check]   (--check: verify only, exit 1 when absent or wrong)

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const vendorDir = dirname(fileURLToPath(import.meta.url));
const pin = JSON.parse(readFileSync(join(vendorDir, 'llama.cpp.pin.json'), 'utf8'));
const sourceDir = join(vendorDir, 'llama.cpp');
const cacheDir = join(vendorDir, '.cache');
const tarballName = `${pin.npmPackage}-${pin.npmVersion}.tgz`;
// Written after a verification; lets a tree exported without .git (carried to a build host with no
// registry access) be recognised. Weaker than the git check, and said so when it is relied on.
const stampFile = join(sourceDir, '.cuda-llama-verified');

function say(message) {
  process.stderr.write(`[cuda-llama] ${message}\n`);
}

function git(args, cwd) {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function digest(algorithm, file, encoding) {
  return createHash(algorithm).update(readFileSync(file)).digest(encoding);
}

/** Returns a reason string when the checkout does not match the pin, or null when it does. */
function checkoutMismatch() {
  if (!existsSync(join(sourceDir, '.git'))) {
    if (existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === `${pin.commit} ${pin.tree}`) {
      say('vendor/llama.cpp has no .git (an exported tree); trusting its verification stamp for the pinned commit');
      return null;
    }
    return 'vendor/llama.cpp is absent';
  }
  try {
    const head = git(['rev-parse', 'HEAD'], sourceDir);
    if (head !== pin.commit) return `vendor/llama.cpp is at ${head}, the pin says ${pin.commit}`;
    const tree = git(['rev-parse', 'HEAD^{tree}'], sourceDir);
    if (tree !== pin.tree) return `vendor/llama.cpp tree is ${tree}, the pin says ${pin.tree}`;
    // Tracked files edited by hand would silently change what we build and test.
    const dirty = git(['status', '--porcelain', '--untracked-files=no'], sourceDir);
    if (dirty) return `vendor/llama.cpp has local changes:\n${dirty.split('\n').slice(0, 5).join('\n')}`;
  } catch (error) {
    return `vendor/llama.cpp is not a readable git checkout (${error.message.split('\n')[0]})`;
  }
  return null;
}

function fetchTarball() {
  const tarball = join(cacheDir, tarballName);
  if (!existsSync(tarball)) {
    mkdirSync(cacheDir, { recursive: true });
    const spec = `${pin.npmPackage}@${pin.npmVersion}`;
    say(`fetching ${spec} from the npm registry (it carries the llama.cpp source bundle)`);
    // --ignore-scripts: we want the file, never the package's own install logic.
    execFileSync('npm', ['pack', spec, '--pack-destination', cacheDir, '--ignore-scripts', '--silent'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  const integrity = `sha512-${digest('sha512', tarball, 'base64')}`;
  if (integrity !== pin.tarballIntegrity) {
    rmSync(tarball, { force: true });
    throw new Error(`${tarballName} has integrity ${integrity}, the pin says ${pin.tarballIntegrity}; removed it. ` +
      'Run the install again; if it repeats, the registry served a different file: do not build from it.');
  }
  return tarball;
}

function materialize() {
  const tarball = fetchTarball();
  const unpackDir = join(cacheDir, 'unpack');
  rmSync(unpackDir, { recursive: true, force: true });
  mkdirSync(unpackDir, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', unpackDir, pin.bundlePath], { stdio: 'inherit' });
  const bundle = join(unpackDir, pin.bundlePath);
  const bundleSha256 = digest('sha256', bundle, 'hex');
  if (bundleSha256 !== pin.bundleSha256) {
    throw new Error(`${pin.bundlePath} has sha256 ${bundleSha256}, the pin says ${pin.bundleSha256}`);
  }

  const stagingDir = `${sourceDir}.staging`;
  rmSync(stagingDir, { recursive: true, force: true });
  say(`unpacking llama.cpp ${pin.tag} (${pin.commit.slice(0, 12)}) into vendor/llama.cpp`);
  execFileSync('git', ['clone', '--quiet', '--no-checkout', bundle, stagingDir], { stdio: 'inherit' });
  execFileSync('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', pin.commit], {
    cwd: stagingDir,
    stdio: 'inherit',
  });
  rmSync(sourceDir, { recursive: true, force: true });
  renameSync(stagingDir, sourceDir);
  rmSync(unpackDir, { recursive: true, force: true });

  const mismatch = checkoutMismatch();
  if (mismatch) throw new Error(`after unpacking: ${mismatch}`);
}

const checkOnly = process.argv.includes('--check');
const mismatch = checkoutMismatch();
if (!mismatch) {
  if (existsSync(join(sourceDir, '.git'))) writeFileSync(stampFile, `${pin.commit} ${pin.tree}\n`);
  say(`llama.cpp ${pin.tag} (${pin.commit.slice(0, 12)}) present and verified`);
} else if (checkOnly) {
  say(mismatch);
  process.exit(1);
} else {
  if (existsSync(sourceDir) && readdirSync(sourceDir).length > 0) say(`${mismatch}; replacing it`);
  try {
    materialize();
  } catch (error) {
    say(`could not materialize llama.cpp: ${error.message}`);
    process.exit(1);
  }
  writeFileSync(stampFile, `${pin.commit} ${pin.tree}\n`);
  say('llama.cpp source verified against vendor/llama.cpp.pin.json');
}

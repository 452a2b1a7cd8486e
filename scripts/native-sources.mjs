// The fingerprint of the addon's C++ sources (native/), and the one up-to-date test of a local
// build. The build scripts write the fingerprint into the build metadata (cuda-llama-build.json,
// through CMake); scripts/install.mjs compares it with native/ before a build is used, so a build
// older than its sources (a local build left from before a `git pull`) is rebuilt or refused by
// name instead of failing later with a confusing TypeError from a changed native signature. The
// runtime only reports the fingerprint: an installed package ships binaries made from its own native/.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const ADDON_FILE = 'cuda_llama.node';
export const BUILD_INFO_FILE = 'cuda-llama-build.json';
/** Written into the build folder after a successful build: the hash of everything the build was made from. */
export const INPUTS_STAMP_FILE = 'inputs.sha256';

/** sha256 over native/'s file names and contents, in name order; null when the folder is absent. */
export function nativeSourcesSha256(packageRoot) {
  const dir = join(packageRoot, 'native');
  if (!existsSync(dir)) return null;
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort())
    hash
      .update(file)
      .update('\0')
      .update(readFileSync(join(dir, file)))
      .update('\0');
  return hash.digest('hex');
}

/**
 * Why a binary built from other C++ sources than native/ must not be used (null when it may): the
 * JavaScript side would call a native API that has moved. Unknown on either side (a build without
 * the scripts' fingerprint, a tree without native/) is not judged.
 */
export function staleBuild(metadata, sourcesSha256) {
  const built = metadata?.nativeSourcesSha256;
  if (!built || !sourcesSha256 || built === sourcesSha256) return null;
  return `it is a stale build: made from other native/ sources (${built.slice(0, 12)}) than these (${sourcesSha256.slice(0, 12)})`;
}

function readOrNull(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Why the build in `buildDir` (its Release/ folder holds the addon) is not the one its inputs make,
 * or null when it is: the addon is missing, it was made from other native/ sources, or from another
 * CMakeLists.txt, llama.cpp pin or build settings (`inputsHash`, see build-common.mjs buildInputs).
 */
export function localBuildProblem(buildDir, inputsHash, sourcesSha256) {
  const release = join(buildDir, 'Release');
  if (!existsSync(join(release, ADDON_FILE))) return `there is no local build (${join(release, ADDON_FILE)} does not exist)`;
  let metadata = null;
  try {
    metadata = JSON.parse(readOrNull(join(release, BUILD_INFO_FILE)) ?? 'null');
  } catch {
    // unreadable metadata: the stamp below decides
  }
  const stale = staleBuild(metadata, sourcesSha256);
  if (stale) return `${release}: ${stale}`;
  if (readOrNull(join(buildDir, INPUTS_STAMP_FILE))?.trim() !== inputsHash) {
    return `${release} was built from other inputs (CMakeLists.txt, the llama.cpp pin or the build settings), or not by these scripts`;
  }
  return null;
}

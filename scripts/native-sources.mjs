// The fingerprint of the addon's C++ sources (native/), in one place: the build scripts write it
// into the build metadata (cuda-llama-build.json, via CMake) and lib/binding/load-native.ts compares it
// with the native/ folder the package ships, so a build older than its sources (a local build left
// from before a `git pull`) is refused by name instead of failing later with a confusing
// TypeError from a changed native signature.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** sha256 over native/'s file names and contents, in name order; null when the folder is absent. */
export function nativeSourcesSha256(packageRoot) {
  const dir = join(packageRoot, 'native');
  if (!existsSync(dir)) return null;
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) hash.update(file).update('\0').update(readFileSync(join(dir, file))).update('\0');
  return hash.digest('hex');
}

// Types for native-sources.mjs (imported by the tests).
export const ADDON_FILE: string;
export const BUILD_INFO_FILE: string;
export const INPUTS_STAMP_FILE: string;
/** sha256 over native/'s file names and contents, in name order; null when the folder is absent. */
export function nativeSourcesSha256(packageRoot: string): string | null;
/** Why a binary built from other native/ sources must not be used; null when it may or when either side is unknown. */
export function staleBuild(metadata: { nativeSourcesSha256?: string | null } | null, sourcesSha256: string | null): string | null;
/** Why the build in buildDir is not what its inputs make; null when it is up to date. */
export function localBuildProblem(buildDir: string, inputsHash: string, sourcesSha256: string | null): string | null;

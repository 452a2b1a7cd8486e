/** sha256 over native/'s file names and contents, in name order; null when the folder is absent. See native-sources.mjs. */
export function nativeSourcesSha256(packageRoot: string): string | null;

#!/usr/bin/env node
// Compares the exports the addon registers (native/addon.cc) with the names lib/binding/native.ts types.
// Reads both as text, so it needs no build: run in CI before the tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './build-common.mjs';

const cc = readFileSync(join(repoRoot, 'native', 'addon.cc'), 'utf8');
const registered = [...cc.matchAll(/Instance(?:Value|Method<[^>]+>)\("([A-Za-z]+)"/g)].map((m) => m[1]);
const ts = readFileSync(join(repoRoot, 'lib', 'binding', 'native.ts'), 'utf8');
const block = ts.match(/nativeExportNames = \[([\s\S]*?)\]/);
const typed = block ? [...block[1].matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]) : [];
const missing = registered.filter((n) => !typed.includes(n));
const extra = typed.filter((n) => !registered.includes(n));
if (missing.length || extra.length || registered.length === 0) {
  console.error(`native exports and lib/binding/native.ts disagree: untyped ${JSON.stringify(missing)}, not registered ${JSON.stringify(extra)}`);
  process.exit(1);
}
console.log(`check-exports: ${registered.length} exports typed in lib/binding/native.ts`);

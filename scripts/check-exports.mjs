#!/usr/bin/env node
// Compares what the addon registers with what lib/binding/native.ts types: the exports in
// native/addon.cc against `nativeExportNames`, and each wrapped class's methods (DefineClass in
// native/*.cc) against its interface (instance members in Native<Class>, static ones in
// NativeAddon's `<Class>: { ... }`). Reads both as text, so it needs no build: run in CI before the tests.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './build-common.mjs';

const nativeDir = join(repoRoot, 'native');
const ts = readFileSync(join(repoRoot, 'lib', 'binding', 'native.ts'), 'utf8');
const problems = [];

function compare(what, registered, typed) {
  const untyped = registered.filter((n) => !typed.includes(n));
  const unregistered = typed.filter((n) => !registered.includes(n));
  if (untyped.length || unregistered.length || registered.length === 0) {
    problems.push(`${what}: untyped ${JSON.stringify(untyped)}, not registered ${JSON.stringify(unregistered)}`);
  }
}

/** The member names of a TS block `header {` ... closing brace at the header's indentation. */
function tsMembers(header, indent) {
  const start = ts.indexOf(header);
  if (start < 0) return [];
  const end = ts.indexOf(`\n${indent}}`, start);
  const body = ts.slice(start + header.length, end);
  const member = new RegExp(`^${indent}  (?:readonly )?([A-Za-z]+)[(:?]`, 'gm');
  return [...body.matchAll(member)].map((m) => m[1]);
}

const addon = readFileSync(join(nativeDir, 'addon.cc'), 'utf8');
const exported = [...addon.matchAll(/Instance(?:Value|Method<[^>]+>)\("([A-Za-z]+)"/g)].map((m) => m[1]);
const block = ts.match(/nativeExportNames = \[([\s\S]*?)\]/);
compare(
  'addon exports (native/addon.cc vs nativeExportNames)',
  exported,
  block ? [...block[1].matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]) : [],
);

let classes = 0;
for (const file of readdirSync(nativeDir)
  .filter((f) => f.endsWith('.cc'))
  .sort()) {
  const cc = readFileSync(join(nativeDir, file), 'utf8');
  for (const m of cc.matchAll(/DefineClass\(\s*env,\s*"([A-Za-z]+)",\s*\{([\s\S]*?)\}\)/g)) {
    const [, name, list] = m;
    const members = (kind) => [...list.matchAll(new RegExp(`${kind}<[^>]+>\\("([A-Za-z]+)"`, 'g'))].map((x) => x[1]);
    compare(
      `${name} instance members (native/${file} vs Native${name})`,
      [...members('InstanceMethod'), ...members('InstanceAccessor')],
      tsMembers(`export interface Native${name} {`, ''),
    );
    const statics = members('StaticMethod');
    if (statics.length) compare(`${name} static methods (native/${file} vs NativeAddon.${name})`, statics, tsMembers(`  ${name}: {`, '  '));
    classes++;
  }
}

if (problems.length || classes === 0) {
  console.error(`native exports and lib/binding/native.ts disagree:\n  ${problems.join('\n  ') || 'no DefineClass found in native/'}`);
  process.exit(1);
}
console.log(`check-exports: ${exported.length} exports and ${classes} classes' members typed in lib/binding/native.ts`);

// The docs are checked against the source so that the two cannot drift: every public name read
// from lib/ (by parsing it with the TypeScript compiler, not from a hand list) must appear in
// docs/api.md, every error and warning code in docs/troubleshooting.md, and every relative link
// in the docs must resolve. Which file under lib/ a symbol lives in does not matter.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const sources = tsFiles('lib').map((path) => ts.createSourceFile(path, read(path), ts.ScriptTarget.Latest, true));

type Declaration = ts.InterfaceDeclaration | ts.TypeAliasDeclaration | ts.ClassDeclaration | ts.VariableDeclaration;
/** Every top-level interface, type alias, class and const of lib/, by name (a name declared twice keeps both). */
const declarations = new Map<string, Declaration[]>();
for (const source of sources) {
  for (const statement of source.statements) {
    const named: Declaration[] = [];
    if (ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement) || ts.isClassDeclaration(statement))
      named.push(statement);
    if (ts.isVariableStatement(statement)) named.push(...statement.declarationList.declarations);
    for (const declaration of named) {
      if (!declaration.name || !ts.isIdentifier(declaration.name)) continue;
      const list = declarations.get(declaration.name.text) ?? [];
      list.push(declaration);
      declarations.set(declaration.name.text, list);
    }
  }
}

function declared<T extends Declaration>(name: string, is: (node: ts.Node) => node is T): T[] {
  return (declarations.get(name) ?? []).filter(is);
}

const memberName = (member: ts.TypeElement | ts.ClassElement): string | undefined => {
  if (!member.name) return undefined;
  if (ts.isIdentifier(member.name) || ts.isStringLiteral(member.name) || ts.isPrivateIdentifier(member.name)) return member.name.text;
  if (ts.isComputedPropertyName(member.name)) return `[${member.name.expression.getText()}]`;
  return undefined;
};

const utilityTypes = new Set(['Readonly', 'Partial', 'Required', 'NonNullable']);
const literalArgs = (node: ts.TypeNode | undefined): string[] => {
  if (!node) return [];
  if (ts.isUnionTypeNode(node)) return node.types.flatMap(literalArgs);
  return ts.isLiteralTypeNode(node) && ts.isStringLiteral(node.literal) ? [node.literal.text] : [];
};

/**
 * The property names of a type as a user sees them: own members, inherited ones (through
 * `extends`, Omit/Pick, aliases), and the members of object types nested in them. Named types are
 * followed across lib/ once each; `seen` stops cycles.
 */
function membersOfType(node: ts.TypeNode | undefined, seen: Set<string>): Set<string> {
  const out = new Set<string>();
  if (!node) return out;
  const add = (names: Iterable<string>) => {
    for (const n of names) out.add(n);
  };
  if (ts.isTypeLiteralNode(node)) {
    for (const member of node.members) {
      const name = memberName(member);
      if (name) out.add(name);
      if (ts.isPropertySignature(member)) add(membersOfType(member.type, seen));
    }
  } else if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) {
    for (const t of node.types) add(membersOfType(t, seen));
  } else if (ts.isArrayTypeNode(node)) {
    add(membersOfType(node.elementType, seen));
  } else if (ts.isParenthesizedTypeNode(node)) {
    add(membersOfType(node.type, seen));
  } else if (ts.isTypeReferenceNode(node)) {
    const name = node.typeName.getText();
    const args = node.typeArguments ?? [];
    if (name === 'Omit' || name === 'Pick') {
      const inner = membersOfType(args[0], seen);
      const keys = new Set(literalArgs(args[1]));
      for (const n of inner) if ((name === 'Omit') !== keys.has(n)) out.add(n);
    } else if (utilityTypes.has(name)) {
      add(membersOfType(args[0], seen));
    } else if (name === 'Array' || name === 'ReadonlyArray' || name === 'Promise') {
      add(membersOfType(args[0], seen));
    } else {
      add(membersOfNamed(name, seen));
    }
  }
  return out;
}

function membersOfNamed(name: string, seen: Set<string>): Set<string> {
  const out = new Set<string>();
  if (seen.has(name)) return out;
  seen.add(name);
  for (const declaration of declarations.get(name) ?? []) {
    if (ts.isInterfaceDeclaration(declaration)) {
      for (const member of declaration.members) {
        const n = memberName(member);
        if (n) out.add(n);
        if (ts.isPropertySignature(member)) for (const m of membersOfType(member.type, seen)) out.add(m);
      }
      for (const clause of declaration.heritageClauses ?? []) {
        for (const t of clause.types) {
          const base = t.expression.getText();
          if (base === 'Omit' || base === 'Pick') {
            const inner = membersOfType(t.typeArguments?.[0], seen);
            const keys = new Set(literalArgs(t.typeArguments?.[1]));
            for (const n of inner) if ((base === 'Omit') !== keys.has(n)) out.add(n);
          } else {
            for (const n of membersOfNamed(base, seen)) out.add(n);
          }
        }
      }
    } else if (ts.isTypeAliasDeclaration(declaration)) {
      for (const n of membersOfType(declaration.type, seen)) out.add(n);
    }
  }
  return out;
}

const hasModifier = (node: ts.Node, kind: ts.SyntaxKind) =>
  ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);
const isInternal = (node: ts.Node) => ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal');

interface PublicMember {
  name: string;
  isStatic: boolean;
  /** Option names of its parameters' inline object types (`{ threads?: number }`, `GenerateOptions & { template?: string }`). */
  inlineOptions: string[];
}

function publicMembers(className: string): PublicMember[] {
  const classes = declared(className, ts.isClassDeclaration);
  expect(classes, `class ${className} in lib/`).toHaveLength(1);
  const members: PublicMember[] = [];
  for (const member of classes[0]!.members) {
    if (ts.isConstructorDeclaration(member) || ts.isClassStaticBlockDeclaration(member)) continue;
    const name = memberName(member);
    if (!name || name.startsWith('#') || (member.name && ts.isPrivateIdentifier(member.name))) continue;
    if (hasModifier(member, ts.SyntaxKind.PrivateKeyword) || hasModifier(member, ts.SyntaxKind.ProtectedKeyword) || isInternal(member))
      continue;
    const inlineOptions = new Set<string>();
    if (ts.isMethodDeclaration(member)) {
      for (const parameter of member.parameters) {
        const collect = (node: ts.TypeNode | undefined) => {
          if (!node) return;
          if (ts.isTypeLiteralNode(node)) {
            for (const m of node.members) {
              const n = memberName(m);
              if (n) inlineOptions.add(n);
            }
          }
          if (ts.isIntersectionTypeNode(node) || ts.isUnionTypeNode(node)) node.types.forEach(collect);
        };
        collect(parameter.type);
      }
    }
    members.push({ name, isStatic: hasModifier(member, ts.SyntaxKind.StaticKeyword), inlineOptions: [...inlineOptions] });
  }
  return members;
}

/** Names exported from the package entry (lib/index.ts), types included. */
function entryExports(): string[] {
  const entry = sources.find((s) => relative(root, join(root, s.fileName)) === join('lib', 'index.ts'));
  expect(entry, 'lib/index.ts').toBeDefined();
  const names: string[] = [];
  for (const statement of entry!.statements) {
    if (ts.isExportDeclaration(statement) && statement.exportClause && ts.isNamedExports(statement.exportClause)) {
      names.push(...statement.exportClause.elements.map((e) => e.name.text));
    }
  }
  return names;
}

/** The string value of a const, or of a string literal, anywhere in lib/. */
function stringValue(node: ts.Expression): string | undefined {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isAsExpression(node)) return stringValue(node.expression);
  if (ts.isIdentifier(node)) {
    for (const d of declared(node.text, ts.isVariableDeclaration)) if (d.initializer) return stringValue(d.initializer);
  }
  if (ts.isPropertyAccessExpression(node)) {
    for (const d of declared(node.expression.getText(), ts.isVariableDeclaration)) {
      let init = d.initializer;
      while (init && ts.isAsExpression(init)) init = init.expression;
      if (init && ts.isObjectLiteralExpression(init)) {
        for (const p of init.properties)
          if (ts.isPropertyAssignment(p) && p.name.getText() === node.name.text) return stringValue(p.initializer);
      }
    }
  }
  return undefined;
}

function errorCodes(): string[] {
  const codes: string[] = [];
  for (const d of declared('ErrorCode', ts.isVariableDeclaration)) {
    let init = d.initializer;
    while (init && ts.isAsExpression(init)) init = init.expression;
    if (!init || !ts.isObjectLiteralExpression(init)) continue;
    for (const p of init.properties) if (ts.isPropertyAssignment(p)) codes.push(stringValue(p.initializer)!);
  }
  return codes;
}

/** Every `code: X` in lib/ whose value is a CUDA_LLAMA_ string: the codes of process warnings. */
function warningCodes(): string[] {
  const codes = new Set<string>();
  const visit = (node: ts.Node) => {
    if (ts.isPropertyAssignment(node) && node.name.getText() === 'code') {
      const value = stringValue(node.initializer);
      if (value?.startsWith('CUDA_LLAMA_')) codes.add(value);
    }
    if (ts.isShorthandPropertyAssignment(node) && node.name.text === 'code') {
      const value = stringValue(node.name);
      if (value?.startsWith('CUDA_LLAMA_')) codes.add(value);
    }
    ts.forEachChild(node, visit);
  };
  sources.forEach(visit);
  return [...codes];
}

// ---- markdown ----

/** The text outside fenced code blocks. */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

const headings = (markdown: string) =>
  prose(markdown)
    .split('\n')
    .filter((l) => /^#{1,6} /.test(l));
const tableRows = (markdown: string) =>
  prose(markdown)
    .split('\n')
    .filter((l) => l.startsWith('|'));
const code = (name: string) => `\`${name}\``;

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/^#+ /, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const h of headings(markdown)) {
    const base = slug(h);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

const api = read('docs/api.md');
const troubleshooting = read('docs/troubleshooting.md');

describe('docs/api.md covers the public API read from lib/', () => {
  it('names every export of lib/index.ts', () => {
    const names = entryExports();
    expect(names.length).toBeGreaterThan(10);
    expect(names.filter((n) => !api.includes(code(n)))).toEqual([]);
  });

  it('has a heading for every public method and getter of Llama and LlamaModel', () => {
    const heads = headings(api).join('\n');
    const llama = publicMembers('Llama');
    const model = publicMembers('LlamaModel');
    expect(llama.map((m) => m.name)).toContain('load');
    expect(model.map((m) => m.name)).toContain('generate');
    const missing = [
      ...llama.map((m) => (m.isStatic ? `Llama.${m.name}` : `llama.${m.name}`)),
      ...model.map((m) => (m.isStatic ? `LlamaModel.${m.name}` : m.name.startsWith('[') ? `model${m.name}` : `model.${m.name}`)),
    ].filter((n) => !heads.includes(n));
    expect(missing).toEqual([]);
  });

  it('has a table row for every option, with the option in backticks', () => {
    const rows = tableRows(api).join('\n');
    const optionTypes = ['LoadOptions', 'GenerateOptions', 'BatchGenerateOptions', 'ChatTemplateOptions', 'TuneOptions'];
    const options = new Map<string, Set<string>>();
    for (const type of optionTypes) {
      expect(declarations.has(type), `${type} is declared in lib/`).toBe(true);
      options.set(type, membersOfNamed(type, new Set()));
    }
    for (const member of [...publicMembers('Llama'), ...publicMembers('LlamaModel')]) {
      if (member.inlineOptions.length) options.set(`${member.name}()`, new Set(member.inlineOptions));
    }
    expect(options.get('LoadOptions')!.size).toBeGreaterThan(10);
    const missing = [...options].flatMap(([type, names]) => [...names].filter((n) => !rows.includes(code(n))).map((n) => `${type}.${n}`));
    expect(missing).toEqual([]);
  });

  it('names every field of the types the public API returns', () => {
    const returned = [
      'GenerateResult',
      'GenerationTimings',
      'BatchResult',
      'BatchTimings',
      'ModelInfo',
      'ContextInfo',
      'LayerReport',
      'LoadPlan',
      'BuildReport',
      'TuneResult',
      'TuneCandidate',
      'GpuTelemetry',
      'PlacementProblem',
      'CpuOpsOnGpuMemory',
    ];
    const missing = returned.flatMap((type) => {
      expect(declarations.has(type), `${type} is declared in lib/`).toBe(true);
      return [...membersOfNamed(type, new Set())].filter((n) => !api.includes(code(n))).map((n) => `${type}.${n}`);
    });
    expect(missing).toEqual([]);
  });
});

describe('docs/troubleshooting.md covers every error and warning code in lib/', () => {
  const keyed = [...headings(troubleshooting), ...tableRows(troubleshooting)].join('\n');

  it('has a heading or row for every ErrorCode', () => {
    const codes = errorCodes();
    expect(codes).toContain('ERR_NO_BINARY');
    expect(codes.filter((c) => !keyed.includes(c))).toEqual([]);
  });

  it('has a heading or row for every process warning code', () => {
    const codes = warningCodes();
    expect(codes).toEqual(expect.arrayContaining(['CUDA_LLAMA_CPU_FALLBACK', 'CUDA_LLAMA_BINARY_FALLBACK']));
    expect(codes.filter((c) => !keyed.includes(c))).toEqual([]);
  });
});

describe('the docs hold together', () => {
  const pages = [
    'README.md',
    'CHANGELOG.md',
    'CONTRIBUTING.md',
    'test/bench/README.md',
    ...readdirSync(join(root, 'test/bench/results/latest'))
      .filter((n) => n.endsWith('.md'))
      .map((n) => `test/bench/results/latest/${n}`),
    ...readdirSync(join(root, 'docs'))
      .filter((n) => n.endsWith('.md'))
      .map((n) => `docs/${n}`),
  ];

  it('resolves every relative link and anchor', () => {
    const broken: string[] = [];
    for (const page of pages) {
      if (!existsSync(join(root, page))) continue;
      const text = prose(read(page)).replace(/`[^`\n]*`/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        if (/^[a-z]+:/i.test(target!)) continue;
        const [file, anchor] = target!.split('#') as [string, string | undefined];
        const path = file === '' ? page : join(dirname(page), decodeURIComponent(file));
        if (!existsSync(join(root, path))) {
          broken.push(`${page}: ${target} (no ${path})`);
          continue;
        }
        if (anchor && path.endsWith('.md') && !anchors(read(path)).has(anchor)) broken.push(`${page}: ${target} (no heading #${anchor})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('keeps the README short, with the commands CI runs', () => {
    const readme = read('README.md');
    expect(Buffer.byteLength(readme)).toBeLessThanOrEqual(12000);
    for (const command of ['npm install', 'npm test', 'npm run demo']) expect(readme).toContain(command);
  });

  it('has no dated run pages in docs/', () => {
    expect(readdirSync(join(root, 'docs')).filter((n) => /(20[0-9]{2}-[0-9]{2}|paired-)/.test(n))).toEqual([]);
  });
});

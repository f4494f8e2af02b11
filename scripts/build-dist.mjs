#!/usr/bin/env node
// Builds the library from one TypeScript source, for `npm run prepare`:
//   node scripts/build-dist.mjs [tsconfig.json] [tsconfig.cjs.json]
// tsconfig.json     -> dist/      ESM (the package is "type": "module"), CLI included
// tsconfig.cjs.json -> dist/cjs/  CommonJS copy of the four public entry points
//                                 and what they import, so `require('zcopy')`
//                                 works on every Node >= 20, not only with
//                                 require(esm) (20.19+)
//
// It is tsc (same options, same diagnostics) with two emit transformers:
// - CommonJS only: the one ESM-only construct the library uses,
//   `import.meta.url` (src/native.ts finds the package root and loads the
//   addon with it), becomes `require('node:url').pathToFileURL(__filename).href`.
//   TS1343/TS1470 (import.meta in a CommonJS file) are expected there.
// - Declarations: `import net from 'node:net'` becomes
//   `import * as net from 'node:net'` (the same types) so the .d.ts files type
//   check in consumer projects without esModuleInterop or
//   allowSyntheticDefaultImports, even with skipLibCheck off.
// Each config's outDir is emptied first (all of them, before the first
// build), so a file left by a module that moved or went away is never
// packed: tsc only ever adds and overwrites.
// `npx tsc -p tsconfig.json` still builds a working dist/ for development.
import { createRequire, isBuiltin } from 'node:module';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, parse, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ts = createRequire(join(root, 'package.json'))('typescript');
const IMPORT_META = new Set([1343, 1470]);

const args = process.argv.slice(2);
const configs = (args.length ? args : ['tsconfig.json', 'tsconfig.cjs.json']).map((c) => readConfig(resolve(root, c)));
// Cleared before any build: dist/cjs lies inside dist/, so clearing per
// build would let the ESM build remove a CommonJS build made before it.
for (const parsed of configs) clean(parsed.options.outDir);
for (const parsed of configs) build(parsed);

function readConfig(configPath) {
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  if (error) fail([error]);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, dirname(configPath), undefined, configPath);
  if (parsed.errors.length) fail(parsed.errors);
  return parsed;
}

/** Empties a build's outDir; refuses one that would hold the sources (none, the package root or above it). */
function clean(outDir) {
  if (!outDir) {
    process.stderr.write('build-dist: a config without outDir would emit beside the sources; refusing\n');
    process.exit(1);
  }
  const dir = resolve(outDir);
  if (dir === parse(dir).root || dir === root || root.startsWith(dir + sep)) {
    process.stderr.write(`build-dist: will not empty ${dir} (the package root or above it); set outDir to a folder of its own\n`);
    process.exit(1);
  }
  rmSync(dir, { recursive: true, force: true });
}

function build(parsed) {
  const cjs = parsed.options.module === ts.ModuleKind.CommonJS;
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options, projectReferences: parsed.projectReferences });
  const result = program.emit(undefined, undefined, undefined, false, {
    before: cjs ? [importMetaUrl] : [],
    afterDeclarations: [namespaceBuiltins],
  });
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics].filter((d) => !(cjs && IMPORT_META.has(d.code)));
  if (diagnostics.length) fail(diagnostics);
  if (cjs) {
    // Files under dist/cjs are CommonJS whatever the package's "type" says.
    mkdirSync(parsed.options.outDir, { recursive: true });
    writeFileSync(join(parsed.options.outDir, 'package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');
  }
  console.log(`zcopy: ${cjs ? 'CommonJS' : 'ESM'} build in ${parsed.options.outDir}`);
}

function importMetaUrl(context) {
  const f = context.factory;
  const visit = (node) => {
    if (ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) && node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && node.name.text === 'url') {
      const req = f.createCallExpression(f.createIdentifier('require'), undefined, [f.createStringLiteral('node:url')]);
      const toUrl = f.createCallExpression(f.createPropertyAccessExpression(req, 'pathToFileURL'), undefined, [f.createIdentifier('__filename')]);
      return f.createPropertyAccessExpression(toUrl, 'href');
    }
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword) {
      throw new Error(`build-dist: only import.meta.url can be built as CommonJS (${node.getSourceFile().fileName})`);
    }
    return ts.visitEachChild(node, visit, context);
  };
  return (sf) => ts.visitNode(sf, visit);
}

function namespaceBuiltins(context) {
  const f = context.factory;
  return (sf) => {
    if (!ts.isSourceFile(sf)) return sf;
    const statements = sf.statements.flatMap((s) => {
      const clause = ts.isImportDeclaration(s) ? s.importClause : undefined;
      if (!clause?.name || !ts.isStringLiteral(s.moduleSpecifier) || !isBuiltin(s.moduleSpecifier.text)) return [s];
      const spec = f.createStringLiteral(s.moduleSpecifier.text, true);
      const out = [f.createImportDeclaration(undefined, f.createImportClause(clause.isTypeOnly, undefined, f.createNamespaceImport(clause.name)), spec)];
      if (clause.namedBindings) out.push(f.createImportDeclaration(undefined, f.createImportClause(clause.isTypeOnly, undefined, clause.namedBindings), spec));
      return out;
    });
    return f.updateSourceFile(sf, statements);
  };
}

function fail(diags) {
  const host = { getCanonicalFileName: (x) => x, getCurrentDirectory: () => root, getNewLine: () => '\n' };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(diags, host));
  process.exit(1);
}

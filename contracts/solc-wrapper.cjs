#!/usr/bin/env node
// Makes solc-js (npm `solc`, pinned in the repo's package.json) look like the native solc CLI to forge.
// forge only needs two entry points: `--version` (it parses the last line, "Version: X.Y.Z+commit.H...")
// and `--standard-json` (input on stdin, output on stdout). No native solc exists for this machine, and
// forge cannot download one offline, so this wrapper is how `forge build` compiles. See shared TOOLCHAIN.md.
'use strict';
const path = require('path');
const fs = require('fs');

// The repo root's node_modules, whether we run from contracts/ or elsewhere.
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));
const args = process.argv.slice(2);

if (args.includes('--version')) {
  // solc-js reports an Emscripten build; forge only accepts the native spelling.
  const version = solc.version().replace('Emscripten.clang', 'Linux.g++');
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${version}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  console.error('solc-wrapper.cjs: only --version and --standard-json are supported');
  process.exit(2);
}

const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const roots = [
  option('--base-path'),
  ...args.flatMap((a, i) => (a === '--include-path' ? [args[i + 1]] : [])),
  process.cwd(),
].filter(Boolean);

// Import callback: resolve a source unit against the base path, include paths, then the cwd.
const findImport = (p) => {
  for (const root of roots) {
    const file = path.resolve(root, p);
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, 'utf8') };
  }
  return { error: `not found: ${p}` };
};

process.stdout.write(solc.compile(fs.readFileSync(0, 'utf8'), { import: findImport }));

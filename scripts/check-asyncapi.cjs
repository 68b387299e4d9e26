// Validates AsyncAPI documents with the AsyncAPI project's own parser.
//   node scripts/check-asyncapi.cjs FILE...
// The parser is found in $ASYNCAPI_PARSER_DIR (scripts/asyncapi-parser.sh installs it).
// Prints one line per document; exits 1 if any has an error.
const { createRequire } = require('module');
const fs = require('fs');
const path = require('path');

const dir = process.env.ASYNCAPI_PARSER_DIR || '/var/cache/switchboard/asyncapi';
const { Parser } = createRequire(path.join(dir, 'package.json'))('@asyncapi/parser');

async function main() {
  const parser = new Parser();
  let failed = false;
  for (const file of process.argv.slice(2)) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'));
    // Severity 0 is an error; warnings and hints do not fail the check.
    const errors = diagnostics.filter((d) => d.severity === 0);
    if (!document || errors.length > 0) {
      failed = true;
      console.log(`INVALID ${file}`);
      for (const e of errors) {
        console.log(`  ${e.code}: ${e.message} at /${(e.path || []).join('/')}`);
      }
    } else {
      const ops = document.operations().length;
      const warnings = diagnostics.filter((d) => d.severity === 1).length;
      console.log(`valid ${file}: ${ops} operation(s), ${warnings} warning(s)`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});

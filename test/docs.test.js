'use strict';
// The documentation: the README stays a front page with the quick start
// first, every relative link and image in the markdown resolves (anchors to a
// heading of the file they point into, by GitHub's rules), each page under
// docs/ opens with its title and a way back to the README, and docs/api.md is
// what scripts/make-api-docs.js makes from the current dist/*.d.ts.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const rel = (file) => path.relative(ROOT, file);

function markdownFiles(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return markdownFiles(full);
      return entry.name.endsWith('.md') ? [full] : [];
    })
    .sort();
}

const DOCS = markdownFiles(path.join(ROOT, 'docs'));
const CHECKED = [path.join(ROOT, 'README.md'), ...DOCS, path.join(ROOT, 'demo', 'README.md')];

/** The lines of a markdown text with fenced code blocks blanked out (so line numbers stay). */
function proseLines(markdown) {
  let fence = null;
  return markdown.split('\n').map((line) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line);
    if (marker) {
      if (fence === null) fence = marker[1];
      else if (marker[1][0] === fence[0] && marker[1].length >= fence.length) fence = null;
      return '';
    }
    return fence === null ? line : '';
  });
}

/** GitHub's anchor for a heading: its text, lowercased, punctuation but - and _ dropped, spaces to -. */
function slug(heading) {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

const anchorCache = new Map();
/** The anchors of a markdown file: its headings' slugs (repeats numbered -1, -2, ...) and HTML ids. */
function anchorsOf(file) {
  if (anchorCache.has(file)) return anchorCache.get(file);
  const anchors = new Set();
  const seen = new Map();
  for (const line of proseLines(fs.readFileSync(file, 'utf8'))) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (heading) {
      const base = slug(heading[1]);
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const id of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(id[1]);
  }
  anchorCache.set(file, anchors);
  return anchors;
}

/** [line number, target] of every link and image outside code: inline, reference definitions, HTML. */
function linksOf(markdown) {
  const links = [];
  proseLines(markdown).forEach((line, index) => {
    const text = line.replace(/(`+)[^`]*?\1/g, '');
    const found = [
      ...[...text.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]),
      ...[...text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/g)].map((m) => m[1]),
      ...[...text.matchAll(/<(?:a|img)\s[^>]*?(?:href|src)="([^"]*)"/g)].map((m) => m[1]),
    ];
    for (const target of found) links.push([index + 1, target]);
  });
  return links;
}

/** What is wrong with one link from `file`, or null. */
function brokenLink(file, target) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // http(s), mailto: not checked here
  if (target === '') return 'an empty link';
  const hash = target.indexOf('#');
  const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
  const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
  const resolved = pathPart === '' ? file : path.resolve(path.dirname(file), pathPart);
  if (!resolved.startsWith(ROOT + path.sep)) return `${pathPart} is outside the repository`;
  if (!fs.existsSync(resolved)) return `${rel(resolved)} does not exist`;
  if (anchor !== null && resolved.endsWith('.md')) {
    if (!anchorsOf(resolved).has(anchor)) return `${rel(resolved)} has no heading with the anchor #${anchor}`;
  }
  return null;
}

describe('documentation', () => {
  describe('the README', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

    it('is a front page: at most 10 KB', () => {
      const bytes = Buffer.byteLength(readme);
      assert.ok(bytes <= 10240, `README.md has ${bytes} bytes; the reference belongs in docs/`);
    });

    it('gives the two quick-start commands in its first 40 lines: the demo, then the tests', () => {
      const head = readme.split('\n').slice(0, 40);
      const demo = head.findIndex((line) => /^sudo apt-get .*&& npm install && npx torch-cka demo$/.test(line));
      const tests = head.findIndex((line) => /^sudo apt-get install -y chromium && npm test$/.test(line));
      assert.ok(demo >= 0, 'no line ending with `npm install && npx torch-cka demo` in the first 40 lines');
      assert.ok(tests > demo, 'no line with `... && npm test` after the demo line in the first 40 lines');
    });
  });

  describe('links', () => {
    it('the checker follows GitHub: slugs, repeated headings, code left out', () => {
      assert.equal(slug('The plain C++ core'), 'the-plain-c-core');
      assert.equal(slug('Many processes (workload D)'), 'many-processes-workload-d');
      assert.equal(slug('`cka.compare()`'), 'ckacompare');
      assert.equal(slug('`NORMALIZE_PRESETS`'), 'normalize_presets');
      assert.equal(
        slug('Distributed runs (`compare(..., { distributed })`, `torch-cka launch`)'),
        'distributed-runs-compare--distributed--torch-cka-launch',
      );
      const sample = [
        '[a](x.md) `[b](not-a-link.md)` ![c](img.png "title") [d](https://example.com) [e](#here)',
        '```md',
        '[f](inside-a-fence.md)',
        '```',
        '[g]: ref.md',
        '<img src="pic.png">',
      ].join('\n');
      assert.deepEqual(linksOf(sample), [
        [1, 'x.md'],
        [1, 'img.png'],
        [1, 'https://example.com'],
        [1, '#here'],
        [5, 'ref.md'],
        [6, 'pic.png'],
      ]);
    });

    for (const file of CHECKED) {
      it(`every relative link and image in ${rel(file)} resolves`, () => {
        const broken = linksOf(fs.readFileSync(file, 'utf8'))
          .map(([line, target]) => [line, target, brokenLink(file, target)])
          .filter(([, , problem]) => problem !== null)
          .map(([line, target, problem]) => `${rel(file)}:${line}: (${target}): ${problem}`);
        assert.deepEqual(broken, []);
      });
    }
  });

  describe('the pages under docs/', () => {
    for (const file of DOCS) {
      it(`${rel(file)} opens with its title, what it covers, and a link back to the README`, () => {
        const text = fs.readFileSync(file, 'utf8').replace(/^\s*(<!--[\s\S]*?-->\s*)*/, '');
        const [title, blank, ...rest] = text.split('\n');
        assert.match(title, /^# \S/, 'the first line is not a # title');
        assert.equal(blank, '');
        const firstParagraph = rest.join('\n').split(/\n\s*\n/)[0];
        assert.ok(firstParagraph.length > 20, 'no sentence after the title');
        assert.match(text, /\]\((\.\.\/)+README\.md\)/, 'no link back to the README');
      });
    }
  });

  describe('docs/api.md', () => {
    it('is what scripts/make-api-docs.js makes from dist/*.d.ts (run it after changing the TSDoc)', () => {
      const run = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'make-api-docs.js'), '--check'], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    });

    it('documents every export of the package', () => {
      const api = fs.readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');
      const names = Object.keys(require('..')).filter((name) => name !== 'default');
      assert.ok(names.length > 20);
      const missing = names.filter((name) => !api.includes(`### \`${name}\``));
      assert.deepEqual(missing, [], 'exports without a section in docs/api.md');
    });
  });
});

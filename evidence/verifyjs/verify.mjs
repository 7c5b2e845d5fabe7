// An independent verifier of leaseguard's evidence chain, written from
// docs/evidence.md alone (no code shared with leaseguard), for Node.js 18+
// and nothing else.
//
//   node verify.mjs FILE.jsonl              verify a chain: one event per line,
//                                           from chainseq 1; prints a JSON report,
//                                           exit 0 intact, 1 broken, 2 unusable input
//   node verify.mjs --canonical FILE.jsonl  print, per line, the canonical encoding
//                                           (without a top-level "hash") and its hash
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const GENESIS = "sha256:" + "0".repeat(64);

// parse reads one JSON text, keeping numbers verbatim (as {num: "1.50"})
// and refusing duplicate keys. Invalid UTF-8 has already become U+FFFD
// (the TextDecoder below is not fatal).
function parse(text) {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
  const fail = (m) => { throw new Error(`${m} at offset ${i}`); };
  const str = () => {
    if (text[i] !== '"') fail("expected a string");
    i++;
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text[i++];
      if (c === '"') return out;
      if (c < " ") fail("raw control character in a string");
      if (c !== "\\") { out += c; continue; }
      const e = text[i++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e in simple) { out += simple[e]; continue; }
      if (e !== "u" || !/^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4))) fail("bad escape");
      out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16));
      i += 4;
    }
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = new Map();
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        const k = str();
        if (obj.has(k)) fail(`duplicate key ${JSON.stringify(k)}`);
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        obj.set(k, value());
        ws();
        const d = text[i++];
        if (d === "}") return obj;
        if (d !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        const d = text[i++];
        if (d === "]") return arr;
        if (d !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    for (const lit of ["true", "false", "null"]) {
      if (text.startsWith(lit, i)) { i += lit.length; return { lit }; }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (!m) fail("unexpected character");
    i += m[0].length;
    return { num: m[0] };
  };
  const v = value();
  ws();
  if (i !== text.length) fail("data after the value");
  return v;
}

// utf8 is how keys are compared and strings written: lone surrogates
// become U+FFFD, as the specification says.
const utf8 = (s) => Buffer.from(s, "utf8");

function encodeString(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (cp < 0x20) out += "\\u00" + cp.toString(16).padStart(2, "0");
    else if (cp === 0x2028) out += "\\u2028";
    else if (cp === 0x2029) out += "\\u2029";
    else out += ch;
  }
  return out + '"';
}

function canonical(v) {
  if (typeof v === "string") return encodeString(v);
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v instanceof Map) {
    const keys = [...v.keys()].sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
    return "{" + keys.map((k) => encodeString(k) + ":" + canonical(v.get(k))).join(",") + "}";
  }
  if ("num" in v) return v.num;
  return v.lit;
}

function hashOf(doc) {
  const rest = new Map(doc);
  rest.delete("hash");
  const text = canonical(rest);
  return { canonical: text, hash: "sha256:" + createHash("sha256").update(utf8(text)).digest("hex") };
}

const scalar = (doc, k) => {
  const v = doc.get(k);
  if (v === undefined) return undefined;
  if (typeof v === "string") return v;
  return v.num ?? v.lit;
};

function verify(lines) {
  const report = { checked: 0, duplicates: 0, last_seq: 0, last_hash: GENESIS };
  let lastID = "";
  const brk = (seq, id, reason) => { report.first_break = { seq, id, reason }; return report; };
  for (const { n, text } of lines) {
    let doc;
    try { doc = parse(text); } catch (e) { return brk(report.last_seq + 1, "", `line ${n}: ${e.message}`); }
    if (!(doc instanceof Map)) return brk(report.last_seq + 1, "", `line ${n}: not an object`);
    const id = scalar(doc, "id") ?? "";
    const seq = Number(scalar(doc, "chainseq") ?? 0);
    const claimed = scalar(doc, "hash");
    if (!(seq > 0) || !claimed) return brk(report.last_seq + 1, id, `line ${n}: not sealed`);
    if (hashOf(doc).hash !== claimed) return brk(seq, id, `line ${n}: hash does not match the content`);
    if (report.checked > 0 && seq === report.last_seq && id === lastID && claimed === report.last_hash) {
      report.duplicates++;
      continue;
    }
    if (seq !== report.last_seq + 1) return brk(seq, id, `line ${n}: chainseq ${seq} where ${report.last_seq + 1} was expected`);
    if (scalar(doc, "prevhash") !== report.last_hash) return brk(seq, id, `line ${n}: prevhash does not link`);
    report.checked++;
    report.last_seq = seq;
    report.last_hash = claimed;
    lastID = id;
  }
  return report;
}

function main(argv) {
  const canonicalOnly = argv[0] === "--canonical";
  const file = canonicalOnly ? argv[1] : argv[0];
  if (!file) {
    process.stderr.write("usage: node verify.mjs [--canonical] FILE.jsonl\n");
    return 2;
  }
  const text = new TextDecoder("utf-8").decode(readFileSync(file));
  const lines = text.split("\n").map((t, k) => ({ n: k + 1, text: t.trim() }))
    .filter((l) => l.text.startsWith("{"));
  if (canonicalOnly) {
    for (const l of lines) process.stdout.write(JSON.stringify(hashOf(parse(l.text))) + "\n");
    return 0;
  }
  const report = verify(lines);
  process.stdout.write(JSON.stringify(report) + "\n");
  return report.first_break ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

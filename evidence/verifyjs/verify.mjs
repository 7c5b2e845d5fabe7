// An independent verifier of leaseguard's evidence chain, written from
// docs/evidence.md alone (no code shared with leaseguard), for Node.js 18+
// and nothing else.
//
//   node verify.mjs [--key BASE64]... [--require-checkpoint] FILE.jsonl
//                                           verify a chain: one event per line,
//                                           from chainseq 1, and its checkpoints'
//                                           signatures with the evidence public
//                                           keys given; prints a JSON report,
//                                           exit 0 intact, 1 broken (or, with
//                                           --require-checkpoint, not every event
//                                           confirmed by a checked checkpoint),
//                                           2 unusable input
//   node verify.mjs --canonical FILE.jsonl  print, per line, the canonical encoding
//                                           (without a top-level "hash") and its hash
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
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

const CHECKPOINT = "io.leaseguard.checkpoint.v1";

// evidenceKeys maps key id (first 16 hex characters of the SHA-256 of the
// 32 raw key bytes) to a public key, from standard base64.
function evidenceKeys(b64s) {
  const keys = new Map();
  for (const b64 of b64s) {
    const raw = Buffer.from(b64, "base64");
    if (raw.length !== 32) throw new Error(`--key ${b64}: not 32 bytes of standard base64`);
    const id = createHash("sha256").update(raw).digest("hex").slice(0, 16);
    keys.set(id, createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" }));
  }
  return keys;
}

// checkpointProblem says why a checkpoint event at seq (its prevhash
// prev) does not hold, or returns its fields when it does.
function checkpointProblem(doc, seq, prev, keys) {
  const data = doc.get("data");
  const u = data instanceof Map ? data.get("unmapped") : undefined;
  if (!(u instanceof Map)) return { problem: "checkpoint without data.unmapped" };
  const cp = {};
  for (const k of ["covers_chainseq", "covers_hash", "signed_at", "key_id", "algorithm", "signature"]) cp[k] = scalar(u, k);
  if (Number(cp.covers_chainseq) !== seq - 1 || cp.covers_hash !== prev) {
    return { problem: `checkpoint covers seq ${cp.covers_chainseq} (${cp.covers_hash}), not the event before it` };
  }
  if (keys.size === 0) return { cp };
  const key = keys.get(cp.key_id);
  if (!key) return { problem: `checkpoint is signed by key ${cp.key_id}, which is not a known evidence key` };
  if (cp.algorithm !== "ed25519") return { problem: `checkpoint algorithm ${cp.algorithm}` };
  const signed = ["leaseguard-checkpoint-v1", cp.covers_chainseq, cp.covers_hash, cp.signed_at, cp.key_id].join("\n");
  const sig = Buffer.from(cp.signature ?? "", "base64");
  if (sig.length !== 64 || !verifySignature(null, utf8(signed), key, sig)) {
    return { problem: `checkpoint signature does not verify with evidence key ${cp.key_id}` };
  }
  return { cp };
}

function verify(lines, keys) {
  const report = {
    checked: 0, duplicates: 0, last_seq: 0, last_hash: GENESIS,
    checkpoints: 0, unconfirmed_tail: 0, signatures_checked: keys.size > 0,
  };
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
    if (scalar(doc, "type") === CHECKPOINT) {
      const { problem, cp } = checkpointProblem(doc, seq, report.last_hash, keys);
      if (problem) return brk(seq, id, `line ${n}: ${problem}`);
      report.checkpoints++;
      report.unconfirmed_tail = 0;
      report.last_checkpoint = { seq, id, covers_chainseq: Number(cp.covers_chainseq), covers_hash: cp.covers_hash, signed_at: cp.signed_at, key_id: cp.key_id };
    } else {
      report.unconfirmed_tail++;
    }
    report.checked++;
    report.last_seq = seq;
    report.last_hash = claimed;
    lastID = id;
  }
  return report;
}

function main(argv) {
  const canonicalOnly = argv[0] === "--canonical";
  const keyArgs = [];
  let requireCheckpoint = false;
  const rest = [];
  for (let k = canonicalOnly ? 1 : 0; k < argv.length; k++) {
    if (argv[k] === "--key") keyArgs.push(argv[++k] ?? "");
    else if (argv[k] === "--require-checkpoint") requireCheckpoint = true;
    else rest.push(argv[k]);
  }
  const file = rest[0];
  if (!file) {
    process.stderr.write("usage: node verify.mjs [--canonical] [--key BASE64]... [--require-checkpoint] FILE.jsonl\n");
    return 2;
  }
  let keys;
  try { keys = evidenceKeys(keyArgs); } catch (e) { process.stderr.write(e.message + "\n"); return 2; }
  const text = new TextDecoder("utf-8").decode(readFileSync(file));
  const lines = text.split("\n").map((t, k) => ({ n: k + 1, text: t.trim() }))
    .filter((l) => l.text.startsWith("{"));
  if (canonicalOnly) {
    for (const l of lines) process.stdout.write(JSON.stringify(hashOf(parse(l.text))) + "\n");
    return 0;
  }
  const report = verify(lines, keys);
  report.confirmed = !report.first_break && report.signatures_checked && report.last_checkpoint !== undefined && report.unconfirmed_tail === 0;
  process.stdout.write(JSON.stringify(report) + "\n");
  if (report.first_break) return 1;
  return requireCheckpoint && !report.confirmed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

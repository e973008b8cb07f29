// Deno's side of kv-v8's kv-utils JSON test (kv-v8/tests/it/kv_utils.rs,
// run by `cargo test -p kv-v8`).
//
//   deno run -A --unstable-kv clients/deno/kv_utils_lines.ts write DB OUT GOLDEN
//     stores every value of `values()` under ["kvu", name] and an entry
//     under every key of `keys()`, then lists the database and writes one
//     NDJSON line per entry to OUT, in list order, made here in JavaScript
//     by `entryLine` (below), and the lines of `golden()` to GOLDEN (each
//     keyed by its name);
//   deno run -A --unstable-kv clients/deno/kv_utils_lines.ts check DB
//     reads what Rust imported from its own lines (every entry again, under
//     ["imported", ...key]) and the golden lines of `golden()` (under
//     ["golden", name]), and compares them with the JavaScript values by
//     deep equality; exits 1 and lists the differences if any differ.
//
// `@deno/kv-utils` itself is published on JSR only (not on npm), which the
// test machines cannot reach, so `entryLine` is a transcription of its
// `entryToJSON` + `JSON.stringify` as operations.md §5.2 describes them.
// What this side contributes is JavaScript's own formatting of each piece
// (numbers, string escapes, `toJSON` of dates, `String` of regular
// expressions, base64url) from the real runtime.

import { diff } from "./values_roundtrip.ts";

type Entry = [string, unknown];

function withStack<E extends Error>(e: E, stack: string): E {
  e.stack = stack;
  return e;
}

/** Every value type the format carries, with the edge cases of each. */
export function values(): Entry[] {
  const noMessage = new Error();
  noMessage.stack = "Error\n    at fixed";
  return [
    ["undefined", undefined],
    ["null", null],
    ["true", true],
    ["false", false],
    ["int", 42],
    ["negative", -7],
    ["double", 1.5],
    ["negative_zero", -0],
    ["nan", NaN],
    ["infinity", Infinity],
    ["negative_infinity", -Infinity],
    ["two_pow_53", 2 ** 53],
    ["exponent_big", 1e21],
    ["exponent_small", 1.5e-7],
    ["shortest_digits", 123456789012345680000],
    ["min_subnormal", 5e-324],
    ["bigint", 1234567890123456789012345678901234567890n],
    ["negative_bigint", -5n],
    ["zero_bigint", 0n],
    ["ascii", "hello"],
    ["unicode", "héllo ☃ 😀 𝄞 中文"],
    ["escapes", "\u0000\u0001\u001f\t\n\r\b\f\"\\/\u2028\u2029\u007f"],
    ["empty_string", ""],
    ["object", { b: 1, 2: "x", a: {}, 1: true, "-1": null }],
    ["nested", { l1: { l2: [1, [2, { deep: [true] }]] } }],
    ["empty_object", {}],
    ["array", [1, "a", null, undefined, [], {}, 2n]],
    ["holes", [1, , 3]],
    ["empty_array", []],
    ["map", new Map<unknown, unknown>([[1, "one"], ["k", { v: [1] }], [{ o: 1 }, new Set([1])]])],
    ["set", new Set([1, "two", 3n, null, new Map()])],
    ["date", new Date("2024-01-01T12:34:56.789Z")],
    ["date_before_epoch", new Date(-1)],
    ["date_year_minus_one", new Date("-000001-01-01T00:00:00.000Z")],
    ["date_max", new Date(8.64e15)],
    ["invalid_date", new Date(NaN)],
    ["regexp", /a+b[c]/gimsuy],
    ["regexp_dv", /[\p{L}--[a-z]]/dv],
    ["regexp_slash", new RegExp("a/b\n[/]", "g")],
    ["regexp_empty", new RegExp("")],
    ["type_error", withStack(new TypeError("boom", { cause: { code: 42 } }), "TypeError: boom\n    at test")],
    ["range_error", withStack(new RangeError("out of range"), "RangeError: out of range")],
    ["eval_error", withStack(new EvalError("e"), "EvalError: e")],
    ["reference_error", withStack(new ReferenceError("r"), "ReferenceError: r")],
    ["syntax_error", withStack(new SyntaxError("s", { cause: new URIError("u") }), "SyntaxError: s")],
    ["uri_error", withStack(new URIError("u"), "URIError: u")],
    ["error_without_message", noMessage],
    ["error_falsy_cause", withStack(new Error("zero", { cause: 0 }), "Error: zero")],
    ["error_empty_stack", withStack(new Error("no stack"), "")],
    ["kv_u64", new Deno.KvU64(18446744073709551615n)],
    ["nested_kv_u64", { n: new Deno.KvU64(5n) }],
    ["top_level_bytes", new Uint8Array([0, 255, 7])],
    ["empty_bytes", new Uint8Array([])],
    ["nested_bytes", { bytes: new Uint8Array([1, 2, 3]) }],
    ["int8", new Int8Array([-1, 2])],
    ["uint8_clamped", new Uint8ClampedArray([255, 0])],
    ["int16", new Int16Array([-1, 2])],
    ["uint16", new Uint16Array([65535])],
    ["int32", new Int32Array([-100000])],
    ["uint32", new Uint32Array([4000000000])],
    ["float16", new Float16Array([1.5])],
    ["float32", new Float32Array([1.5, -2])],
    ["float64", new Float64Array([Math.PI, -0])],
    ["bigint64", new BigInt64Array([-1n])],
    ["biguint64", new BigUint64Array([18446744073709551615n])],
    ["data_view", new DataView(new Uint8Array([1, 2, 3, 4]).buffer)],
    ["array_buffer", new Uint8Array([9, 8, 7]).buffer],
  ];
}

/** Keys of every part type, with the edge cases of each. */
export function keys(): Deno.KvKey[] {
  const parts: Deno.KvKeyPart[] = [
    "s",
    "",
    "\u0000\n\"é😀",
    0,
    -0,
    1,
    -2.5,
    1e21,
    1.5e-7,
    NaN,
    Infinity,
    -Infinity,
    0n,
    -12345678901234567890n,
    2n ** 200n,
    true,
    false,
    new Uint8Array([]),
    new Uint8Array([0, 1, 0xfb, 0xff]),
  ];
  return [...parts.map((p, i) => ["keys", i, p]), ["keys", "all", ...parts]];
}

/** Golden values from operations.md §5.2 and kv-utils' documentation, as
 * hand-written typed JSON, and the value Deno must read back once Rust has
 * decoded the line (keyed by the name) and stored the value. */
export function golden(): [string, string, unknown][] {
  return goldenValues().map(([name, json, want]) => [
    name,
    `{"key":[{"type":"string","value":"${name}"}],"value":${json},"versionstamp":"00000000000000060000"}`,
    want,
  ]);
}

function goldenValues(): [string, string, unknown][] {
  return [
    ["bigint", `{"type":"bigint","value":"100"}`, 100n],
    ["number", `{"type":"number","value":1.23}`, 1.23],
    ["infinity", `{"type":"number","value":"Infinity"}`, Infinity],
    ["string", `{"type":"string","value":"value"}`, "value"],
    ["null", `{"type":"null","value":null}`, null],
    ["undefined", `{"type":"undefined"}`, undefined],
    ["array", `{"type":"Array","value":[{"type":"number","value":1}]}`, [1]],
    ["object", `{"type":"object","value":{"a":{"type":"string","value":"b"}}}`, { a: "b" }],
    [
      "map",
      `{"type":"Map","value":[[{"type":"string","value":"a"},{"type":"string","value":"b"}]]}`,
      new Map([["a", "b"]]),
    ],
    ["set", `{"type":"Set","value":[{"type":"string","value":"a"}]}`, new Set(["a"])],
    ["date", `{"type":"Date","value":"2023-12-16T17:24:00.000Z"}`, new Date("2023-12-16T17:24:00.000Z")],
    ["regexp", `{"type":"RegExp","value":"/abc/i"}`, /abc/i],
    ["kv_u64", `{"type":"KvU64","value":"100"}`, new Deno.KvU64(100n)],
    [
      "type_error",
      `{"type":"TypeError","value":{"message":"an error","stack":"Line\\nLine"}}`,
      withStack(new TypeError("an error"), "Line\nLine"),
    ],
    ["array_buffer", `{"type":"ArrayBuffer","value":"AQID","byteLength":3}`, new Uint8Array([1, 2, 3]).buffer],
    ["data_view", `{"type":"DataView","value":"AQID"}`, new DataView(new Uint8Array([1, 2, 3]).buffer)],
    ["uint8_array", `{"type":"Uint8Array","value":"AQID","byteLength":3}`, new Uint8Array([1, 2, 3])],
    ["padded", `{"type":"Uint8Array","value":"AQI="}`, new Uint8Array([1, 2])],
    ["int16_array", `{"type":"Int16Array","value":"AQACAAMABAA","byteLength":8}`, new Int16Array([1, 2, 3, 4])],
    [
      "float64_array",
      `{"type":"Float64Array","value":"MzMzMzMz8z8zMzMzMzMLQGZmZmZmZhZA","byteLength":24}`,
      new Float64Array([1.2, 3.4, 5.6]),
    ],
    [
      "big_int64_array",
      `{"type":"BigInt64Array","value":"AQAAAAAAAAACAAAAAAAAAAMAAAAAAAAA","byteLength":24}`,
      new BigInt64Array([1n, 2n, 3n]),
    ],
  ];
}

// ---- The transcription of kv-utils' entryToJSON (operations.md §5.2) ----

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function bytesJSON(type: string, view: ArrayBufferView | ArrayBuffer) {
  const bytes = view instanceof ArrayBuffer
    ? new Uint8Array(view)
    : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  return { type, value: base64url(bytes), byteLength: bytes.byteLength };
}

function numberJSON(n: number) {
  if (Number.isNaN(n)) return { type: "number", value: "NaN" };
  if (n === Infinity) return { type: "number", value: "Infinity" };
  if (n === -Infinity) return { type: "number", value: "-Infinity" };
  return { type: "number", value: n };
}

function partJSON(p: unknown): unknown {
  switch (typeof p) {
    case "string":
      return { type: "string", value: p };
    case "number":
      return numberJSON(p);
    case "bigint":
      return { type: "bigint", value: String(p) };
    case "boolean":
      return { type: "boolean", value: p };
  }
  if (p instanceof Uint8Array) return bytesJSON("Uint8Array", p);
  throw new TypeError(`not a key part: ${p}`);
}

const TYPED = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];

const ERRORS: [string, ErrorConstructor][] = [
  ["EvalError", EvalError],
  ["RangeError", RangeError],
  ["ReferenceError", ReferenceError],
  ["SyntaxError", SyntaxError],
  ["TypeError", TypeError],
  ["URIError", URIError],
];

function valueJSON(v: unknown): unknown {
  switch (typeof v) {
    case "string":
    case "number":
    case "bigint":
    case "boolean":
      return partJSON(v);
    case "undefined":
      return { type: "undefined" };
  }
  if (v === null) return { type: "null", value: null };
  if (Array.isArray(v)) return { type: "Array", value: v.map(valueJSON) };
  if (v instanceof DataView) return bytesJSON("DataView", v);
  if (ArrayBuffer.isView(v)) {
    const ctor = TYPED.find((t) => v instanceof t);
    if (!ctor) throw new TypeError("Unexpected typed array type, could not serialize.");
    return bytesJSON(ctor.name, v);
  }
  if (v instanceof ArrayBuffer) return bytesJSON("ArrayBuffer", v);
  if (v instanceof Date) return { type: "Date", value: v.toJSON() };
  if (v instanceof Deno.KvU64) return { type: "KvU64", value: String(v) };
  if (v instanceof Error) {
    const value: Record<string, unknown> = { message: v.message };
    if (v.cause) value.cause = valueJSON(v.cause);
    if (v.stack) value.stack = v.stack;
    const type = ERRORS.find(([, ctor]) => v instanceof ctor)?.[0] ?? "Error";
    return { type, value };
  }
  if (v instanceof Map) return { type: "Map", value: [...v].map(([k, x]) => [valueJSON(k), valueJSON(x)]) };
  if (v instanceof RegExp) return { type: "RegExp", value: String(v) };
  if (v instanceof Set) return { type: "Set", value: [...v].map(valueJSON) };
  return {
    type: "object",
    value: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, valueJSON(x)])),
  };
}

function entryLine(entry: Deno.KvEntry<unknown>): string {
  let value;
  try {
    value = valueJSON(entry.value);
  } catch (e) {
    // What kv-utils cannot export (a Float16Array): no line to compare.
    return JSON.stringify({ unsupported: String(e) });
  }
  return JSON.stringify({ key: entry.key.map(partJSON), value, versionstamp: entry.versionstamp });
}

async function main() {
  const [mode, path, out, goldenOut] = Deno.args;
  if (!((mode === "write" && goldenOut) || mode === "check") || !path) {
    console.error("usage: kv_utils_lines.ts write DB OUT GOLDEN | check DB");
    Deno.exit(2);
  }
  const kv = await Deno.openKv(path);
  try {
    if (mode === "write") {
      for (const [name, value] of values()) {
        if (!(await kv.set(["kvu", name], value)).ok) throw new Error(`set ${name} failed`);
      }
      for (const key of keys()) {
        if (!(await kv.set(key, key.length)).ok) throw new Error(`set ${key} failed`);
      }
      const lines: string[] = [];
      for await (const entry of kv.list({ prefix: [] })) lines.push(entryLine(entry) + "\n");
      await Deno.writeTextFile(out, lines.join(""));
      await Deno.writeTextFile(goldenOut, golden().map(([, line]) => line + "\n").join(""));
      console.log(`wrote ${lines.length} entries and their lines`);
      return;
    }
    const problems: string[] = [];
    let checked = 0;
    for await (const entry of kv.list({ prefix: [] })) {
      if (entry.key[0] === "imported" || entry.key[0] === "golden") continue;
      checked++;
      const imported = await kv.get(["imported", ...entry.key]);
      if (imported.versionstamp === null) {
        problems.push(`${Deno.inspect(entry.key)}: not imported`);
        continue;
      }
      const d = diff(imported.value, entry.value, Deno.inspect(entry.key), new Map());
      if (d) problems.push(d);
    }
    for (const [name, , want] of golden()) {
      checked++;
      const got = await kv.get(["golden", name]);
      if (got.versionstamp === null) {
        problems.push(`golden ${name}: missing`);
        continue;
      }
      const d = diff(got.value, want, `golden ${name}`, new Map());
      if (d) problems.push(d);
    }
    if (problems.length > 0) {
      console.error(`${problems.length} of ${checked} values differ:\n${problems.join("\n")}`);
      Deno.exitCode = 1;
    } else {
      console.log(`checked ${checked} values imported by Rust`);
    }
  } finally {
    kv.close();
  }
}

if (import.meta.main) await main();

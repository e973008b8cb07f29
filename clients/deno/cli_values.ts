// Values and keys of every type that the kv-utils NDJSON format carries,
// for the command-line tests (`kv-server/tests/it/data_cli.rs`).
//
//   deno run -A --unstable-kv clients/deno/cli_values.ts write PATH
//     writes every value of `values()` under ["v", name] and an entry
//     under every key of `keys()`;
//   deno run -A --unstable-kv clients/deno/cli_values.ts check PATH
//     reads them back and compares them by deep equality; exits 1 and
//     lists the differences if any differs or is missing;
//   deno run -A --unstable-kv clients/deno/cli_values.ts typed PATH
//     checks the values that the test set with `kv set` (see `typed()`).

import { assertEquals } from "./asserts.ts";

type Entry = [string, unknown];

function values(): Entry[] {
  const error = new TypeError("bad", { cause: "why" });
  error.stack = "TypeError: bad\n    at fixed";
  return [
    ["undefined", undefined],
    ["null", null],
    ["true", true],
    ["int", 42],
    ["float", -1.5],
    ["nan", NaN],
    ["infinity", -Infinity],
    ["bigint", 12345678901234567890n],
    ["string", "héllo \u{1F600} \"quoted\"\n"],
    ["empty string", ""],
    ["array", [1, "two", [3n, null]]],
    ["object", { a: 1, nested: { b: [true] } }],
    ["map", new Map<unknown, unknown>([["k", 1], [2, { x: 3 }]])],
    ["set", new Set([1, "a", 2n])],
    ["date", new Date(1_700_000_000_123)],
    ["regexp", /a+b?/gi],
    ["u64", new Deno.KvU64(18446744073709551615n)],
    ["bytes", new Uint8Array([0, 1, 2, 250, 255])],
    ["int16array", new Int16Array([-2, 7])],
    ["float64array", new Float64Array([0.5, -8])],
    ["arraybuffer", new Uint8Array([9, 8, 7]).buffer],
    ["error", error],
  ];
}

function keys(): Deno.KvKey[] {
  return [
    ["k", "string"],
    ["k", 7],
    ["k", -2.5],
    ["k", 99n],
    ["k", true],
    ["k", false],
    ["k", new Uint8Array([1, 2, 255])],
    ["k", "nested", 1, 2n, new Uint8Array([])],
  ];
}

/** What `kv set` was given in the test, and what Deno must read. */
function typed(): Entry[] {
  return [
    ["json", { a: [1, 2.5, "x", null, true] }],
    ["json-number", 7],
    ["string", "plain text"],
    ["u64", new Deno.KvU64(42n)],
    ["bytes", new Uint8Array([104, 105])],
    ["typed-map", new Map<unknown, unknown>([["a", 1n]])],
    ["typed-date", new Date(0)],
  ];
}

const [mode, path] = Deno.args;
const kv = await Deno.openKv(path);
const failures: string[] = [];
function compare(name: string, got: unknown, want: unknown) {
  try {
    assertEquals(got, want);
  } catch (e) {
    failures.push(`${name}: ${e instanceof Error ? e.message : e}`);
  }
}
if (mode === "write") {
  for (const [name, value] of values()) {
    await kv.set(["v", name], value);
  }
  for (const key of keys()) {
    await kv.set(key, key.length);
  }
} else if (mode === "check") {
  for (const [name, want] of values()) {
    const got = await kv.get(["v", name]);
    if (got.versionstamp === null) failures.push(`${name}: missing`);
    else compare(name, got.value, want);
  }
  for (const key of keys()) {
    const got = await kv.get(key);
    if (got.versionstamp === null) failures.push(`${Deno.inspect(key)}: missing`);
    else compare(Deno.inspect(key), got.value, key.length);
  }
} else if (mode === "typed") {
  for (const [name, want] of typed()) {
    const got = await kv.get(["typed", name]);
    if (got.versionstamp === null) failures.push(`${name}: missing`);
    else compare(name, got.value, want);
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
kv.close();
if (failures.length > 0) {
  console.error(failures.join("\n"));
  Deno.exit(1);
}
console.log(`${mode}: ok`);

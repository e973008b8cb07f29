// Values shared between Deno and Rust through one SQLite file: run by
// kv-v8's `deno` integration test (`cargo test -p kv-v8`).
//
//   deno run -A --unstable-kv clients/deno/values_roundtrip.ts write PATH
//     writes every value of `table()` under ["deno", name];
//   deno run -A --unstable-kv clients/deno/values_roundtrip.ts check PATH
//     reads ["rust", name] for every name of `table()` and `serdeTable()`
//     (written by Rust) and compares it with the expected value; exits 1
//     and lists the differences if any differs or is missing.
//
// The Rust side holds the same table as `JsValue`s (kv-v8/tests/it/deno.rs);
// keep the names in step.

type Entry = [string, unknown];

function withStack<E extends Error>(e: E, stack: string): E {
  // A fixed stack keeps the stored bytes independent of file paths.
  e.stack = stack;
  return e;
}

/** Every kind of value Deno KV stores, under a stable name. */
export function table(): Entry[] {
  const sparse: unknown[] = [];
  sparse[5] = 1;
  sparse[10] = "x";
  const withProps: unknown[] & { bar?: boolean } = [1, 2];
  withProps.bar = true;
  const cycle: Record<string, unknown> = { name: "c" };
  cycle.self = cycle;
  const shared = { x: 1 };
  class Point {
    x = 1;
    y = 2;
  }
  const bytes = new Uint8Array([1, 2, 3, 4, 5]);
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
    ["infinity", -Infinity],
    ["two_pow_53", 2 ** 53],
    ["uint32", 4294967295],
    ["bigint", 1234567890123456789012345678901234567890n],
    ["negative_bigint", -5n],
    ["zero_bigint", 0n],
    ["ascii", "hello"],
    ["latin1", "héllo"],
    ["unicode", "héllo ☃ 😀 𝄞 中文"],
    ["empty_string", ""],
    ["object", { a: 1, b: "two", c: [true, null], 3: "x", "-1": 0 }],
    ["nested", { l1: { l2: { l3: [1, [2, [3, { deep: true }]]] } } }],
    ["large", { text: "x".repeat(12000), list: Array.from({ length: 1000 }, (_, i) => i) }],
    ["large_unicode", "☃😀".repeat(2000)],
    ["sparse", sparse],
    ["array_props", withProps],
    ["mixed_array", [1, "a", null, undefined, [], {}]],
    ["empty_object", {}],
    ["empty_array", []],
    ["class_instance", new Point()],
    ["cycle", cycle],
    ["shared", [shared, shared]],
    ["map", new Map<unknown, unknown>([[1, "one"], ["k", { v: [1] }], [{ o: 1 }, new Set([1])]])],
    ["set", new Set([1, "two", 3n, null])],
    ["date", new Date("2024-01-01T00:00:00.000Z")],
    ["invalid_date", new Date(NaN)],
    ["regexp", /a+b[c]/gimsuy],
    ["regexp_dv", /[\p{L}--[a-z]]/dv],
    ["error", withStack(new TypeError("boom", { cause: { code: 42 } }), "TypeError: boom\n    at test")],
    ["range_error", withStack(new RangeError("out of range"), "RangeError: out of range")],
    ["plain_error", withStack(new Error("plain"), "Error: plain")],
    ["uint8_nested", { bytes: new Uint8Array([1, 2, 3]) }],
    ["subarray_nested", { bytes: bytes.subarray(1, 3) }],
    ["typed_arrays", [
      new Int8Array([-1, 2]),
      new Uint8ClampedArray([255, 0]),
      new Int16Array([-1, 2]),
      new Uint16Array([65535]),
      new Int32Array([-100000]),
      new Uint32Array([4000000000]),
      new Float16Array([1.5]),
      new Float32Array([1.5, -2]),
      new Float64Array([Math.PI]),
      new BigInt64Array([-1n]),
      new BigUint64Array([18446744073709551615n]),
      new DataView(new Uint8Array([1, 2, 3, 4]).buffer),
    ]],
    ["array_buffer", new Uint8Array([9, 8, 7]).buffer],
    ["boxed", [new Number(1.5), new String("s☃"), new Boolean(true), new Boolean(false), Object(5n)]],
    ["kv_u64", new Deno.KvU64(12345n)],
    ["top_level_bytes", new Uint8Array([0, 255, 7])],
  ];
}

/** What Rust writes through serde (`to_value`), as Deno should read it. */
export function serdeTable(): Entry[] {
  return [
    ["serde_struct", {
      id: 18446744073709551615n,
      name: "Ada ☃",
      score: 1.5,
      tags: ["a", "b"],
      nick: null,
      shape: { Rect: { w: 2, h: 3 } },
      shapes: ["Dot", { Circle: 0.5 }],
      counts: { big: -9223372036854775808n, x: 1 },
      by_id: new Map([[7, "seven"]]),
      blob: new Uint8Array([1, 2, 3]),
      total: 5n,
      unit: null,
      tuple: [true, "z"],
    }],
    ["serde_kv_u64", new Deno.KvU64(99n)],
    ["serde_bytes", new Uint8Array([4, 5, 6])],
    ["serde_json", { a: [1, 2.5, null, true], b: { c: "d" } }],
  ];
}

function describe(v: unknown): string {
  try {
    return Deno.inspect(v, { depth: 4, colors: false });
  } catch {
    return String(v);
  }
}

/** Deep equality with the detail the round trip must keep: prototypes,
 * holes, -0 vs 0, key sets, typed-array kinds, error fields, identity. */
export function diff(a: unknown, b: unknown, path: string, seen: Map<unknown, unknown>): string | null {
  if (Object.is(a, b)) return null;
  const fail = () => `${path}: got ${describe(a)}, expected ${describe(b)}`;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return fail();
  if (seen.has(a)) return seen.get(a) === b ? null : `${path}: object identity differs`;
  seen.set(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return fail();
  if (a instanceof Deno.KvU64) return a.value === (b as Deno.KvU64).value ? null : fail();
  if (a instanceof Date) return Object.is(a.getTime(), (b as Date).getTime()) ? null : fail();
  if (a instanceof RegExp) {
    const r = b as RegExp;
    return a.source === r.source && a.flags === r.flags ? null : fail();
  }
  if (a instanceof Number || a instanceof String || a instanceof Boolean || a instanceof BigInt) {
    return Object.is(a.valueOf(), (b as typeof a).valueOf()) ? null : fail();
  }
  if (a instanceof Error) {
    const e = b as Error;
    if (a.name !== e.name || a.message !== e.message || a.stack !== e.stack) return fail();
    return diff(a.cause, e.cause, `${path}.cause`, seen);
  }
  if (a instanceof ArrayBuffer || ArrayBuffer.isView(a)) {
    const view = (x: unknown) =>
      x instanceof ArrayBuffer
        ? new Uint8Array(x)
        : new Uint8Array((x as ArrayBufferView).buffer, (x as ArrayBufferView).byteOffset, (x as ArrayBufferView).byteLength);
    const [x, y] = [view(a), view(b)];
    return x.length === y.length && x.every((v, i) => v === y[i]) ? null : fail();
  }
  if (a instanceof Map) {
    const [x, y] = [[...a], [...(b as Map<unknown, unknown>)]];
    if (x.length !== y.length) return fail();
    for (let i = 0; i < x.length; i++) {
      const d = diff(x[i][0], y[i][0], `${path}<key ${i}>`, seen) ??
        diff(x[i][1], y[i][1], `${path}<value ${i}>`, seen);
      if (d) return d;
    }
    return null;
  }
  if (a instanceof Set) {
    const [x, y] = [[...a], [...(b as Set<unknown>)]];
    if (x.length !== y.length) return fail();
    for (let i = 0; i < x.length; i++) {
      const d = diff(x[i], y[i], `${path}<${i}>`, seen);
      if (d) return d;
    }
    return null;
  }
  if (Array.isArray(a)) {
    const y = b as unknown[];
    if (a.length !== y.length) return `${path}: length ${a.length}, expected ${y.length}`;
    for (let i = 0; i < a.length; i++) {
      if ((i in a) !== (i in y)) return `${path}[${i}]: hole differs`;
    }
  }
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join("\u0000") !== kb.join("\u0000")) return `${path}: keys ${ka}, expected ${kb}`;
  for (const k of ka) {
    const d = diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`, seen);
    if (d) return d;
  }
  return null;
}

async function main() {
  const [mode, path] = Deno.args;
  if ((mode !== "write" && mode !== "check") || !path) {
    console.error("usage: values_roundtrip.ts write|check PATH");
    Deno.exit(2);
  }
  const kv = await Deno.openKv(path);
  try {
    if (mode === "write") {
      for (const [name, value] of table()) {
        const res = await kv.set(["deno", name], value);
        if (!res.ok) throw new Error(`set ${name} failed`);
      }
      console.log(`wrote ${table().length} values`);
      return;
    }
    const problems: string[] = [];
    // A class instance is stored as a plain object (its prototype is lost).
    const expected = [...table(), ...serdeTable()].map(([name, value]): Entry =>
      name === "class_instance" ? [name, { ...(value as object) }] : [name, value]
    );
    for (const [name, want] of expected) {
      const entry = await kv.get(["rust", name]);
      if (entry.versionstamp === null) {
        problems.push(`${name}: missing`);
        continue;
      }
      const d = diff(entry.value, want, name, new Map());
      if (d) problems.push(d);
      // Identity, beyond deep equality.
      const v = entry.value as Record<string, unknown> & unknown[];
      if (name === "cycle" && v.self !== v) problems.push("cycle: self is not the object itself");
      if (name === "shared" && v[0] !== v[1]) problems.push("shared: the two elements are not one object");
    }
    if (problems.length > 0) {
      console.error(`${problems.length} of ${expected.length} values differ:\n${problems.join("\n")}`);
      Deno.exitCode = 1;
    } else {
      console.log(`checked ${expected.length} values written by Rust`);
    }
  } finally {
    kv.close();
  }
}

if (import.meta.main) await main();

// Real Deno against `kv serve`: run by `cargo xtask clients` with
// KV_URL and DENO_KV_ACCESS_TOKEN set.
//   deno test -A --unstable-kv clients/deno/kv_connect_test.ts

import {
  assert,
  assertEquals,
  assertNotEquals,
  assertRejects,
  assertThrows,
} from "./asserts.ts";

const URL = Deno.env.get("KV_URL") ?? "http://127.0.0.1:4512";

async function open(): Promise<Deno.Kv> {
  return await Deno.openKv(URL);
}

let counter = 0;
function ns(): string {
  return `t${Date.now()}-${counter++}-${Math.random().toString(36).slice(2)}`;
}

function test(name: string, fn: (kv: Deno.Kv, p: string) => Promise<void>) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const kv = await open();
      try {
        await fn(kv, ns());
      } finally {
        kv.close();
      }
    },
  });
}

test("set, get, delete", async (kv, p) => {
  const r = await kv.set([p, "a"], "hello");
  assert(r.ok);
  assertEquals(r.versionstamp.length, 20);
  const e = await kv.get([p, "a"]);
  assertEquals(e.value, "hello");
  assertEquals(e.versionstamp, r.versionstamp);
  await kv.delete([p, "a"]);
  const gone = await kv.get([p, "a"]);
  assertEquals(gone.value, null);
  assertEquals(gone.versionstamp, null);
});

test("every value type round-trips", async (kv, p) => {
  const date = new Date(1700000000000);
  const circular: Record<string, unknown> = { name: "loop" };
  circular.self = circular;
  const values: unknown[] = [
    "string",
    "",
    "unicode ✓ 日本 😀",
    42,
    -1.5,
    0,
    -0,
    NaN,
    Infinity,
    123n,
    -(2n ** 100n),
    true,
    false,
    null,
    undefined,
    date,
    new Uint8Array([1, 2, 3]),
    new Uint8Array(0),
    [1, "two", [3]],
    { a: 1, b: { c: [true, null] } },
    new Map<unknown, unknown>([["k", 1], [2, "v"]]),
    new Set([1, 2, 3]),
    /ab+c/gi,
    new Deno.KvU64(42n),
    new Deno.KvU64(0xffffffffffffffffn),
    "x".repeat(60000),
  ];
  for (let i = 0; i < values.length; i++) {
    await kv.set([p, i], values[i]);
  }
  for (let i = 0; i < values.length; i++) {
    const e = await kv.get([p, i]);
    assertNotEquals(e.versionstamp, null, `value ${i} present`);
    assertEquals(e.value, values[i], `value ${i}`);
  }
  await kv.set([p, "circular"], circular);
  const c = (await kv.get<Record<string, unknown>>([p, "circular"])).value!;
  assertEquals(c.name, "loop");
  assert(c.self === c, "identity preserved");
});

test("key ordering across types", async (kv, p) => {
  const keys: Deno.KvKey[] = [
    [p, new Uint8Array([1])],
    [p, "a"],
    [p, 1n],
    [p, 3.14],
    [p, false],
    [p, true],
  ];
  for (const k of [...keys].reverse()) await kv.set(k, 1);
  const listed = [];
  for await (const e of kv.list({ prefix: [p] })) listed.push(e.key);
  assertEquals(listed, keys);
});

async function seed(kv: Deno.Kv, p: string) {
  const op = kv.atomic();
  op.set([p], "root");
  for (const c of ["a", "b", "c", "d", "e"]) op.set([p, c], c);
  await op.commit();
}

async function keysOf(it: Deno.KvListIterator<unknown>) {
  const out = [];
  for await (const e of it) out.push(e.key);
  return out;
}

test("list selectors", async (kv, p) => {
  await seed(kv, p);
  assertEquals(await keysOf(kv.list({ prefix: [p] })), ["a", "b", "c", "d", "e"].map((c) => [p, c]));
  assertEquals(await keysOf(kv.list({ prefix: [p], start: [p, "c"] })), ["c", "d", "e"].map((c) => [p, c]));
  assertEquals(await keysOf(kv.list({ prefix: [p], end: [p, "c"] })), ["a", "b"].map((c) => [p, c]));
  assertEquals(await keysOf(kv.list({ start: [p, "b"], end: [p, "d"] })), ["b", "c"].map((c) => [p, c]));
  assertEquals(await keysOf(kv.list({ start: [p], end: [p, "b"] })), [[p], [p, "a"]]);
  assertEquals(
    await keysOf(kv.list({ prefix: [p] }, { reverse: true, limit: 2 })),
    [[p, "e"], [p, "d"]],
  );
  assertEquals(
    await keysOf(kv.list({ prefix: [p] }, { batchSize: 2 })),
    ["a", "b", "c", "d", "e"].map((c) => [p, c]),
  );
  assertEquals(
    await keysOf(kv.list({ prefix: [p] }, { batchSize: 2, limit: 3, reverse: true })),
    ["e", "d", "c"].map((c) => [p, c]),
  );
  await assertRejects(() => keysOf(kv.list({ prefix: [p], start: [p] })));
  await assertRejects(() => keysOf(kv.list({ start: [p, "d"], end: [p, "a"] })));
});

test("list cursors", async (kv, p) => {
  await seed(kv, p);
  const it = kv.list({ prefix: [p] }, { limit: 2 });
  assertEquals(await keysOf(it), [[p, "a"], [p, "b"]]);
  const cursor = it.cursor;
  assert(cursor.length > 0);
  assertEquals(await keysOf(kv.list({ prefix: [p] }, { cursor })), ["c", "d", "e"].map((c) => [p, c]));
  const rev = kv.list({ prefix: [p] }, { limit: 2, reverse: true });
  assertEquals(await keysOf(rev), [[p, "e"], [p, "d"]]);
  assertEquals(
    await keysOf(kv.list({ prefix: [p] }, { cursor: rev.cursor, reverse: true })),
    ["c", "b", "a"].map((c) => [p, c]),
  );
});

test("atomic checks and conflicts", async (kv, p) => {
  const first = await kv.atomic().check({ key: [p, "k"], versionstamp: null }).set([p, "k"], 1).commit();
  assert(first.ok);
  const again = await kv.atomic().check({ key: [p, "k"], versionstamp: null }).set([p, "k"], 2).commit();
  assertEquals(again.ok, false);
  const e = await kv.get([p, "k"]);
  const ok = await kv.atomic().check(e).set([p, "k"], 3).commit();
  assert(ok.ok);
  const stale = await kv.atomic().check(e).set([p, "k"], 4).commit();
  assertEquals(stale.ok, false);
  assertEquals((await kv.get([p, "k"])).value, 3);
  // 100 checks are accepted (denokv allows only 10).
  const many = kv.atomic();
  for (let i = 0; i < 100; i++) many.check({ key: [p, "c", i], versionstamp: null });
  assert((await many.commit()).ok);
});

test("sum, min, max", async (kv, p) => {
  await kv.atomic().sum([p, "s"], 1n).sum([p, "s"], 2n).commit();
  assertEquals((await kv.get([p, "s"])).value, new Deno.KvU64(3n));
  await kv.set([p, "w"], new Deno.KvU64(0xffffffffffffffffn));
  await kv.atomic().sum([p, "w"], 10n).commit();
  assertEquals((await kv.get([p, "w"])).value, new Deno.KvU64(9n));
  await kv.atomic().min([p, "m"], 5n).max([p, "x"], 5n).commit();
  await kv.atomic().min([p, "m"], 3n).max([p, "x"], 7n).commit();
  assertEquals((await kv.get([p, "m"])).value, new Deno.KvU64(3n));
  assertEquals((await kv.get([p, "x"])).value, new Deno.KvU64(7n));
  await kv.set([p, "str"], "text");
  await assertRejects(() => kv.atomic().sum([p, "str"], 1n).commit());
  // A failed sum leaves nothing of its commit behind.
  await assertRejects(() => kv.atomic().set([p, "a"], 1).sum([p, "str"], 1n).set([p, "b"], 2).commit());
  assertEquals((await kv.get([p, "a"])).versionstamp, null);
  assertEquals((await kv.get([p, "b"])).versionstamp, null);
  // V8 number sums through mutate.
  await kv.atomic().mutate({ type: "sum", key: [p, "f"], value: 1.5 } as unknown as Deno.KvMutation).commit();
  await kv.atomic().mutate({ type: "sum", key: [p, "f"], value: 2 } as unknown as Deno.KvMutation).commit();
  assertEquals((await kv.get([p, "f"])).value, 3.5);
});

test("versionstamps and versionstamped keys", async (kv, p) => {
  const a = await kv.set([p, "a"], 1);
  const b = await kv.set([p, "b"], 1);
  assert(b.versionstamp > a.versionstamp);
  const r = await kv.atomic().set([p, "log", kv.commitVersionstamp()], "entry").commit();
  assert(r.ok);
  const e = await kv.get([p, "log", r.versionstamp]);
  assertEquals(e.value, "entry");
  assertEquals(e.versionstamp, r.versionstamp);
  const all = await keysOf(kv.list({ prefix: [p, "log"] }));
  assertEquals(all, [[p, "log", r.versionstamp]]);
});

test("expireIn", async (kv, p) => {
  await kv.set([p, "t"], 1, { expireIn: 300 });
  await kv.set([p, "keep"], 1, { expireIn: 60_000 });
  assertEquals((await kv.get([p, "t"])).value, 1);
  await new Promise((r) => setTimeout(r, 800));
  assertEquals((await kv.get([p, "t"])).versionstamp, null, "expired keys are hidden at once");
  assertEquals((await kv.get([p, "keep"])).value, 1);
});

test("watch from the same handle and from a second handle", async (kv, p) => {
  const other = await open();
  try {
    for (const watcher of [kv, other]) {
      const key = [p, watcher === kv ? "same" : "other"];
      const stream = watcher.watch([key]);
      const reader = stream.getReader();
      const first = await reader.read();
      assertEquals(first.value![0].versionstamp, null);
      const w = await kv.set(key, "v1");
      let next = await reader.read();
      while (next.value![0].versionstamp !== w.versionstamp) next = await reader.read();
      assertEquals(next.value![0].value, "v1");
      await kv.delete(key);
      next = await reader.read();
      assertEquals(next.value![0].versionstamp, null);
      await reader.cancel();
    }
  } finally {
    other.close();
  }
});

test("250 watches on one handle leave room for its calls", async (kv, p) => {
  // Deno sends a handle's calls and watches on one HTTP/2 connection.
  // (With hyper's default of 200 streams, the set below waited forever.)
  const readers = Array.from({ length: 250 }, (_, i) => kv.watch([[p, "w", i]]).getReader());
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no answer within 20 s")), 20_000);
  });
  try {
    await Promise.race([
      (async () => {
        await Promise.all(readers.map((r) => r.read()));
        const w = await kv.set([p, "w", 7], "seen");
        let next = await readers[7].read();
        while (next.value![0].versionstamp !== w.versionstamp) next = await readers[7].read();
        assertEquals(next.value![0].value, "seen");
      })(),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    await Promise.all(readers.map((r) => r.cancel()));
  }
});

test("limit errors", async (kv, p) => {
  await assertRejects(() => kv.set([p, new Uint8Array(2047)], 1));
  await kv.set([p, "x".repeat(2000)], 1);
  await assertRejects(() => kv.set([p], new Uint8Array(65537)));
  await kv.set([p, "big"], new Uint8Array(65536));
  await assertRejects(() => kv.getMany(Array.from({ length: 11 }, (_, i) => [p, i])));
  const tooMany = kv.atomic();
  for (let i = 0; i < 1001; i++) tooMany.set([p, "m", i], i);
  await assertRejects(() => tooMany.commit());
  assertThrows(() => kv.watch(Array.from({ length: 11 }, (_, i) => [p, i])));
});

test("20 concurrent check-and-set incrementers", async (kv, p) => {
  const key = [p, "counter"];
  async function increment(db: Deno.Kv) {
    while (true) {
      const e = await db.get<number>(key);
      const r = await db.atomic().check(e).set(key, (e.value ?? 0) + 1).commit();
      if (r.ok) return;
    }
  }
  const handles = await Promise.all(Array.from({ length: 4 }, () => open()));
  try {
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        for (let j = 0; j < 5; j++) await increment(handles[i % handles.length]);
      }),
    );
  } finally {
    handles.forEach((h) => h.close());
  }
  assertEquals((await kv.get(key)).value, 100);
});

// Deno's client leaves Nagle on and sends a request's HEADERS and DATA in
// two writes; unless the server acknowledges the first at once, the second
// waits for the delayed-ACK timer (~40 ms per write, every time).
test("writes of kilobyte values do not wait for delayed ACKs", async (kv, p) => {
  for (const size of [1024, 4096, 60000]) {
    const value = new Uint8Array(size);
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t = performance.now();
      await kv.set([p, size, i], value);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[7];
    assert(median < 20, `${size}-byte sets: median ${median.toFixed(1)} ms`);
  }
});

// A new connection's SETTINGS acknowledgement goes out alone, and Nagle
// held the first request behind it until the delayed ACK (~40 ms).
test("a new connection's first call does not wait for a delayed ACK", async (_kv, p) => {
  const times: number[] = [];
  for (let i = 0; i < 9; i++) {
    const kv = await open();
    try {
      const t = performance.now();
      await kv.get([p, i]);
      times.push(performance.now() - t);
    } finally {
      kv.close();
    }
  }
  times.sort((a, b) => a - b);
  const median = times[4];
  assert(median < 20, `first calls: median ${median.toFixed(1)} ms`);
});

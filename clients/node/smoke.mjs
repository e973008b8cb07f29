// Node `@deno/kv` against `kv serve`: set/get/list/atomic/sum/enqueue.
// Run by `cargo xtask clients` with KV_URL and DENO_KV_ACCESS_TOKEN set.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openKv } from "@deno/kv";

const url = process.env.KV_URL ?? "http://127.0.0.1:4512";
const p = `node-${Date.now()}-${Math.random().toString(36).slice(2)}`;

async function withKv(fn) {
  const kv = await openKv(url);
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

test("set, get and delete", () =>
  withKv(async (kv) => {
    const r = await kv.set([p, "a"], { hello: "world", n: 1 });
    assert.equal(r.ok, true);
    const e = await kv.get([p, "a"]);
    assert.deepEqual(e.value, { hello: "world", n: 1 });
    assert.equal(e.versionstamp, r.versionstamp);
    await kv.delete([p, "a"]);
    assert.equal((await kv.get([p, "a"])).versionstamp, null);
  }));

test("list in key order, with reverse and limit", () =>
  withKv(async (kv) => {
    for (const k of ["c", "a", "b"]) await kv.set([p, "l", k], k);
    const keys = [];
    for await (const e of kv.list({ prefix: [p, "l"] })) keys.push(e.key[2]);
    assert.deepEqual(keys, ["a", "b", "c"]);
    const rev = [];
    for await (const e of kv.list({ prefix: [p, "l"] }, { reverse: true, limit: 2 })) rev.push(e.key[2]);
    assert.deepEqual(rev, ["c", "b"]);
  }));

test("atomic checks and sum", () =>
  withKv(async (kv) => {
    const ok = await kv.atomic().check({ key: [p, "once"], versionstamp: null }).set([p, "once"], 1).commit();
    assert.equal(ok.ok, true);
    const conflict = await kv.atomic().check({ key: [p, "once"], versionstamp: null }).set([p, "once"], 2).commit();
    assert.equal(conflict.ok, false);
    await kv.atomic().sum([p, "n"], 5n).sum([p, "n"], 6n).commit();
    const n = await kv.get([p, "n"]);
    assert.equal(n.value.value, 11n);
  }));

test("enqueue is stored by the server", () =>
  withKv(async (kv) => {
    const r = await kv.enqueue({ job: "from node" }, { delay: 1000, keysIfUndelivered: [[p, "dead"]] });
    assert.equal(r.ok, true);
    const inAtomic = await kv.atomic().set([p, "with-job"], true).enqueue("second job").commit();
    assert.equal(inAtomic.ok, true);
  }));

// Deno's own SQLite backend and `kv serve` share one file: run by
// `cargo xtask clients` after the client tests, in two phases.
//   deno run -A --unstable-kv clients/deno/file_interop.ts local PATH
//       (kv serve stopped) Deno opens the file kv wrote and writes to it
//   deno run -A --unstable-kv clients/deno/file_interop.ts remote URL
//       (kv serve on the same file again) kv reads what Deno wrote
//   deno run -A --unstable-kv clients/deno/file_interop.ts read-only URL
//       (`kv --sqlite-path PATH serve --read-only`, denokv's command line)
//       reads work, every kind of write is refused

import { assert, assertEquals } from "./asserts.ts";

const [phase, target] = Deno.args;
const kv = await Deno.openKv(target);
try {
  if (phase === "local") {
    // Every key the clients left decodes, in order.
    let entries = 0;
    let last: Deno.KvKey | undefined;
    for await (const e of kv.list({ prefix: [] })) {
      entries++;
      last = e.key;
    }
    assert(entries > 0 && last !== undefined, "the clients' entries are in the file");
    const stamp = (await kv.set(["file-interop", "deno"], { from: "deno" })).versionstamp;
    // Deno hides an expired key only once its sweeper deleted it; kv hides
    // it from the moment it expires (checked in the remote phase).
    await kv.set(["file-interop", "ttl"], "gone soon", { expireIn: 1 });
    console.log(`Deno read ${entries} entries kv wrote and wrote at ${stamp}`);
  } else if (phase === "remote") {
    const got = await kv.get(["file-interop", "deno"]);
    assertEquals(got.value, { from: "deno" });
    assertEquals((await kv.get(["file-interop", "ttl"])).value, null);
    const next = await kv.set(["file-interop", "kv"], 1);
    assert(next.versionstamp > got.versionstamp!, "kv continues Deno's versionstamps");
    console.log(`kv read Deno's entry (${got.versionstamp}) and wrote at ${next.versionstamp}`);
  } else if (phase === "read-only") {
    const deno = await kv.get(["file-interop", "deno"]);
    assertEquals(deno.value, { from: "deno" });
    const mine = await kv.get(["file-interop", "kv"]);
    assertEquals(mine.value, 1);
    let listed = 0;
    for await (const _ of kv.list({ prefix: ["file-interop"] })) listed++;
    assertEquals(listed, 2);
    const refusals: Array<[string, () => Promise<unknown>]> = [
      ["set", () => kv.set(["file-interop", "ro"], 1)],
      ["delete", () => kv.delete(["file-interop", "deno"])],
      ["sum", () => kv.atomic().sum(["file-interop", "n"], 1n).commit()],
      ["checked set", () => kv.atomic().check(mine).set(["file-interop", "kv"], 2).commit()],
    ];
    for (const [what, write] of refusals) {
      let message = "";
      try {
        await write();
      } catch (e) {
        message = String(e);
      }
      assert(message.includes("read only"), `${what} must be refused: got ${message || "success"}`);
    }
    assertEquals((await kv.get(["file-interop", "kv"])).versionstamp, mine.versionstamp);
    assertEquals((await kv.get(["file-interop", "deno"])).value, { from: "deno" });
    console.log(`kv --sqlite-path … serve --read-only: reads work, ${refusals.length} kinds of write refused`);
  } else {
    throw new Error(`unknown phase ${phase}`);
  }
} finally {
  kv.close();
}

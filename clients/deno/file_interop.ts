// Deno's own SQLite backend and `kv serve` share one file: run by
// `cargo xtask clients` after the client tests, in two phases.
//   deno run -A --unstable-kv clients/deno/file_interop.ts local PATH
//       (kv serve stopped) Deno opens the file kv wrote and writes to it
//   deno run -A --unstable-kv clients/deno/file_interop.ts remote URL
//       (kv serve on the same file again) kv reads what Deno wrote

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
  } else {
    throw new Error(`unknown phase ${phase}`);
  }
} finally {
  kv.close();
}

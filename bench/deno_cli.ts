// The peer of `cargo xtask bench cli`: export and import in the kv-utils
// style, as a Deno program does it today (a `list` loop writing NDJSON
// lines, a `set` per line), against Deno's own local KV.
//
//   deno run -A --unstable-kv bench/deno_cli.ts import FILE DB
//   deno run -A --unstable-kv bench/deno_cli.ts export DB OUT
//
// Each prints one JSON line: {"name", "keys", "secs"}. Values are the
// strings `cargo xtask bench cli` writes; keys are ["bench", i].

type Part = { type: string; value: unknown };

function keyOf(parts: Part[]): Deno.KvKey {
  return parts.map((p) => p.type === "bigint" ? BigInt(p.value as string) : p.value) as Deno.KvKey;
}

function partOf(p: Deno.KvKeyPart): Part {
  if (typeof p === "bigint") return { type: "bigint", value: p.toString() };
  return { type: typeof p, value: p };
}

const [mode, a, b] = Deno.args;
const started = performance.now();
let keys = 0;
if (mode === "import") {
  const kv = await Deno.openKv(b);
  const text = await Deno.readTextFile(a);
  for (const line of text.split("\n")) {
    if (line.length === 0) continue;
    const entry = JSON.parse(line);
    // kv-utils' import: one set per line, skipping keys that exist.
    const key = keyOf(entry.key);
    await kv.atomic().check({ key, versionstamp: null }).set(key, entry.value.value).commit();
    keys++;
  }
  kv.close();
} else if (mode === "export") {
  const kv = await Deno.openKv(a);
  const out = await Deno.open(b, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  let buffer = "";
  for await (const entry of kv.list({ prefix: [] })) {
    buffer += JSON.stringify({
      key: entry.key.map(partOf),
      value: { type: "string", value: entry.value },
      versionstamp: entry.versionstamp,
    }) + "\n";
    keys++;
    if (buffer.length > 1 << 20) {
      await out.write(encoder.encode(buffer));
      buffer = "";
    }
  }
  await out.write(encoder.encode(buffer));
  out.close();
  kv.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
const secs = (performance.now() - started) / 1000;
console.log(JSON.stringify({ name: `deno_${mode}`, keys, secs }));

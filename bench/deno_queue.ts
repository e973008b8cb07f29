// Deno side of `cargo xtask bench queue`: enqueue → handler latency and
// sustained messages/s of Deno's own queue on a file. JSON lines on stdout.
//   deno run -A --unstable-kv bench/deno_queue.ts --path FILE [--scale F]

const args = Deno.args;
const path = args[args.indexOf("--path") + 1];
const scaleAt = args.indexOf("--scale");
const scale = scaleAt >= 0 ? Number(args[scaleAt + 1]) : 1;
const kv = await Deno.openKv(path);

let resolveNext: ((t: number) => void) | null = null;
let handled = 0;
kv.listenQueue((_msg) => {
  handled++;
  if (resolveNext) {
    const r = resolveNext;
    resolveNext = null;
    r(performance.now());
  }
});

const n = Math.max(10, Math.floor(100 * scale));
const lat: number[] = [];
for (let i = 0; i < n; i++) {
  const got = new Promise<number>((r) => (resolveNext = r));
  const sent = performance.now();
  await kv.enqueue(1);
  lat.push((await got) - sent);
}
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.round((lat.length - 1) * p)] * 1000;
console.log(JSON.stringify({ name: "enqueue_to_handler", ops: n, p50_us: pct(0.5), p99_us: pct(0.99) }));

const total = Math.max(100, Math.floor(2000 * scale));
const before = handled;
const started = performance.now();
for (let i = 0; i < total / 10; i++) {
  const op = kv.atomic();
  for (let j = 0; j < 10; j++) op.enqueue(1);
  await op.commit();
}
while (handled - before < total) await new Promise((r) => setTimeout(r, 5));
const secs = (performance.now() - started) / 1000;
console.log(JSON.stringify({ name: "sustained", ops: total, secs, per_sec: total / secs }));
kv.close();
Deno.exit(0);

// The TF.js export's speed in Node (bench/formats.py): one-example latency and batch throughput, with
// the model loaded and called as the parity check does (predict.js; outputs read back to JS arrays).
// Usage: node bench.js MODEL_DIR < request.json
// request: predict.js's {"dtypes", "inputs"} plus {"warmup": N, "calls": N, "batch_seconds": S}:
// the one-example calls cycle through the rows, each batch call takes all of them.
// Answers on stdout: {"latencies_ms": [one per call], "batch_rows": R, "batch_calls": N, "batch_seconds": S}.
'use strict';
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const { modelArtifacts, tensors, predict } = require('./predict.js');

const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;

async function main() {
  const artifacts = modelArtifacts(process.argv[2]);
  const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const request = JSON.parse(fs.readFileSync(0, 'utf8'));
  const rows = Object.values(request.inputs)[0].length;
  const one = (i) => predict(model, artifacts.signature, tensors(request, [i % rows]));
  for (let i = 0; i < request.warmup; i += 1) await one(i);
  const latencies = [];
  for (let i = 0; i < request.calls; i += 1) {
    const start = process.hrtime.bigint();
    await one(i);
    latencies.push(seconds(start) * 1000);
  }
  await predict(model, artifacts.signature, tensors(request, null));  // warm-up at this size
  let calls = 0;
  const start = process.hrtime.bigint();
  while (calls < 3 || seconds(start) < request.batch_seconds) {
    await predict(model, artifacts.signature, tensors(request, null));
    calls += 1;
  }
  const elapsed = seconds(start);
  process.stdout.write(JSON.stringify({ latencies_ms: latencies, batch_rows: rows, batch_calls: calls,
                                        batch_seconds: elapsed }));
}

main().catch((error) => { process.stderr.write(`${error.stack || error}\n`); process.exit(1); });

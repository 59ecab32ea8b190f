// The TF.js side of the parity check before push (components/edge_export.py): runs the exported
// TF.js graph model in Node with the pure-JS @tensorflow/tfjs (no native binary), as a page would.
// Usage: node predict.js MODEL_DIR < request.json (MODEL_DIR is read once the request is)
// request: {"dtypes": {input: "string" | "int32" | "float32"}, "inputs": {input: [value per row]},
// "alone": N} (a float's null is NaN: JSON has no NaN). Answers on stdout: {"batch": {output: values
// for all rows in one call}, "rows": [{output: values}, one call for each of the first N rows]}.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

// The model.json and its weight shards, read from disk (tf.loadGraphModel in Node wants a URL).
function modelArtifacts(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const shards = json.weightsManifest.flatMap((group) => group.paths.map(
    (p) => fs.readFileSync(path.join(dir, p))));
  const weightData = new Uint8Array(shards.reduce((n, s) => n + s.length, 0));
  shards.reduce((offset, s) => { weightData.set(s, offset); return offset + s.length; }, 0);
  return {
    modelTopology: json.modelTopology, format: json.format, generatedBy: json.generatedBy,
    convertedBy: json.convertedBy, signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata, modelInitializer: json.modelInitializer,
    initializerSignature: json.initializerSignature,
    weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
    weightData: weightData.buffer,
  };
}

function tensors(request, rows) {
  const out = {};
  for (const [name, values] of Object.entries(request.inputs)) {
    const dtype = request.dtypes[name];
    const picked = rows === null ? values : rows.map((i) => values[i]);
    out[name] = tf.tensor(dtype === 'float32' ? picked.map((v) => (v === null ? NaN : v)) : picked,
                          [picked.length], dtype);
  }
  return out;
}

// Answers keyed by the signature's output names (probability, ...), not the graph's node names.
async function predict(model, signature, inputs) {
  const keys = Object.keys(signature.outputs);
  let outputs = await model.executeAsync(inputs, keys.map((k) => signature.outputs[k].name));
  outputs = Array.isArray(outputs) ? outputs : [outputs];
  const answer = {};
  keys.forEach((key, i) => { answer[key] = outputs[i].arraySync(); });
  tf.dispose([...outputs, ...Object.values(inputs)]);
  return answer;
}

async function main() {
  // The request first: the pipeline starts Node before the model is converted, and sends the
  // request once it is.
  const request = JSON.parse(fs.readFileSync(0, 'utf8'));
  const artifacts = modelArtifacts(process.argv[2]);
  const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const count = Math.min(request.alone, Object.values(request.inputs)[0].length);
  const batch = await predict(model, artifacts.signature, tensors(request, null));
  const rows = [];
  for (let i = 0; i < count; i += 1) rows.push(await predict(model, artifacts.signature, tensors(request, [i])));
  process.stdout.write(JSON.stringify({ batch, rows }));
}

// Also a module: bench.js (bench/formats.py's TF.js timing) loads the model and calls it the same way.
module.exports = { modelArtifacts, tensors, predict };

if (require.main === module) {
  main().catch((error) => { process.stderr.write(`${error.stack || error}\n`); process.exit(1); });
}

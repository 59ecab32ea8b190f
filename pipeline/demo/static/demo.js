// Runs the pushed TF.js model in the page (pipeline/demo/): the form's values, first taken from the
// page's query string, are one row of raw features; an empty field is the column's missing value, the
// marker the model's serving_raw takes (models/missing_values.py).
'use strict';
const config = JSON.parse(document.getElementById('demo-config').textContent);
const form = document.getElementById('features');
const prediction = document.getElementById('prediction');

function tensorOf(name, text) {
  const dtype = config.inputs[name];
  if (dtype === 'string') return tf.tensor([text === '' ? config.missingString : text], [1], dtype);
  let value = dtype === 'float32' ? NaN : config.missingInt;
  if (text.trim() !== '') {
    value = Number(text);
    if (!Number.isFinite(value) || (dtype === 'int32' && !Number.isInteger(value))) {
      throw new RangeError(`${name}: "${text}" is not ${dtype === 'int32' ? 'an integer' : 'a number'}`);
    }
  }
  return tf.tensor([value], [1], dtype);
}

function describe(answer) {
  if (config.task === 'binary') return `${config.label}: probability ${answer.probability.toFixed(4)}`;
  if (config.task === 'regression') return `${config.label}: ${answer.prediction.toPrecision(6)}`;
  const ranked = answer.classes.map((c, i) => [c, answer.probabilities[i]]).sort((a, b) => b[1] - a[1]);
  return `${config.label}: ${ranked[0][0]}\n${ranked.map(([c, p]) => `${c} ${p.toFixed(4)}`).join(' · ')}`;
}

async function predict(model) {
  const inputs = {};
  try {
    for (const name of Object.keys(config.inputs)) {
      inputs[name] = tensorOf(name, form.elements.namedItem(name).value);
    }
  } catch (error) {
    tf.dispose(Object.values(inputs));
    if (!(error instanceof RangeError)) throw error;
    prediction.textContent = error.message;  // the user's value, not the page, is wrong
    prediction.dataset.state = 'invalid';
    return;
  }
  const keys = Object.keys(config.outputs);
  let outputs = await model.executeAsync(inputs, keys.map((k) => config.outputs[k]));
  outputs = Array.isArray(outputs) ? outputs : [outputs];
  // One row: each output's first (only) row, e.g. {probability: 0.83}.
  const answer = Object.fromEntries(keys.map((k, i) => [k, outputs[i].arraySync()[0]]));
  tf.dispose([...outputs, ...Object.values(inputs)]);
  prediction.textContent = describe(answer);
  prediction.dataset.answer = JSON.stringify(answer);
  prediction.dataset.state = 'done';
}

async function main() {
  const unknown = [];
  for (const [name, value] of new URLSearchParams(window.location.search)) {
    if (name in config.inputs) form.elements.namedItem(name).value = value;
    else unknown.push(name);
  }
  if (unknown.length) document.getElementById('notes').textContent = `Not an input of this model, ignored: ${unknown.join(', ')}`;
  // TF.js's CPU backend: the one the parity check before push ran this model on (in Node), and a
  // one-row prediction of a small model gains nothing from the GPU.
  await tf.setBackend('cpu');
  const model = await tf.loadGraphModel('/model/model.json');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const filled = [...new FormData(form)].filter(([, value]) => value !== '');
    window.history.replaceState(null, '', `?${new URLSearchParams(filled)}`);
    predict(model).catch(fail);
  });
  await predict(model);
}

function fail(error) {
  prediction.textContent = `The model failed: ${error.message}`;
  prediction.dataset.state = 'error';
  console.error(error);
}

main().catch(fail);

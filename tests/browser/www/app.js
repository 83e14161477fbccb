// Served by midge's http_dir: connects back to the same listener over ws:// (http page)
// or wss:// (https page) with MQTT 3.1.1 and 5.0, subscribes, publishes, receives its
// own message and one the Python side publishes when asked, then writes the results
// into the page (#results) and resolves window.midgeTest with them.
"use strict";

function once(client, event) {
  return new Promise((resolve, reject) => {
    client.once(event, resolve);
    client.once("error", reject);
  });
}

function waitFor(client, topic) {
  return new Promise((resolve) => {
    client.on("message", (received, payload, packet) => {
      if (received === topic) resolve({ payload: payload.toString(), packet });
    });
  });
}

async function run(version) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const tag = `${scheme}-v${version}`;
  const client = mqtt.connect(`${scheme}://${location.host}/mqtt`, {
    protocolVersion: version, clientId: `browser-${tag}`, reconnectPeriod: 0, connectTimeout: 10000,
  });
  const connack = await once(client, "connect");
  const echo = waitFor(client, `browser/${tag}/echo`);
  const fromPython = waitFor(client, `browser/${tag}/from-python`);
  const granted = await client.subscribeAsync(`browser/${tag}/#`, { qos: 1 });
  const options = { qos: 1 };
  if (version === 5) options.properties = { userProperties: { sent_by: tag } };
  await client.publishAsync(`browser/${tag}/echo`, `hello from ${tag}`, options);
  await client.publishAsync(`browser/${tag}/ready`, "", { qos: 1 });
  const [mine, theirs] = await Promise.all([echo, fromPython]);
  await client.endAsync();
  return {
    tag,
    scheme,
    protocolVersion: version,
    grantedQos: granted.map((g) => g.qos),
    sessionPresent: connack.sessionPresent,
    echo: mine.payload,
    echoQos: mine.packet.qos,
    fromPython: theirs.payload,
    fromPythonUserProperties: (theirs.packet.properties || {}).userProperties || null,
  };
}

window.midgeTest = (async () => {
  const results = { page: location.href, runs: [] };
  try {
    for (const version of [4, 5]) results.runs.push(await run(version));
  } catch (error) {
    results.error = String(error && error.stack || error);
  }
  document.getElementById("results").textContent = JSON.stringify(results, null, 2);
  return results;
})();

// Served by a midge node's http_dir (tests/browser/test_cluster.py). MQTT 5 over ws://:
// `subscribers` clients on the `sub` URL subscribe to cluster/<tag>/#; one client on the
// `pub` URL (another node, or the same `workers 2` port) publishes a message with every v5
// property, then asks Python, with cluster/<tag>/ready, to publish one with mosquitto_pub
// on the publishing node. Every subscriber must receive both; the results (with the
// properties as received) go into #results and resolve window.midgeTest.
"use strict";

const params = new URLSearchParams(location.search);

function once(client, event) {
  return new Promise((resolve, reject) => {
    client.once(event, resolve);
    client.once("error", reject);
  });
}

async function connect(url, clientId) {
  const client = mqtt.connect(url, { protocolVersion: 5, clientId, reconnectPeriod: 0, connectTimeout: 10000 });
  await once(client, "connect");
  return client;
}

function bytes(value) {
  return value == null ? null : Array.from(value);
}

function describe(payload, packet) {
  const props = packet.properties || {};
  return {
    payload: payload.toString(),
    qos: packet.qos,
    retain: packet.retain,
    userProperties: props.userProperties || null,
    contentType: props.contentType || null,
    responseTopic: props.responseTopic || null,
    correlationData: bytes(props.correlationData),
    payloadFormatIndicator: props.payloadFormatIndicator === undefined ? null : props.payloadFormatIndicator,
    messageExpiryInterval: props.messageExpiryInterval === undefined ? null : props.messageExpiryInterval,
    subscriptionIdentifier: props.subscriptionIdentifier === undefined ? null : props.subscriptionIdentifier,
  };
}

function collect(client, wanted) {
  const got = {};
  return new Promise((resolve) => {
    client.on("message", (topic, payload, packet) => {
      const name = topic.split("/").pop();
      if (wanted.includes(name) && !(name in got)) {
        got[name] = describe(payload, packet);
        if (wanted.every((w) => w in got)) resolve(got);
      }
    });
  });
}

async function run() {
  const tag = params.get("tag");
  const count = Number(params.get("subscribers") || "1");
  const subscribers = [];
  const received = [];
  for (let i = 0; i < count; i++) {
    const client = await connect(params.get("sub"), `${tag}-sub${i}`);
    received.push(collect(client, ["from-js", "from-mosquitto"]));
    const granted = await client.subscribeAsync(`cluster/${tag}/#`, {
      qos: 1, properties: { subscriptionIdentifier: 7 + i },
    });
    if (granted[0].qos !== 1) throw new Error(`granted ${JSON.stringify(granted)}`);
    subscribers.push(client);
  }
  const publisher = await connect(params.get("pub"), `${tag}-pub`);
  await publisher.publishAsync(`cluster/${tag}/from-js`, `js to ${tag}`, {
    qos: 1,
    properties: {
      userProperties: { sent_by: tag },
      contentType: "text/plain",
      responseTopic: `cluster/${tag}/reply`,
      correlationData: new Uint8Array([0, 1, 255]),
      payloadFormatIndicator: true,
      messageExpiryInterval: 600,
    },
  });
  await publisher.publishAsync(`cluster/${tag}/ready`, "", { qos: 1 });
  const results = await Promise.all(received);
  for (const client of [...subscribers, publisher]) await client.endAsync();
  return results;
}

window.midgeTest = (async () => {
  const results = { page: location.href };
  try {
    results.subscribers = await run();
  } catch (error) {
    results.error = String(error && error.stack || error);
  }
  document.getElementById("results").textContent = JSON.stringify(results, null, 2);
  return results;
})();

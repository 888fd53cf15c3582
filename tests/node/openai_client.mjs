// The official `openai` npm package against `layer serve`: one generation through a gate, and
// the error class a gate outside the key gets. Prints one JSON line per outcome.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.LAYER_BASE_URL,
  apiKey: process.env.LAYER_KEY,
  maxRetries: 0,
});

const { data: result, response } = await client.images
  .generate({ model: "art", prompt: "a fox from node", response_format: "b64_json" })
  .withResponse();
console.log(
  JSON.stringify({
    images: result.data.length,
    png: Buffer.from(result.data[0].b64_json, "base64").subarray(1, 4).toString(),
    revised: result.data[0].revised_prompt,
    cost: response.headers.get("x-layer-cost"),
    model: response.headers.get("x-layer-model"),
  }),
);

try {
  await client.images.generate({ model: "secret", prompt: "a fox" });
  console.log(JSON.stringify({ error: null }));
} catch (error) {
  console.log(
    JSON.stringify({
      error: error.constructor.name,
      denied: error instanceof OpenAI.PermissionDeniedError,
      status: error.status,
    }),
  );
}

const models = [];
for await (const model of client.models.list()) models.push(model.id);
console.log(JSON.stringify({ models }));

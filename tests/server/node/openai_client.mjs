// The official OpenAI Node.js client against `ternvk serve`: non-streaming and streaming chat, the
// legacy completions route, models, and errors surfacing as the client's typed errors.
// Usage: node openai_client.mjs <ternvk binary> <model.gguf>
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';

const [cli, model] = process.argv.slice(2);
if (!cli || !model) {
  console.error('usage: node openai_client.mjs <ternvk> <model.gguf>');
  process.exit(2);
}

const server = spawn(cli, ['serve', '-m', model, '--port', '0', '--parallel', '2', '--api-key', 'node-test-key'],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
const port = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 60000);
  server.stderr.on('data', (d) => {
    log += d;
    const m = log.match(/listening on http:\/\/[^:]+:(\d+)/);
    if (m) { clearTimeout(timer); resolve(Number(m[1])); }
  });
  server.on('exit', (code) => reject(new Error(`server exited (${code}):\n${log}`)));
});

const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'node-test-key', maxRetries: 0 });
try {
  const models = await client.models.list();
  const id = models.data[0].id;
  assert.equal(id, 'ternvk-shakespeare');

  const messages = [{ role: 'system', content: 'Thou art a player.' }, { role: 'user', content: 'What news?' }];
  const plain = await client.chat.completions.create({ model: id, messages, max_tokens: 16, temperature: 0 });
  const text = plain.choices[0].message.content;
  assert.equal(plain.object, 'chat.completion');
  assert.equal(plain.choices[0].message.role, 'assistant');
  assert.ok(text.length > 0, 'an answer');
  assert.ok(['stop', 'length'].includes(plain.choices[0].finish_reason));
  assert.ok(plain.usage.prompt_tokens > 0 && plain.usage.completion_tokens > 0);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

  const stream = await client.chat.completions.create({
    model: id, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let streamed = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length > 0) {
      streamed += chunk.choices[0].delta?.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks >= 3, 'several chunks');
  assert.equal(streamed, text, 'greedy: streamed text equals the non-streamed answer');
  assert.equal(finish, plain.choices[0].finish_reason);
  assert.deepEqual(usage, plain.usage);

  const completion = await client.completions.create({ model: id, prompt: 'ROMEO:', max_tokens: 8, temperature: 0 });
  assert.equal(completion.usage.completion_tokens, 8);
  assert.ok(completion.choices[0].text.length > 0);

  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }),
                       (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  await assert.rejects(client.chat.completions.create({ model: id, messages, n: 2 }),
                       (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'n');
  const stranger = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  console.log(`ok: openai ${OpenAI.VERSION ?? ''} against ternvk serve on port ${port}: "${text}"`);
} catch (e) {
  console.error(e);
  console.error('server log:\n' + log);
  process.exitCode = 1;
} finally {
  server.removeAllListeners('exit');
  const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve(code ?? signal)));
  server.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) {
    console.error(`server exit status after SIGTERM: ${code}\n${log}`);
    process.exitCode = 1;
  }
}

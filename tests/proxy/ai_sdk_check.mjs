// Drives the Vercel AI SDK against a running rxllm proxy; prints one JSON object of results.
// Run by tests/proxy/test_ai_sdk.py (copied next to an npm install of ai, @ai-sdk/openai, @ai-sdk/anthropic).
import { streamText, generateText, readUIMessageStream, DefaultChatTransport, tool, jsonSchema } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';

const base = process.argv[2];
const openai = createOpenAI({ baseURL: base + '/v1', apiKey: 'unused' });
const anthropic = createAnthropic({ baseURL: base + '/v1', apiKey: 'unused' });
const weather = tool({ description: 'weather', inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } } }) });
const out = {};

const r = streamText({ model: openai('echo'), prompt: 'Hello from the Responses provider' });
out.responsesText = '';
for await (const t of r.textStream) out.responsesText += t;
out.responsesFinish = await r.finishReason;
out.responsesOutputTokens = (await r.usage).outputTokens;

const calls = await generateText({ model: openai('tools'), prompt: 'weather?', tools: { get_weather: weather } });
out.responsesToolCalls = calls.toolCalls.map(c => [c.toolName, c.input]);

const first = await generateText({ model: openai('echo'), prompt: 'turn one', providerOptions: { openai: { store: false } } });
const second = await generateText({
  model: openai('echo'),
  messages: [{ role: 'user', content: 'turn one' }, ...first.response.messages, { role: 'user', content: 'turn two' }],
  providerOptions: { openai: { store: false } },
});
out.responsesSecondTurn = second.text;

const a = streamText({ model: anthropic('echo'), prompt: 'Hello from the Anthropic provider', maxOutputTokens: 100 });
out.messagesText = '';
for await (const t of a.textStream) out.messagesText += t;
out.messagesFinish = await a.finishReason;
const aCalls = await generateText({ model: anthropic('tools'), prompt: 'weather?', tools: { get_weather: weather }, maxOutputTokens: 100 });
out.messagesToolCalls = aCalls.toolCalls.map(c => [c.toolName, c.input]);

const transport = new DefaultChatTransport({ api: base + '/api/chat?model=echo' });
const stream = await transport.sendMessages({
  chatId: 'c1', trigger: 'submit-message', messageId: undefined, abortSignal: undefined,
  messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'Hello from useChat' }] }],
});
let last;
for await (const message of readUIMessageStream({ stream })) last = message;
out.uiRole = last.role;
out.uiTexts = last.parts.filter(p => p.type === 'text').map(p => p.text);

console.log(JSON.stringify(out));

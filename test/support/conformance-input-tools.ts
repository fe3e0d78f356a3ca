import {
  acceptedContent,
  CLIENT_CAPABILITIES_META_KEY,
  type CallToolResult,
  type ClientCapabilities,
  type ElicitRequestFormParams,
  type InputRequests,
  inputRequired,
  type McpServer,
  type RequestStateCodec,
  type ServerContext,
} from '@modelcontextprotocol/server';
import { z } from 'zod';

/** What the fixture's multi-round tools carry in their HMAC-sealed `requestState`. */
export interface FixtureRequestState {
  step: number;
  name?: string;
}

const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] });

const askName = (message: string): ElicitRequestFormParams => ({
  message,
  requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
});

/** SEP-1034: a default on every primitive type of an elicitation schema. */
const SEP1034_DEFAULTS: ElicitRequestFormParams = {
  message: 'Please review and update the form fields with defaults',
  requestedSchema: {
    type: 'object',
    properties: {
      name: { type: 'string', description: 'User name', default: 'John Doe' },
      age: { type: 'integer', description: 'User age', default: 30 },
      score: { type: 'number', description: 'User score', default: 95.5 },
      status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', description: 'Verification status', default: true },
    },
    required: [],
  },
};

/** SEP-1330: the five enum shapes (untitled, titled via oneOf, legacy enumNames, and both multi-selects). */
const SEP1330_ENUMS: ElicitRequestFormParams = {
  message: 'Please select options from the enum fields',
  requestedSchema: {
    type: 'object',
    properties: {
      untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
      titledSingle: {
        type: 'string',
        description: 'Select one option with titles',
        oneOf: [
          { const: 'value1', title: 'First Option' },
          { const: 'value2', title: 'Second Option' },
          { const: 'value3', title: 'Third Option' },
        ],
      },
      legacyEnum: {
        type: 'string',
        description: 'Select one option (legacy)',
        enum: ['opt1', 'opt2', 'opt3'],
        enumNames: ['Option One', 'Option Two', 'Option Three'],
      },
      untitledMulti: {
        type: 'array',
        description: 'Select multiple options',
        minItems: 1,
        maxItems: 3,
        items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      },
      titledMulti: {
        type: 'array',
        description: 'Select multiple options with titles',
        minItems: 1,
        maxItems: 3,
        items: {
          anyOf: [
            { const: 'value1', title: 'First Choice' },
            { const: 'value2', title: 'Second Choice' },
            { const: 'value3', title: 'Third Choice' },
          ],
        },
      },
    },
    required: [],
  },
};

function elicitResponse(ctx: ServerContext, key: string): { action: string; content?: unknown } | undefined {
  return ctx.mcpReq.inputResponses?.[key] as { action: string; content?: unknown } | undefined;
}

function sampledText(ctx: ServerContext, key: string): string | undefined {
  const content = (ctx.mcpReq.inputResponses?.[key] as { content?: { type?: string; text?: unknown } } | undefined)?.content;
  return content?.type === 'text' && typeof content.text === 'string' ? content.text : undefined;
}

/** The input requests of `requests` whose key has no response yet (the MRTR spec: re-request what is missing). */
function missing(ctx: ServerContext, requests: InputRequests): InputRequests | undefined {
  const open = Object.entries(requests).filter(([key]) => ctx.mcpReq.inputResponses?.[key] === undefined);
  return open.length === 0 ? undefined : Object.fromEntries(open);
}

/**
 * The conformance tools and prompt that need input from the client (sampling, elicitation,
 * roots), each written once as a multi-round-trip handler (MRTR, spec basic/patterns/mrtr):
 * it returns `inputRequired(...)` until the retry carries the `inputResponses` it asked for.
 * On 2026-07-28 the client answers in a retry; on a 2025-11-25 session the SDK's legacy shim
 * sends the same requests as real server→client requests on the call's SSE stream. Every
 * `requestState` is sealed by `codec` (HMAC), which the server's `requestState.verify` checks.
 */
export function registerInputTools(server: McpServer, codec: RequestStateCodec<FixtureRequestState>): void {
  // 2025-11-25 scenarios: tools-call-sampling, tools-call-elicitation, elicitation-sep1034-defaults, -sep1330-enums.
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client to sample a completion of the prompt', inputSchema: z.object({ prompt: z.string() }) },
    ({ prompt }, ctx) => {
      const answer = sampledText(ctx, 'completion');
      if (answer !== undefined) return text(`LLM response: ${answer}`);
      return inputRequired({
        inputRequests: { completion: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 }) },
      });
    },
  );
  server.registerTool(
    'test_elicitation',
    { description: 'Asks the user for a username and an email address', inputSchema: z.object({ message: z.string() }) },
    ({ message }, ctx) => {
      const response = elicitResponse(ctx, 'user');
      if (response) return text(`User response: action=${response.action}, content=${JSON.stringify(response.content ?? {})}`);
      const requestedSchema = {
        type: 'object' as const,
        properties: { username: { type: 'string' as const, description: "User's response" }, email: { type: 'string' as const, description: "User's email address" } },
        required: ['username', 'email'],
      };
      return inputRequired({ inputRequests: { user: inputRequired.elicit({ message, requestedSchema }) } });
    },
  );
  for (const [name, params] of [
    ['test_elicitation_sep1034_defaults', SEP1034_DEFAULTS],
    ['test_elicitation_sep1330_enums', SEP1330_ENUMS],
  ] as const) {
    server.registerTool(name, { description: params.message }, (ctx) => {
      const response = elicitResponse(ctx, 'form');
      if (response) return text(`Elicitation completed: action=${response.action}, content=${JSON.stringify(response.content ?? {})}`);
      return inputRequired({ inputRequests: { form: inputRequired.elicit(params) } });
    });
  }

  // 2026-07-28 scenarios: input-required-result-* and server-stateless.
  server.registerTool('test_input_required_result_elicitation', { description: 'MRTR: asks for a name' }, (ctx) => {
    const answer = acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'user_name');
    if (typeof answer?.name === 'string') return text(`Hello, ${answer.name}!`);
    return inputRequired({ inputRequests: { user_name: inputRequired.elicit(askName('What is your name?')) } });
  });
  server.registerTool('test_input_required_result_sampling', { description: 'MRTR: asks for a sampled answer' }, (ctx) => {
    const answer = sampledText(ctx, 'capital_question');
    if (answer !== undefined) return text(`Sampling result: ${answer}`);
    const question = { role: 'user' as const, content: { type: 'text' as const, text: 'What is the capital of France?' } };
    return inputRequired({ inputRequests: { capital_question: inputRequired.createMessage({ messages: [question], maxTokens: 100 }) } });
  });
  server.registerTool('test_input_required_result_list_roots', { description: 'MRTR: asks for the client roots' }, (ctx) => {
    const roots = (ctx.mcpReq.inputResponses?.client_roots as { roots?: { uri: string }[] } | undefined)?.roots;
    if (Array.isArray(roots)) return text(`Roots: ${roots.map((root) => root.uri).join(', ')}`);
    return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
  });
  for (const name of ['test_input_required_result_request_state', 'test_input_required_result_tampered_state']) {
    server.registerTool(name, { description: 'MRTR: asks for a confirmation, with sealed requestState' }, async (ctx) => {
      if (ctx.mcpReq.requestState<FixtureRequestState>()?.step === 1 && elicitResponse(ctx, 'confirm')) return text('state-ok: confirmed');
      const confirm = inputRequired.elicit({
        message: 'Please confirm',
        requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
      });
      return inputRequired({ inputRequests: { confirm }, requestState: await codec.mint({ step: 1 }) });
    });
  }
  server.registerTool('test_input_required_result_multiple_inputs', { description: 'MRTR: elicitation, sampling and roots at once' }, async (ctx) => {
    const requests: InputRequests = {
      user_name: inputRequired.elicit(askName('What is your name?')),
      greeting: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }], maxTokens: 50 }),
      client_roots: inputRequired.listRoots(),
    };
    const open = ctx.mcpReq.requestState<FixtureRequestState>()?.step === 1 ? missing(ctx, requests) : requests;
    if (!open) return text(`Received ${Object.keys(requests).join(', ')}`);
    return inputRequired({ inputRequests: open, requestState: await codec.mint({ step: 1 }) });
  });
  server.registerTool('test_input_required_result_multi_round', { description: 'MRTR: two rounds of elicitation' }, async (ctx) => {
    const state = ctx.mcpReq.requestState<FixtureRequestState>();
    const askColor = async (name: string) => {
      const step2 = inputRequired.elicit({
        message: 'Step 2: What is your favorite color?',
        requestedSchema: { type: 'object', properties: { color: { type: 'string' } }, required: ['color'] },
      });
      return inputRequired({ inputRequests: { step2 }, requestState: await codec.mint({ step: 2, name }) });
    };
    if (state?.step === 2 && state.name !== undefined) {
      const color = acceptedContent<{ color?: unknown }>(ctx.mcpReq.inputResponses, 'step2')?.color;
      return typeof color === 'string' ? text(`${state.name} likes ${color}`) : askColor(state.name);
    }
    const name = acceptedContent<{ name?: unknown }>(ctx.mcpReq.inputResponses, 'step1')?.name;
    if (state?.step === 1 && typeof name === 'string') return askColor(name);
    return inputRequired({ inputRequests: { step1: inputRequired.elicit(askName('Step 1: What is your name?')) }, requestState: await codec.mint({ step: 1 }) });
  });
  server.registerTool('test_input_required_result_capabilities', { description: 'MRTR: asks only for what the client declared' }, (ctx) => {
    // The SDK types the envelope as {}; its client-capabilities key holds ClientCapabilities.
    const declared = (ctx.mcpReq.envelope as { [CLIENT_CAPABILITIES_META_KEY]?: ClientCapabilities } | undefined)?.[CLIENT_CAPABILITIES_META_KEY];
    const requests: InputRequests = {};
    if (declared?.sampling) requests.summary = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Summarize' } }], maxTokens: 50 });
    if (declared?.elicitation) requests.user_name = inputRequired.elicit(askName('What is your name?'));
    const open = missing(ctx, requests);
    return open ? inputRequired({ inputRequests: open }) : text('No input needed');
  });
  server.registerPrompt('test_input_required_result_prompt', { description: 'MRTR: a prompt that asks for context' }, (ctx) => {
    const context = acceptedContent<{ context?: unknown }>(ctx.mcpReq.inputResponses, 'user_context')?.context;
    if (typeof context === 'string') return { messages: [{ role: 'user', content: { type: 'text', text: `Context: ${context}` } }] };
    const ask = inputRequired.elicit({
      message: 'What context should the prompt use?',
      requestedSchema: { type: 'object', properties: { context: { type: 'string' } }, required: ['context'] },
    });
    return inputRequired({ inputRequests: { user_context: ask } });
  });
  // server-stateless probes: a tool that needs sampling (the SDK answers -32021 with HTTP 400 when
  // the request's capabilities lack it, SEP-2575), one whose stream carries only its result, one
  // that logs (the SDK drops the log unless the request's _meta names a logLevel).
  server.registerTool('test_missing_capability', { description: 'Needs the sampling capability' }, (ctx) => {
    if (ctx.mcpReq.inputResponses?.probe !== undefined) return text('Success');
    return inputRequired({ inputRequests: { probe: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'ping' } }], maxTokens: 1 }) } });
  });
  server.registerTool('test_streaming_elicitation', { description: 'Answers with an input-required result only' }, (ctx) => {
    if (elicitResponse(ctx, 'user_name')) return text('Streaming complete');
    return inputRequired({ inputRequests: { user_name: inputRequired.elicit(askName('What is your name?')) } });
  });
  server.registerTool('test_logging_tool', { description: 'Logs once, at info' }, async (ctx) => {
    await ctx.mcpReq.log('info', 'Diagnostic trace logging activated');
    return text('Logging evaluated');
  });
}

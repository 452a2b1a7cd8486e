/**
 * The structured-output benchmark: what a JSON-schema request costs against the same request
 * without one, on cuda-llama's server and on llama.cpp's `llama-server` (the same model file, slots,
 * per-slot window, threads and batches as serve.ts gives them), and what one grammar request in the
 * batch costs the plain requests beside it.
 *
 *   npx tsx test/bench/structured.ts [--model tinyllama1b|small|tiny|file.gguf] [--quant Q4_0] [--rounds 8]
 *     [--clients 1,8] [--parallel 8] [--ctx 512] [--max-tokens 48] [--prompt-tokens 32] [--requests 8]
 *     [--threads N] [--batch 2048] [--ubatch 512] [--constraint grammar|response_format] [--gpu] [--out DIR] [--write-docs]
 *
 * A round starts each server in turn (alternating which goes first), sends one excluded plain and one
 * excluded schema request, then at each client count runs the plain requests and the schema requests
 * (which kind goes first alternates every two rounds) and, at the largest count, between those two,
 * the mixed level: client 0 sends schema requests, the others plain ones. Every request is greedy
 * (temperature 0) with ignore_eos, on the copy of the model whose end-of-generation rows are zero
 * (serve-servers.ts withoutEndOfGeneration), so each generates exactly --max-tokens tokens; the
 * schema (benchSchema below) cannot be completed in fewer, so a grammar never leaves end-of-generation
 * as the only token. A request with another count, or schema output that does not open as the
 * schema's JSON, is an error. A schema request carries the schema's grammar as `grammar` by default;
 * `--constraint response_format` sends the schema itself as `response_format`, for real models:
 * llama-server refuses it on the synthetic ones (RESPONSE_FORMAT_HINT). Ratios are medians of
 * per-round ratios with their 95% interval (stats.ts); the page is structured-report.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { fail, log, repoRoot, roundOrder } from './common.js';
import { percentile, promptText, runLevel, type LevelRun, type RequestSpec } from './serve-load.js';
import { measureLevel, prepareServers, resolveServeModel, runHeader, serveBenchOptions, serveBenchSettings } from './serve-run.js';
import { SERVERS, startServer, type RunningServer, type ServerName } from './serve-servers.js';
import { stats } from './stats.js';
import { renderPage, type BesideFigures, type Kind, type KindLevel, type SideRound, type StructuredResult } from './structured-report.js';

const usage =
  'usage: npx tsx test/bench/structured.ts [--model tinyllama1b|small|tiny|file.gguf] [--quant Q4_0] [--rounds 8] [--clients 1,8] ' +
  '[--parallel 8] [--ctx 512] [--max-tokens 48] [--prompt-tokens 32] [--requests 8] [--threads N] [--batch 2048] [--ubatch 512] ' +
  '[--constraint grammar|response_format] [--gpu] [--out test/bench/results/structured] [--write-docs]';

/**
 * An object with one required array of short strings, at least `minItems` of them. Each item takes
 * a token at least (its closing quote, the comma and the next opening quote can be one token, `","`),
 * so with minItems twice the token limit the JSON cannot close within it: the grammar never comes
 * to the point where end-of-generation is the only token left, which ignore_eos would forbid.
 * Strings admit most of the vocabulary, so the grammar checks nearly every candidate token.
 */
function benchSchema(minItems: number): Record<string, unknown> {
  return {
    type: 'object',
    properties: { items: { type: 'array', items: { type: 'string', maxLength: 8 }, minItems } },
    required: ['items'],
    additionalProperties: false,
  };
}

/**
 * llama.cpp's json_schema_to_grammar of benchSchema (as llama-server logs it), without what a chat
 * response format adds to it: the template's generation prompt as the root's first literal and a
 * ```json fence as an alternative. Sent as `grammar` (a user grammar, which neither server feeds the
 * generation prompt through), the default, since llama-server refuses `response_format` on the
 * synthetic models (RESPONSE_FORMAT_HINT; --constraint).
 */
function benchGrammar(minItems: number): string {
  return [
    'root ::= "{" space "\\"items\\"" space ":" space items space "}"',
    `items ::= "[" space item ("," space item){${minItems - 1},} space "]"`,
    'item ::= "\\"" char{0,8} "\\""',
    'char ::= [^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})',
    'space ::= | " " | "\\n"{1,2} [ \\t]{0,20}',
  ].join('\n');
}

/**
 * How the constrained output opens; checked on every schema request (a server that ignored the
 * constraint would fail it). A response format's grammar also admits a ```json fence first.
 */
const SCHEMA_OPENING = /^\s*(```json\s*)?\{\s*"items"\s*:\s*\[/;

/**
 * Known failure of `response_format` on the benchmark's models in llama-server (llama.cpp
 * common_sampler_init at the pinned commit; cuda-llama aligns the grammar with it, AlignWithPrefill): an output-format grammar starts with the template's
 * generation prompt and is fed its tokens, skipping the first token when its text starts with a
 * space; with the SPM vocabulary and the chatml template that token is " <" (no <|im_start|> token),
 * so "<" is lost, the grammar rejects the rest and the sampler cannot be made ("std::exception";
 * upstream ggml-org/llama.cpp#23775 and #29006 are this family).
 */
const RESPONSE_FORMAT_HINT =
  "response_format may be refused on this model by llama-server (the output grammar is fed the chat template's generation prompt, " +
  'whose first token " <" it drops: see RESPONSE_FORMAT_HINT in structured.ts); --constraint grammar (the default) sends the same grammar as `grammar`';

/** Every request's problem, if any: the checks the header describes. */
function checkRun(run: LevelRun, maxTokens: number): { errors: number; firstErrors: string[] } {
  const problems = run.requests.flatMap((r) => {
    if (r.error !== undefined) return [r.error];
    if (r.completionTokens !== maxTokens)
      return [`${r.completionTokens ?? 'no usage:'} completion tokens, not ${maxTokens} (finish_reason ${r.finishReason ?? 'none'})`];
    if (r.kind === 'schema' && !SCHEMA_OPENING.test(r.text ?? ''))
      return [`not the schema's JSON: ${JSON.stringify(r.text?.slice(0, 60))}`];
    return [];
  });
  return { errors: problems.length, firstErrors: [...new Set(problems)].slice(0, 3) };
}

function besideFigures(run: LevelRun): BesideFigures {
  const plain = run.requests.filter((r) => r.client !== 0 && r.error === undefined);
  const decode = plain.flatMap((r) => {
    const tokens = r.completionTokens ?? r.contentEvents;
    const seconds = (r.totalMs - (r.ttftMs ?? r.totalMs)) / 1000;
    return tokens > 1 && seconds > 0 ? [(tokens - 1) / seconds] : [];
  });
  return {
    itlP50Ms: percentile(
      plain.flatMap((r) => r.gapsMs),
      50,
    ),
    decodeTokensPerSecond: decode.length ? stats(decode).median : NaN,
  };
}

async function measure(server: RunningServer, clients: number, specs: RequestSpec[], maxTokens: number) {
  const { run, level } = await measureLevel(server, clients, specs, maxTokens);
  return { run, level: { ...level, ...checkRun(run, maxTokens) } satisfies KindLevel };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ...serveBenchOptions({
        clients: '1,8',
        parallel: '8',
        ctx: '512',
        maxTokens: '48',
        out: join(repoRoot, 'test', 'bench', 'results', 'structured'),
      }),
      constraint: { type: 'string', default: 'grammar' },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return;
  }
  const { rounds, levels, maxTokens, promptTokens, minRequests, threads, parallel, slotContext, batch, ubatch } = serveBenchSettings(
    values,
    usage,
  );
  const neighbourClients = levels.at(-1)!;
  if (neighbourClients < 2) fail(`--clients ${values.clients}: the largest count is the neighbour level, which needs 2 clients at least`);
  if (2 * maxTokens > 2000)
    fail(`--max-tokens ${maxTokens}: the schema's minItems (2 × max-tokens) must stay within llama.cpp's repetition limit, 2000`);
  const constraint = values.constraint;
  if (constraint !== 'grammar' && constraint !== 'response_format')
    fail(`--constraint must be grammar or response_format, got ${JSON.stringify(constraint)}\n${usage}`);

  const sourceModel = await resolveServeModel(values.model, values.quant);
  const served = await prepareServers(sourceModel, {
    parallel,
    slotContext,
    threads,
    batch,
    ubatch,
    gpu: values.gpu,
  });
  const { setup } = served;
  const schema = benchSchema(Math.max(40, 2 * maxTokens));
  const grammar = benchGrammar(Math.max(40, 2 * maxTokens));
  const bodies: Record<'plain' | 'schema', Record<string, unknown>> = {
    plain: { ignore_eos: true },
    schema:
      constraint === 'grammar'
        ? { ignore_eos: true, grammar }
        : { ignore_eos: true, response_format: { type: 'json_schema', json_schema: { name: 'bench', schema } } },
  };
  const spec = (id: number, kind: 'plain' | 'schema'): RequestSpec => ({
    kind,
    content: promptText(id, promptTokens),
    maxTokens,
    body: bodies[kind],
    keepText: kind === 'schema',
  });
  // Distinct prompts per level and kind (a server must not reuse a cached prompt from the level
  // before), the same on both servers and in every round (each round restarts both).
  const perLevel = levels.map((clients) => clients * Math.ceil(minRequests / clients));
  const specs = (li: number, kind: Kind): RequestSpec[] =>
    Array.from({ length: perLevel[li]! }, (_, i) =>
      spec(
        (li * 3 + ['plain', 'schema', 'mixed'].indexOf(kind)) * 100_000 + i + 1,
        kind === 'schema' || (kind === 'mixed' && i % levels[li]! === 0) ? 'schema' : 'plain',
      ),
    );
  const warmup = [spec(9_000_000, 'plain'), spec(9_000_001, 'schema')];
  log(
    `${rounds} rounds x ${SERVERS.join(' and ')} x clients ${levels.join(', ')} x plain and schema (${perLevel.join(', ')} requests), mixed at ${neighbourClients}; ` +
      `${parallel} slots of ${slotContext} tokens, ${threads} threads, model ${relative(repoRoot, served.path)}`,
  );

  const started = Date.now();
  const result: StructuredResult['rounds'] = [];
  const commands: Partial<Record<ServerName, string>> = {};
  const exits: Record<ServerName, string[]> = { 'cuda-llama': [], 'llama-server': [] };
  for (let r = 0; r < rounds; r++) {
    const order = roundOrder(SERVERS, r);
    // Every two rounds, so that each server order meets each kind order.
    const kinds: ('plain' | 'schema')[] = Math.floor(r / 2) % 2 === 0 ? ['plain', 'schema'] : ['schema', 'plain'];
    const round: StructuredResult['rounds'][number] = { first: order[0]!, kindsFirst: kinds[0]!, sides: {} };
    for (const name of order) {
      const startedAt = Date.now();
      const server = await startServer(name, setup);
      log(`round ${r + 1}/${rounds} ${name}: ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (pid ${server.pid})`);
      commands[name] = server.command;
      try {
        // One client: the plain request, then the schema one; either failing a check stops the run at once.
        const warm = await runLevel(server.baseUrl, 1, warmup);
        const problems = checkRun(warm, maxTokens).firstErrors;
        const schemaRefused = warm.requests.some((q) => q.kind === 'schema' && q.error !== undefined);
        if (problems.length)
          throw new Error(
            `${name}: the warm-up requests (plain, then schema): ${problems.join(' | ')}` +
              `${constraint === 'response_format' && schemaRefused ? `\n${RESPONSE_FORMAT_HINT}` : ''}\n${server.outputTail()}`,
          );
        const levelsOut: SideRound['levels'] = [];
        let neighbour: SideRound['neighbour'] | undefined;
        for (const [li, clients] of levels.entries()) {
          const steps: Kind[] = clients === neighbourClients ? [kinds[0]!, 'mixed', kinds[1]!] : kinds;
          const got: Partial<Record<Kind, { run: LevelRun; level: KindLevel }>> = {};
          for (const kind of steps) {
            got[kind] = await measure(server, clients, specs(li, kind), maxTokens);
            const { figures: f, errors, firstErrors, otherCpu } = got[kind].level;
            log(
              `round ${r + 1}/${rounds} ${name} ${clients} clients ${kind}: ${f.tokensPerSecond.toFixed(1)} tok/s, ITL p50 ${f.itlP50Ms.toFixed(1)} ms, ` +
                `${f.completionTokens} tokens in ${f.requests} requests, errors ${errors}${firstErrors.length ? ` (${firstErrors.join(' | ')})` : ''}, ` +
                `other processes ${(otherCpu * 100).toFixed(0)}% CPU`,
            );
            if (server.exited())
              throw new Error(`${name} ${server.exited()} during the ${clients}-client ${kind} level:\n${server.outputTail()}`);
          }
          levelsOut.push({ clients, plain: got.plain!.level, schema: got.schema!.level });
          if (got.mixed)
            neighbour = { clients, mixed: got.mixed.level, alone: besideFigures(got.plain!.run), beside: besideFigures(got.mixed.run) };
        }
        round.sides[name] = { levels: levelsOut, neighbour: neighbour! };
      } finally {
        exits[name].push(await server.stop());
      }
    }
    result.push(round);
    log(`round ${r + 1}/${rounds} done, ${((Date.now() - started) / 1000).toFixed(0)} s so far`);
  }
  const wallS = (Date.now() - started) / 1000;

  const structured: StructuredResult = {
    ...(await runHeader({
      script: 'structured.ts',
      sourceModel,
      served,
      settings: {
        rounds,
        levels,
        neighbourClients,
        parallel,
        slotContext,
        threads,
        batch: setup.batch,
        ubatch: setup.ubatch,
        maxTokens,
        promptTokens,
        gpu: setup.cudaDevices ?? null,
      },
      requestsPerLevel: perLevel,
      commands,
      exits,
      wallSeconds: wallS,
    })),
    constraint,
    schema,
    ...(constraint === 'grammar' ? { grammar } : {}),
    rounds: result,
  };
  const page = renderPage(structured);
  await mkdir(values.out, { recursive: true });
  await writeFile(join(values.out, 'result.json'), `${JSON.stringify(structured, null, 1)}\n`);
  await writeFile(join(values.out, 'structured.md'), page);
  if (values['write-docs']) {
    const docs = join(repoRoot, 'test', 'bench', 'results', 'latest', values.gpu ? 'structured-gpu.md' : 'structured.md');
    await writeFile(docs, page);
    log(`wrote ${relative(repoRoot, docs)}`);
  }
  process.stderr.write(`\n${page}\n`);
  process.stdout.write(`${JSON.stringify(structured)}\n`);
  log(`measured in ${wallS.toFixed(0)} s; wrote ${relative(repoRoot, join(values.out, 'result.json'))} and structured.md`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  // The exit hook of serve-servers.ts kills any server still running.
  process.exit(1);
});

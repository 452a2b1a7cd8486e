/**
 * Server-sent events on a raw Node response, as OpenAI streams them: one `data: {json}` per event,
 * `data: [DONE]` at the end. The status line goes out with the first event (or the first ping), so
 * that an error before it can still be an ordinary JSON error response.
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  readonly #res: ServerResponse;
  readonly #headers: Record<string, string>;
  #ping: NodeJS.Timeout | undefined;

  constructor(res: ServerResponse, headers: Record<string, string> = {}) {
    this.#res = res;
    this.#headers = headers;
  }

  /** The status line and headers are out: from now on an error is an event, not a status. */
  get started(): boolean {
    return this.#res.headersSent;
  }

  /** The client is gone, or the stream ended. */
  get closed(): boolean {
    return this.#res.destroyed || this.#res.writableEnded;
  }

  #start(): void {
    if (this.#res.headersSent) return;
    this.#res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies such as nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      ...this.#headers,
    });
    this.#res.flushHeaders();
  }

  /** Comment lines every `ms` until stopPings(): proxies and clients keep a slow prompt's stream open. */
  startPings(ms: number): void {
    this.#ping = setInterval(() => {
      if (this.closed) return;
      this.#start();
      this.#res.write(': ping\n\n');
    }, ms);
    this.#ping.unref();
  }

  stopPings(): void {
    clearInterval(this.#ping);
    this.#ping = undefined;
  }

  send(data: unknown): void {
    if (this.closed) return;
    this.#start();
    this.#res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** `data: [DONE]` and the end of the response. */
  done(): void {
    this.stopPings();
    if (this.closed) return;
    this.#start();
    this.#res.end('data: [DONE]\n\n');
  }

  /** Ends without [DONE] (after an error event). */
  end(): void {
    this.stopPings();
    if (!this.closed) this.#res.end();
  }
}

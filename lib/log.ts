/**
 * Where llama.cpp's log lines go. Off by default; `NODE_DEBUG=cuda-llama` shows them through
 * util.debuglog, and setLogger() hands them to the user's function. Never parsed for state.
 *
 * Per thread: the main thread and each worker_threads Worker has its own addon environment and its
 * own logger. A line goes to the environment whose load, context creation or generation logged it;
 * a line from a thread no environment owns (ggml's threadpool, llama.cpp's process-wide init) goes
 * to every environment that has a logger. A worker's exit releases only its own logger.
 */
import { debuglog } from 'node:util';
import { GgmlLogLevel, type NativeAddon } from './binding/native.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

const levelNames: Record<number, LogLevel> = {
  [GgmlLogLevel.DEBUG]: 'debug',
  [GgmlLogLevel.INFO]: 'info',
  [GgmlLogLevel.WARN]: 'warn',
  [GgmlLogLevel.ERROR]: 'error',
};
const levelNumbers: Record<LogLevel, number> = {
  debug: GgmlLogLevel.DEBUG,
  info: GgmlLogLevel.INFO,
  warn: GgmlLogLevel.WARN,
  error: GgmlLogLevel.ERROR,
};

const debug = debuglog('cuda-llama');

/** Installs the logger on the addon: the user's, else debuglog when enabled, else none. */
export function installLogger(addon: NativeAddon, logger: Logger | null, minLevel: LogLevel = 'info'): void {
  const sink: Logger | null = logger ?? (debug.enabled ? (level, message) => debug('[%s] %s', level, message.trimEnd()) : null);
  if (!sink) {
    // Errors are still captured natively for error messages; nothing is forwarded.
    addon.setLogger(null, GgmlLogLevel.NONE);
    return;
  }
  addon.setLogger((level, text) => {
    try {
      sink(levelNames[level] ?? 'info', text);
    } catch {
      // A throwing logger must not break generation; the line is dropped on purpose.
    }
  }, levelNumbers[minLevel]);
}

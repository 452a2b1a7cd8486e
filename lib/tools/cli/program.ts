/**
 * The `cuda-llama` program: commander set up once, so that every command inherits the same
 * behaviour. `--help` and `--version` print to stdout and exit 0; a usage mistake (unknown option
 * or command, missing argument, invalid value) prints one line and the command's help to stderr
 * and exits 2; a CudaLlamaError prints its code, message and remedy and exits 1. Anything else is a
 * bug and keeps its stack.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { packageRoot } from '../../binding/load-native.js';
import { CudaLlamaError } from '../../errors.js';

/** Where a command writes: stdout carries the answer, stderr the progress and the errors. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** What a command's action gets: where to write, and the exit code to end with (0 unless it sets one). */
export interface CliContext extends CliIo {
  exitCode: number;
}

/** Adds one command to the program; each command lives in a file of its own. */
export type RegisterCommand = (program: Command, context: CliContext) => void;

export interface Cli {
  program: Command;
  /** Runs the program on user arguments (without node and the script) and returns the exit code. */
  run(args: readonly string[]): Promise<number>;
}

/** Exit codes: 1 when something asked for failed, 2 when the command line itself was wrong (as getopt tools do). */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

function packageJson(): { version: string; description: string } {
  return JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8'));
}

/** Parses a count option ("--prompt 512"); commander turns the throw into a usage error naming the option. */
export function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('Expected a positive integer.');
  return Number(value);
}

/**
 * A TypeError or RangeError from lib/validate.ts: the library refused an argument, which on the
 * command line is a usage mistake rather than a bug.
 */
export function isArgumentError(error: unknown): error is TypeError | RangeError {
  const code = (error as { code?: unknown } | null)?.code;
  return (error instanceof TypeError || error instanceof RangeError) && (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE');
}

function withVersion(command: Command, version: string): void {
  for (const sub of command.commands) {
    // The implicit `help` command takes no options of its own.
    if (sub.name() !== 'help') sub.version(version);
    withVersion(sub, version);
  }
}

export function createCli(commands: readonly RegisterCommand[], io: CliIo = processIo): Cli {
  const pkg = packageJson();
  const context: CliContext = { out: io.out, err: io.err, exitCode: 0 };
  const program = new Command('cuda-llama')
    .description(pkg.description)
    .version(pkg.version)
    // Set before any command is added: subcommands copy these settings when they are created.
    .exitOverride()
    .showHelpAfterError()
    .showSuggestionAfterError()
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
      // Commander puts "(Did you mean ...?)" on a line of its own; the mistake is one line.
      outputError: (text, write) => write(`${text.trimEnd().replace(/\s*\n\s*/g, ' ')}\n`),
    });
  for (const register of commands) register(program, context);
  withVersion(program, pkg.version);

  async function run(args: readonly string[]): Promise<number> {
    try {
      await program.parseAsync(args, { from: 'user' });
      return context.exitCode;
    } catch (error) {
      // Help and version come through here too (exitOverride), with exit code 0.
      if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
      if (error instanceof CudaLlamaError) {
        io.err(`${error.code}: ${error.message}\n`);
        return EXIT_FAILURE;
      }
      io.err(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      return EXIT_FAILURE;
    }
  }
  return { program, run };
}

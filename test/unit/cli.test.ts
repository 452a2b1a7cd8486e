// The `cuda-llama` command as a user meets it: help and version everywhere, a usage mistake is one
// line and the usage with exit 2, a library error is its code and remedy with exit 1, never a stack.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CudaLlamaError, ErrorCode } from '../../lib/errors.js';
import { createCli, type CliIo } from '../../lib/tools/cli/program.js';
import { cli, stackLine } from '../helpers/cli.js';
import { repoRoot } from '../helpers/models.js';

const version: string = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;
describe('cuda-llama: help and version', () => {
  it.each([
    [['--help'], /^Usage: cuda-llama \[options\] \[command\]/],
    [['tune', '--help'], /^Usage: cuda-llama tune \[options\] <model\.gguf>/],
    [['doctor', '--help'], /^Usage: cuda-llama doctor \[options\]/],
    [['help', 'tune'], /^Usage: cuda-llama tune /],
  ])('%j: exit 0, usage on stdout', (args, usage) => {
    const { status, stdout, stderr } = cli(...args);
    expect(status).toBe(0);
    expect(stdout).toMatch(usage);
    expect(stderr).toBe('');
  });

  it('lists every command and option', () => {
    expect(cli('--help').stdout).toMatch(/doctor[\s\S]*tune/);
    const tune = cli('tune', '--help').stdout;
    for (const flag of ['--prompt', '--output', '--sequences', '--gpu', '--threads', '--reps', '--json']) expect(tune).toContain(flag);
    expect(tune).toMatch(/--prompt <tokens> +prompt tokens per request \(default: 512\)/);
    const doctor = cli('doctor', '--help').stdout;
    for (const flag of ['--json', '--cpu', '--no-probe']) expect(doctor).toContain(flag);
  });

  it.each([[['--version']], [['tune', '--version']], [['doctor', '-V']]])('%j: the package version', (args) => {
    const { status, stdout } = cli(...args);
    expect(status).toBe(0);
    expect(stdout).toBe(`${version}\n`);
  });
});

describe('cuda-llama: usage mistakes exit 2 with one line and the usage', () => {
  it.each([
    [['tune', '--bogus'], "error: unknown option '--bogus'", 'Usage: cuda-llama tune'],
    [['tune'], "error: missing required argument 'model.gguf'", 'Usage: cuda-llama tune'],
    [['nope'], "error: unknown command 'nope'", 'Usage: cuda-llama [options] [command]'],
    [['docter'], "error: unknown command 'docter' (Did you mean doctor?)", 'Usage: cuda-llama [options] [command]'],
    [
      ['tune', 'm.gguf', '--prompt', 'abc'],
      "error: option '--prompt <tokens>' argument 'abc' is invalid. Expected a positive integer.",
      'Usage: cuda-llama tune',
    ],
    [
      ['tune', 'm.gguf', '--reps', '0'],
      "error: option '--reps <n>' argument '0' is invalid. Expected a positive integer.",
      'Usage: cuda-llama tune',
    ],
    [
      ['tune', 'm.gguf', '--gpu', 'gpu'],
      "error: option '--gpu <policy>' argument 'gpu' is invalid. Allowed choices are auto, cuda, cpu.",
      'Usage: cuda-llama tune',
    ],
    // Past the library's own range: its check, named by the flag.
    [
      ['tune', 'm.gguf', '--sequences', '1000'],
      'error: --sequences must be an integer from 1 to 256, got number 1000',
      'Usage: cuda-llama tune',
    ],
    [['doctor', '--gpu'], "error: unknown option '--gpu' (Did you mean --cpu?)", 'Usage: cuda-llama doctor'],
    [['doctor', 'extra'], "error: too many arguments for 'doctor'. Expected 0 arguments but got 1.", 'Usage: cuda-llama doctor'],
  ])('%j', (args, error, usage) => {
    const { status, stdout, stderr } = cli(...args);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    const [first, ...rest] = stderr.split('\n');
    expect(first).toBe(error);
    expect(rest.join('\n')).toContain(usage);
    expect(stderr).not.toMatch(stackLine);
  });

  it('no command: the help on stderr, exit 2', () => {
    const { status, stdout, stderr } = cli();
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^Usage: cuda-llama \[options\] \[command\]/);
  });
});

describe('createCli', () => {
  function capture() {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = { out: (t) => void out.push(t), err: (t) => void err.push(t) };
    return { io, out, err };
  }

  it('a command registered in a file of its own gets help, version and the exit code it sets', async () => {
    const { io, out } = capture();
    const { run } = createCli(
      [
        (program, context) => {
          program
            .command('serve')
            .description('serve a model')
            .argument('<model.gguf>')
            .action((model: string) => {
              context.out(`serving ${model}\n`);
              context.exitCode = 1;
            });
        },
      ],
      io,
    );
    expect(await run(['serve', 'm.gguf'])).toBe(1);
    expect(out.join('')).toBe('serving m.gguf\n');
    expect(await run(['serve', '--version'])).toBe(0);
    expect(out.at(-1)).toBe(`${version}\n`);
  });

  it('a CudaLlamaError is its code and message; any other error keeps its stack', async () => {
    const { io, err } = capture();
    const { run } = createCli(
      [
        (program) => {
          program.command('typed').action(() => {
            throw new CudaLlamaError(ErrorCode.CUDA_UNAVAILABLE, 'no CUDA device', { remedy: 'install the driver' });
          });
          program.command('bug').action(() => {
            throw new Error('a bug');
          });
        },
      ],
      io,
    );
    expect(await run(['typed'])).toBe(1);
    expect(err.join('')).toBe('ERR_CUDA_UNAVAILABLE: no CUDA device\nRemedy: install the driver\n');
    err.length = 0;
    expect(await run(['bug'])).toBe(1);
    expect(err.join('')).toMatch(/^Error: a bug\n\s+at /);
  });
});

/** `cuda-llama tune <model.gguf>`: Llama.tune for one workload; progress on stderr, the answer on stdout. */
import { Option, type Command } from 'commander';
import { Llama } from '../../llama.js';
import { validateTuneOptions, type TuneOptions } from '../tune.js';
import { isArgumentError, positiveInteger, type CliContext } from './program.js';

interface TuneFlags {
  prompt?: number;
  output?: number;
  sequences?: number;
  gpu?: 'auto' | 'cuda' | 'cpu';
  threads?: number;
  reps?: number;
  json?: boolean;
}

/** The command-line flag of each tune option, to name the flag when the library refuses a value. */
const flags: Record<string, string> = {
  promptTokens: '--prompt',
  outputTokens: '--output',
  sequences: '--sequences',
  gpu: '--gpu',
  threads: '--threads',
  repetitions: '--reps',
};

export function registerTune(program: Command, context: CliContext): void {
  // The library owns the defaults; the help only shows them.
  const defaults = validateTuneOptions({});
  program
    .command('tune')
    .description('measure load configurations for one workload on this machine and recommend the fastest')
    .argument('<model.gguf>', 'the GGUF model file')
    .option('--prompt <tokens>', `prompt tokens per request (default: ${defaults.promptTokens})`, positiveInteger)
    .option('--output <tokens>', `generated tokens per request (default: ${defaults.outputTokens})`, positiveInteger)
    .option('--sequences <n>', `requests that arrive together (default: ${defaults.sequences})`, positiveInteger)
    .addOption(
      new Option('--gpu <policy>', `which devices may be tried; auto: CUDA when usable, and the CPU (default: ${defaults.gpu})`).choices([
        'auto',
        'cuda',
        'cpu',
      ]),
    )
    .option('--threads <n>', "CPU threads for every configuration (default: Llama.load's)", positiveInteger)
    .option('--reps <n>', `requests measured per configuration, after one warm-up (default: ${defaults.repetitions})`, positiveInteger)
    .option('--json', 'print the whole result as JSON')
    .action(async (model: string, values: TuneFlags, command: Command) => {
      const options: TuneOptions = {
        promptTokens: values.prompt,
        outputTokens: values.output,
        sequences: values.sequences,
        gpu: values.gpu,
        threads: values.threads,
        repetitions: values.reps,
        onProgress: (line) => context.err(`${line}\n`),
      };
      try {
        validateTuneOptions(options);
      } catch (error) {
        // Out of the library's range (--sequences 1000): a usage mistake, named by its flag.
        if (!isArgumentError(error)) throw error;
        command.error(`error: ${error.message.replace(/options\.(\w+)/g, (name, key: string) => flags[key] ?? name)}`);
      }
      const result = await Llama.tune(model, options);
      context.out(`${values.json ? JSON.stringify(result, null, 2) : result.reasons.join('\n')}\n`);
    });
}

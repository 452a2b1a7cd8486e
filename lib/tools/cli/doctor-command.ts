/** `cuda-llama doctor`: runDoctor's report as text or JSON; the exit code says whether what was asked for works. */
import type { Command } from 'commander';
import { formatDoctorReport, runDoctor } from '../doctor.js';
import { EXIT_FAILURE, type CliContext } from './program.js';

export function registerDoctor(program: Command, context: CliContext): void {
  program
    .command('doctor')
    .description('check the build, the devices and the GPU path, with a remedy for each problem')
    .option('--json', 'print the report as JSON')
    .option('--cpu', 'check the CPU path only (the GPU is not asked for)')
    .option('--no-probe', 'skip loading and running the probe model')
    .option('--rpc <endpoints>', 'also check ggml rpc-servers host:port,host:port and list their devices')
    .addHelpText('after', '\nExits 0 only when everything asked for works: the GPU path, unless --cpu.')
    .action(async (options: { json?: boolean; cpu?: boolean; probe: boolean; rpc?: string }) => {
      const report = await runDoctor({ gpu: !options.cpu, probe: options.probe, rpcServers: options.rpc?.split(',') });
      context.out(`${options.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report)}\n`);
      if (!report.ok) context.exitCode = EXIT_FAILURE;
    });
}

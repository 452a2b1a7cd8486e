#!/usr/bin/env node
// The `cuda-llama` command. `cuda-llama doctor [--json] [--cpu] [--no-probe]`: exit code 0 only
// when everything asked for works (the GPU path, unless --cpu).
import { parseArgs } from 'node:util';
import { formatDoctorReport, runDoctor } from './doctor.js';

const usage = 'usage: cuda-llama doctor [--json] [--cpu] [--no-probe]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, cpu: { type: 'boolean', default: false }, 'no-probe': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals[0] !== 'doctor') {
    console.error(usage);
    return values.help ? 0 : 2;
  }
  const report = await runDoctor({ gpu: !values.cpu, probe: !values['no-probe'] });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
  return report.ok ? 0 : 1;
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

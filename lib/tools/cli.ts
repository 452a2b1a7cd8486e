#!/usr/bin/env node
// The `cuda-llama` command. Each command is one file under cli/ that registers itself here;
// `cuda-llama --help` lists them, `cuda-llama <command> --help` gives its options.
import { registerDoctor } from './cli/doctor-command.js';
import { createCli } from './cli/program.js';
import { registerRpcServer } from './cli/rpc-server-command.js';
import { registerServe } from './cli/serve-command.js';
import { registerTune } from './cli/tune-command.js';

const cli = createCli([registerDoctor, registerTune, registerServe, registerRpcServer]);
process.exitCode = await cli.run(process.argv.slice(2));

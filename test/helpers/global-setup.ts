// Makes the shared test models once, before any test file runs (files run one at a time).
import { syntheticModel } from './models.js';

export default async function setup(): Promise<void> {
  await syntheticModel('tiny');
}

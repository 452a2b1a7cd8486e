// Types for cuda-release.mjs (imported by scripts/release-cuda.ts and the tests).
import type { CudaCodeImage } from '../lib/gpu/fatbin.js';

export interface ReleaseArchitecture {
  /** CMake's form: "75-real" (SASS), "100" (SASS and PTX), "90-virtual" (PTX). */
  spec: string;
  /** The split package it goes to. */
  family: string;
  /** The GPUs it is for. */
  gpus: string;
  why: string;
}
export const RELEASE_CUDA_ARCHITECTURES: readonly ReleaseArchitecture[];
export const CUDA_FAMILIES: string[];
export function releaseArchitectureList(family?: string | null): string;
/** One entry of a CMAKE_CUDA_ARCHITECTURES list, as the build compiles it. */
export interface RequestedArchitecture {
  /** As written: "120-real". */
  spec: string;
  arch: number;
  variant?: 'a' | 'f';
  /** "N-real" and "N": a cubin (SASS). */
  sass: boolean;
  /** "N-virtual" and "N": PTX. */
  ptx: boolean;
}
/** Parses a CMAKE_CUDA_ARCHITECTURES list; with `ggml` (default true) 12X becomes 12Xa, as ggml's CMake rewrites it. */
export function parseCudaArchitectures(list: string, options?: { ggml?: boolean }): RequestedArchitecture[];
/** The images nvcc writes into each code unit's fatbin for the list, with PTX of `ptxIsa`. */
export function imagesForArchitectures(architectures: readonly { spec: string }[] | string, ptxIsa: string): CudaCodeImage[];
export const TARBALL_LIMIT_BYTES: number;
export function cudaPackageName(family?: string | null): string;
export function cudaPackageDir(family?: string | null): string;
export function releaseBuildDirName(family?: string | null): string;
export interface PackagedCudaModule {
  name: string;
  version: string;
  /** The package folder. */
  dir: string;
  /** The build's libggml-cuda.so (unstripped). */
  source: string;
  /** The package's libggml-cuda.so. */
  module: string;
  /** The build's cuda-llama-build.json. */
  metadata: Record<string, unknown> & { cudaArchitectures?: string | null; cudaCompilerVersion?: string | null; llamaCppCommit?: string };
  stripped: boolean;
}
export function packageCudaModule(options: {
  from: string;
  name?: string;
  dir?: string;
  strip?: boolean;
  gpus?: string;
  driver?: string;
}): PackagedCudaModule;

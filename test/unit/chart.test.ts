// The benchmark chart renderer, checked by decoding its PNG: structure, checksums, and where the pixels land.
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SERIES_PALETTE, renderLineChartPng, type LineChartSpec } from '../bench/chart.js';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Bit-by-bit on purpose: an independent check of the renderer's table-driven CRC. */
function slowCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

interface Chunk {
  type: string;
  data: Buffer;
  crcValid: boolean;
}

function chunksOf(png: Buffer): Chunk[] {
  const chunks: Chunk[] = [];
  for (let at = SIGNATURE.length; at < png.length;) {
    const length = png.readUInt32BE(at);
    const typeAndData = png.subarray(at + 4, at + 8 + length);
    chunks.push({
      type: typeAndData.subarray(0, 4).toString('latin1'),
      data: typeAndData.subarray(4),
      crcValid: slowCrc32(typeAndData) === png.readUInt32BE(at + 8 + length),
    });
    at += 12 + length;
  }
  return chunks;
}

interface Image {
  width: number;
  height: number;
  bitDepth: number;
  colourType: number;
  scanlines: Buffer;
}

function decode(png: Buffer): Image {
  const chunks = chunksOf(png);
  const header = chunks[0].data;
  const idat = Buffer.concat(chunks.filter((c) => c.type === 'IDAT').map((c) => c.data));
  return {
    width: header.readUInt32BE(0),
    height: header.readUInt32BE(4),
    bitDepth: header[8],
    colourType: header[9],
    scanlines: inflateSync(idat),
  };
}

function rgbAt(image: Image, x: number, y: number): [number, number, number] {
  const at = y * (1 + image.width * 3) + 1 + x * 3;
  return [image.scanlines[at], image.scanlines[at + 1], image.scanlines[at + 2]];
}

function isColour(image: Image, x: number, y: number, colour: readonly number[]): boolean {
  const rgb = rgbAt(image, x, y);
  return rgb[0] === colour[0] && rgb[1] === colour[1] && rgb[2] === colour[2];
}

function countColour(image: Image, colour: readonly number[]): number {
  let count = 0;
  for (let y = 0; y < image.height; y++) for (let x = 0; x < image.width; x++) if (isColour(image, x, y, colour)) count++;
  return count;
}

/**
 * Centres of the solid blobs of `colour` at least 5x5 across: the round point markers. Lines are 2-3 px
 * thick, so neither they nor the legend swatch contain such a block.
 */
function markerCentres(image: Image, colour: readonly number[]): { x: number; y: number }[] {
  const core = new Set<number>();
  for (let y = 2; y < image.height - 2; y++) {
    for (let x = 2; x < image.width - 2; x++) {
      let solid = true;
      for (let dy = -2; dy <= 2 && solid; dy++) for (let dx = -2; dx <= 2 && solid; dx++) solid = isColour(image, x + dx, y + dy, colour);
      if (solid) core.add(y * image.width + x);
    }
  }
  const centres = [];
  while (core.size > 0) {
    const [seed] = core;
    const blob = [seed];
    core.delete(seed);
    for (let i = 0; i < blob.length; i++) {
      for (const neighbour of [blob[i] - 1, blob[i] + 1, blob[i] - image.width, blob[i] + image.width]) {
        if (core.delete(neighbour)) blob.push(neighbour);
      }
    }
    centres.push({
      x: blob.reduce((sum, p) => sum + (p % image.width), 0) / blob.length,
      y: blob.reduce((sum, p) => sum + Math.floor(p / image.width), 0) / blob.length,
    });
  }
  return centres.sort((a, b) => a.x - b.x);
}

const SPEC: LineChartSpec = {
  title: 'tg128 against gpuLayers',
  xLabel: 'gpuLayers',
  yLabel: 'tokens/s',
  width: 640,
  height: 360,
  series: [
    {
      name: 'cuda-llama',
      points: [
        { x: 0, y: 10 },
        { x: 1, y: 20 },
        { x: Number.NaN, y: 5 },
        { x: 3, y: 40 },
      ],
    },
  ],
};

describe('renderLineChartPng', () => {
  it('writes a PNG whose chunks all carry valid CRCs, from IHDR to IEND', () => {
    const png = renderLineChartPng(SPEC);
    expect(png.subarray(0, 8)).toEqual(SIGNATURE);
    const chunks = chunksOf(png);
    expect(chunks.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect(chunks.every((c) => c.crcValid)).toBe(true);
    expect(chunks[2].data.length).toBe(0);
  });

  it('declares the requested size as 8-bit RGB, and the pixel data has exactly that many unfiltered rows', () => {
    const image = decode(renderLineChartPng(SPEC));
    expect(image).toMatchObject({ width: 640, height: 360, bitDepth: 8, colourType: 2 });
    const stride = 1 + 640 * 3;
    expect(image.scanlines.length).toBe(360 * stride);
    for (let y = 0; y < 360; y++) expect(image.scanlines[y * stride]).toBe(0);
  });

  it('defaults to 960 x 540 on a white background', () => {
    const image = decode(renderLineChartPng({ ...SPEC, width: undefined, height: undefined }));
    expect([image.width, image.height]).toEqual([960, 540]);
    expect(rgbAt(image, 0, 0)).toEqual([255, 255, 255]);
    expect(rgbAt(image, 959, 539)).toEqual([255, 255, 255]);
  });

  it('puts one marker per finite point, in data order: right for larger x, higher for larger y, to scale', () => {
    const markers = markerCentres(decode(renderLineChartPng(SPEC)), SERIES_PALETTE[0]);
    expect(markers).toHaveLength(3); // the NaN point is skipped
    const [a, b, c] = markers;
    expect(b.y).toBeLessThan(a.y);
    expect(c.y).toBeLessThan(b.y);
    // x: 0, 1, 3 and y: 10, 20, 40, so the second gap is twice the first on both axes.
    expect(Math.abs(c.x - b.x - 2 * (b.x - a.x))).toBeLessThanOrEqual(2);
    expect(Math.abs(b.y - c.y - 2 * (a.y - b.y))).toBeLessThanOrEqual(2);
  });

  it('starts the y axis at zero by default, so the same data sits higher without it', () => {
    const lowest = (spec: LineChartSpec) => Math.max(...markerCentres(decode(renderLineChartPng(spec)), SERIES_PALETTE[0]).map((m) => m.y));
    expect(lowest({ ...SPEC, yFromZero: false })).toBeGreaterThan(lowest(SPEC));
  });

  it('widens the y range to show a reference line above the data', () => {
    const highest = (spec: LineChartSpec) =>
      Math.min(...markerCentres(decode(renderLineChartPng(spec)), SERIES_PALETTE[0]).map((m) => m.y));
    expect(highest({ ...SPEC, hlines: [{ y: 100, label: 'CPU only' }] })).toBeGreaterThan(highest(SPEC));
  });

  it('gives each series its own palette colour, and draws a single point as a marker', () => {
    const series = SERIES_PALETTE.map((_, i) => ({ name: `series ${i}`, points: [{ x: i, y: i + 1 }] }));
    const image = decode(renderLineChartPng({ ...SPEC, series }));
    SERIES_PALETTE.forEach((colour) => expect(markerCentres(image, colour)).toHaveLength(1));
  });

  it('draws a dashed series with fewer, but some, pixels than the same series solid', () => {
    const pixels = (dashed: boolean) =>
      countColour(decode(renderLineChartPng({ ...SPEC, series: [{ ...SPEC.series[0], dashed }] })), SERIES_PALETTE[0]);
    expect(pixels(true)).toBeGreaterThan(0);
    expect(pixels(true)).toBeLessThan(pixels(false));
  });

  it('still draws axes for no series, with no series colour anywhere', () => {
    const image = decode(renderLineChartPng({ ...SPEC, series: [] }));
    let inked = 0;
    for (let y = 0; y < image.height; y++) for (let x = 0; x < image.width; x++) if (rgbAt(image, x, y)[0] < 128) inked++;
    expect(inked).toBeGreaterThan(500);
    for (const colour of SERIES_PALETTE) expect(countColour(image, colour)).toBe(0);
  });

  it('copes with all-equal values, only non-finite points and custom x ticks', () => {
    const image = decode(
      renderLineChartPng({
        ...SPEC,
        yFromZero: false,
        xTicks: [
          { value: 0, label: 'cpu' },
          { value: 22, label: '22 (all)' },
        ],
        series: [
          {
            name: 'flat',
            points: [
              { x: 0, y: 7 },
              { x: 11, y: 7 },
              { x: 22, y: 7 },
            ],
          },
          { name: 'failed', points: [{ x: 4, y: Number.POSITIVE_INFINITY }] },
        ],
      }),
    );
    const flat = markerCentres(image, SERIES_PALETTE[0]);
    expect(flat).toHaveLength(3);
    expect(Math.max(...flat.map((m) => m.y)) - Math.min(...flat.map((m) => m.y))).toBeLessThanOrEqual(1);
    expect(markerCentres(image, SERIES_PALETTE[1])).toHaveLength(0);
  });

  it('terminates on data too wide for the pixel mapping', () => {
    const png = renderLineChartPng({
      ...SPEC,
      series: [
        {
          name: 'huge',
          points: [
            { x: -1e308, y: 1 },
            { x: 1e308, y: -1e308 },
          ],
        },
      ],
    });
    expect(decode(png).width).toBe(640);
  });

  it('is deterministic', () => {
    const spec: LineChartSpec = {
      ...SPEC,
      hlines: [{ y: 31.2, label: 'CPU only' }],
      series: [...SPEC.series, { name: 'b', dashed: true, points: [{ x: 1, y: 3 }] }],
    };
    expect(renderLineChartPng(spec).equals(renderLineChartPng(structuredClone(spec)))).toBe(true);
  });

  it('rejects an unusable size, naming the field', () => {
    expect(() => renderLineChartPng({ ...SPEC, width: 10 })).toThrow(RangeError);
    expect(() => renderLineChartPng({ ...SPEC, height: 300.5 })).toThrow(/spec\.height must be an integer from 240 to 8192, got 300\.5/);
  });
});

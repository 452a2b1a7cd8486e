/**
 * Line charts as PNG, with no dependency beyond node:zlib, so a benchmark run can leave a picture
 * (tokens/s against gpuLayers, CPU vs GPU) next to its tables without an image library in devDependencies.
 * Draws into an RGB buffer with an embedded 5x7 bitmap font, then encodes 8-bit RGB PNG.
 */
import { deflateSync } from 'node:zlib';

export interface ChartSeries {
  name: string;
  /** Drawn in the given order; a non-finite x or y leaves a gap in the line. */
  points: { x: number; y: number }[];
  /** Dashed line instead of solid. Default false. */
  dashed?: boolean;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** One colour each from SERIES_PALETTE, in order; repeats after 8. */
  series: ChartSeries[];
  /** Optional: tick labels for x (e.g. ['cpu', '4', '8', '22 (all)']) placed at the given x values. */
  xTicks?: { value: number; label: string }[];
  /** Pixels, integer from 320 to 8192. Default 960. */
  width?: number;
  /** Pixels, integer from 240 to 8192. Default 540. */
  height?: number;
  /** Optional horizontal reference lines, e.g. { y: 31.2, label: 'CPU only' }. */
  hlines?: { y: number; label: string }[];
  /** Start the y axis at 0 (or end it there, for negative data). Default true. */
  yFromZero?: boolean;
}

type Rgb = readonly [number, number, number];

/**
 * Okabe-Ito, told apart by most colour-blind readers. Reordered so the strongest contrasts on white
 * come first; black is 7th because it reads like the axes, and yellow last because it is faint on white.
 */
export const SERIES_PALETTE: readonly Rgb[] = [
  [0x00, 0x72, 0xb2],
  [0xd5, 0x5e, 0x00],
  [0x00, 0x9e, 0x73],
  [0xcc, 0x79, 0xa7],
  [0xe6, 0x9f, 0x00],
  [0x56, 0xb4, 0xe9],
  [0x00, 0x00, 0x00],
  [0xf0, 0xe4, 0x42],
];
const WHITE: Rgb = [0xff, 0xff, 0xff];
const INK: Rgb = [0x22, 0x22, 0x22]; // never pure black, so SERIES_PALETTE's black stays unique to its series
const GRID: Rgb = [0xe6, 0xe6, 0xe6];
const REFERENCE: Rgb = [0x6e, 0x6e, 0x6e];

/**
 * ASCII 32..126, one glyph per space-separated group: a base-32 digit per pixel row, whose 5 bits are the
 * row's pixels, most significant bit leftmost. Rows 0..6 are the 7 down to the baseline; g, j, p, q and y
 * have two more below it, because squeezed into 7 rows they read as 9, P and Y.
 */
const FONT = [
  '0000000 4444404 aa00000 aavavaa 4fke5u4 op248j3 cik8lid 4480000 2488842 8422248 04lel40 044v440',
  '0000c48 000v000 00000cc 01248g0 ehjlphe 4c4444e eh1248v eh161he 26aiv22 vgu11he 68guhhe v124888',
  'ehhehhe ehhf12c 0cc0cc0 0cc0c48 248g842 00v0v00 8421248 eh12404 ehnlnge ehhvhhh uhhuhhu ehggghe',
  'uhhhhhu vgguggv vgguggg ehgnhhf hhhvhhh e44444e 72222ic hikokih ggggggv hrllhhh hhpljhh ehhhhhe',
  'uhhuggg ehhhlid uhhukih fgge11u v444444 hhhhhhe hhhhha4 hhhllla hha4ahh hha4444 v1248gv e88888e',
  '0g84210 e22222e 4ah0000 000000v 8420000 00e1fhf ggmphhu 00egghe 11djhhf 00ehvge 698s888 00fhhhf1e',
  'ggmphhh 40c444e 2062222ic ggikoki c44444e 00qllhh 00mphhh 00ehhhe 00uhhhugg 00fhhhf11 00mpggg 00ege1u',
  '88s8896 00hhhjd 00hhha4 00hhlla 00ha4ah 00hhhhf1e 00v248v 2448442 4444444 8442448 008l200',
]
  .join(' ')
  .split(' ')
  .map((glyph) => [...glyph].map((digit) => parseInt(digit, 32)));
const GLYPH_HEIGHT = 7; // descenders excluded: layouts leave room for them in their gaps
const ADVANCE = 6; // 5 pixels of glyph and 1 of spacing
const TEXT_SCALE = 2;
const TITLE_SCALE = 3;
const MARGIN = 14;
/** Keeps markers at the x extremes off the y axis. */
const X_INSET = 24;
const DASH = { on: 10, off: 6 };

function textWidth(text: string, scale: number): number {
  return text.length === 0 ? 0 : (text.length * ADVANCE - 1) * scale;
}

/** Cut with '...' rather than run off the image. */
function clip(text: string, scale: number, maxWidth: number): string {
  if (textWidth(text, scale) <= maxWidth) return text;
  let kept = text.length;
  while (kept > 0 && textWidth(`${text.slice(0, kept)}...`, scale) > maxWidth) kept--;
  return `${text.slice(0, kept)}...`;
}

/** The pattern position is carried from segment to segment, so a dashed polyline keeps one rhythm. */
interface Dash {
  on: number;
  off: number;
  travelled: number;
}

class Raster {
  readonly pixels: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.pixels = new Uint8Array(width * height * 3).fill(255);
  }

  fillRect(x: number, y: number, w: number, h: number, colour: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let py = y0; py < y1; py++) {
      for (let px = x0; px < x1; px++) this.pixels.set(colour, (py * this.width + px) * 3);
    }
  }

  /** Bresenham with a square brush of `thickness` pixels; endpoints are rounded to whole pixels. */
  line(xa: number, ya: number, xb: number, yb: number, colour: Rgb, thickness: number, dash?: Dash): void {
    // Data spanning more than a double can hold (say -1e308 to 1e308) maps to NaN, which the loop never reaches.
    if (![xa, ya, xb, yb].every(Number.isFinite)) return;
    let x = Math.round(xa);
    let y = Math.round(ya);
    const x1 = Math.round(xb);
    const y1 = Math.round(yb);
    const dx = Math.abs(x1 - x);
    const dy = -Math.abs(y1 - y);
    const sx = x < x1 ? 1 : -1;
    const sy = y < y1 ? 1 : -1;
    let error = dx + dy;
    for (;;) {
      const visible = !dash || dash.travelled++ % (dash.on + dash.off) < dash.on;
      if (visible) this.fillRect(x, y, thickness, thickness, colour);
      if (x === x1 && y === y1) return;
      const twice = 2 * error;
      if (twice >= dy) {
        error += dy;
        x += sx;
      }
      if (twice <= dx) {
        error += dx;
        y += sy;
      }
    }
  }

  disc(cx: number, cy: number, radius: number, colour: Rgb): void {
    for (let dy = -radius; dy <= radius; dy++) {
      for (let dx = -radius; dx <= radius; dx++) {
        if (dx * dx + dy * dy <= radius * radius) this.fillRect(Math.round(cx) + dx, Math.round(cy) + dy, 1, 1, colour);
      }
    }
  }

  /** `(x, y)` is the top-left corner; `upward` rotates 90° anticlockwise with `(x, y)` then the bottom-left. */
  text(text: string, left: number, top: number, colour: Rgb, scale: number, upward = false): void {
    // Rounded once so every glyph block of a centred label lands on the same pixel grid.
    const x = Math.round(left);
    const y = Math.round(top);
    for (let i = 0; i < text.length; i++) {
      const rows = FONT[text.charCodeAt(i) - 32] ?? FONT['?'.charCodeAt(0) - 32];
      for (let row = 0; row < rows.length; row++) {
        for (let column = 0; column < 5; column++) {
          if (((rows[row] >> (4 - column)) & 1) === 0) continue;
          const along = i * ADVANCE + column;
          if (upward) this.fillRect(x + row * scale, y - (along + 1) * scale, scale, scale, colour);
          else this.fillRect(x + along * scale, y + row * scale, scale, scale, colour);
        }
      }
    }
  }
}

interface Axis {
  min: number;
  max: number;
  ticks: { value: number; label: string }[];
}

/** The smallest 1, 2 or 5 × 10^n step that cuts `span` into at most `maxCount` intervals. */
function niceStep(span: number, maxCount: number): number {
  const raw = span / Math.max(1, maxCount);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const multiple of [1, 2, 5]) if (multiple * magnitude >= raw * (1 - 1e-9)) return multiple * magnitude;
  return 10 * magnitude;
}

/** Ticks at multiples of a nice step inside [lo, hi]; `snap` widens the range to whole steps. */
function niceAxis(lo: number, hi: number, maxCount: number, snap: boolean): Axis {
  const step = niceStep(hi - lo, maxCount);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  // Multiplying an integer index (rather than adding steps) keeps 0.1 + 0.2 noise out of the labels;
  // `+ 0` turns -0 into 0.
  const at = (index: number): number => Number((index * step).toFixed(decimals)) + 0;
  const first = snap ? Math.floor(lo / step + 1e-9) : Math.ceil(lo / step - 1e-9);
  const last = snap ? Math.ceil(hi / step - 1e-9) : Math.floor(hi / step + 1e-9);
  const ticks = [];
  for (let index = first; index <= last; index++) ticks.push({ value: at(index), label: at(index).toFixed(decimals) });
  return snap ? { min: at(first), max: at(last), ticks } : { min: lo, max: hi, ticks };
}

/** The extent of `values`, never empty or zero-width, so the value-to-pixel mapping never divides by 0. */
function extent(values: number[], includeZero: boolean): [number, number] {
  let lo = includeZero ? 0 : Infinity;
  let hi = includeZero ? 0 : -Infinity;
  for (const value of values) {
    lo = Math.min(lo, value);
    hi = Math.max(hi, value);
  }
  if (lo > hi) return [0, 1];
  if (lo < hi) return [lo, hi];
  if (lo === 0) return includeZero ? [0, 1] : [-1, 1];
  const pad = Math.abs(lo) * 0.1;
  return [lo - pad, hi + pad];
}

function checkSize(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 8192) {
    throw new RangeError(`spec.${name} must be an integer from ${min} to 8192, got ${String(value)}`);
  }
  return value;
}

type Point = { x: number; y: number };
const isPlottable = (p: Point) => Number.isFinite(p.x) && Number.isFinite(p.y);

/** Where the plot area sits and how values map onto it. */
interface Plot {
  left: number;
  right: number;
  top: number;
  bottom: number;
  xAxis: Axis;
  yAxis: Axis;
  toPixel(p: Point): Point;
}

interface PlotInputs {
  width: number;
  height: number;
  titleScale: number;
  yFromZero: boolean;
  points: Point[];
  hlines: { y: number; label: string }[];
  xTicks?: { value: number; label: string }[];
}

/** `reserveRight` keeps that many pixels right of the plot free, for a legend placed outside it. */
function planPlot(inputs: PlotInputs, reserveRight: number): Plot {
  const { width, height, points, hlines, xTicks } = inputs;
  const lineHeight = GLYPH_HEIGHT * TEXT_SCALE;
  const top = MARGIN + GLYPH_HEIGHT * inputs.titleScale + MARGIN + 4;
  const bottom = height - MARGIN - lineHeight - 10 - lineHeight - 10;
  // The y axis is settled first: its widest label decides the left margin, hence the width the x ticks get.
  const [yLo, yHi] = extent([...points.map((p) => p.y), ...hlines.map((h) => h.y)], inputs.yFromZero);
  const yAxis = niceAxis(yLo, yHi, Math.max(2, Math.floor((bottom - top) / 50)), true);
  const left = MARGIN + lineHeight + 12 + Math.max(...yAxis.ticks.map((t) => textWidth(t.label, TEXT_SCALE))) + 10;
  const [xLo, xHi] = extent([...points.map((p) => p.x), ...(xTicks ?? []).map((t) => t.value)], false);
  const roughWidth = width - MARGIN - reserveRight - left - 2 * X_INSET;
  const xAxis = xTicks ? { min: xLo, max: xHi, ticks: xTicks } : niceAxis(xLo, xHi, Math.max(2, Math.floor(roughWidth / 110)), false);
  // A last tick label wider than the inset would hang past the edge of the image.
  const lastLabel = xAxis.ticks.reduce((a, t) => (t.value > a.value ? t : a), { value: -Infinity, label: '' }).label;
  const right = width - MARGIN - Math.max(reserveRight, textWidth(lastLabel, TEXT_SCALE) / 2 - X_INSET);
  const toPixel = (p: Point) => ({
    x: left + X_INSET + ((p.x - xAxis.min) / (xAxis.max - xAxis.min)) * (right - left - 2 * X_INSET),
    y: bottom - ((p.y - yAxis.min) / (yAxis.max - yAxis.min)) * (bottom - top),
  });
  return { left, right, top, bottom, xAxis, yAxis, toPixel };
}

/** Each series as pixel polylines; a failed measurement splits a line rather than implying a value in between. */
function pixelRuns(series: ChartSeries[], plot: Plot): Point[][][] {
  return series.map((s) => {
    const runs: Point[][] = [[]];
    for (const point of s.points) {
      if (isPlottable(point)) runs[runs.length - 1].push(plot.toPixel(point));
      else if (runs[runs.length - 1].length > 0) runs.push([]);
    }
    return runs;
  });
}

/** Top-left corner of a reference line's label: right-aligned, above the line unless that would leave the plot. */
function hlineLabelAt(plot: Plot, h: { y: number; label: string }): Point {
  const lineHeight = GLYPH_HEIGHT * TEXT_SCALE;
  const y = plot.toPixel({ x: plot.xAxis.min, y: h.y }).y;
  return { x: plot.right - 8 - textWidth(h.label, TEXT_SCALE), y: y - 6 - lineHeight >= plot.top ? y - 6 - lineHeight : y + 8 };
}

/** Samples of everything a legend inside the plot could hide: every segment, every reference label. */
function occupiedPixels(spec: LineChartSpec, hlines: { y: number; label: string }[], plot: Plot): Point[] {
  const samples: Point[] = [];
  for (const runs of pixelRuns(spec.series, plot)) {
    for (const run of runs) {
      run.forEach((here, i) => {
        const previous = run[i - 1] ?? here;
        const steps = Math.max(1, Math.ceil(Math.hypot(here.x - previous.x, here.y - previous.y) / 6));
        for (let s = 1; s <= steps; s++)
          samples.push({ x: previous.x + ((here.x - previous.x) * s) / steps, y: previous.y + ((here.y - previous.y) * s) / steps });
      });
    }
  }
  for (const h of hlines) {
    const at = hlineLabelAt(plot, h);
    for (let dx = 0; dx <= textWidth(h.label, TEXT_SCALE); dx += 8) samples.push({ x: at.x + dx, y: at.y + GLYPH_HEIGHT });
  }
  return samples;
}

/** Renders `spec` to PNG bytes; the same spec always gives the same bytes (for one zlib version). */
export function renderLineChartPng(spec: LineChartSpec): Buffer {
  const width = checkSize('width', spec.width ?? 960, 320);
  const height = checkSize('height', spec.height ?? 540, 240);
  const raster = new Raster(width, height);
  const lineHeight = GLYPH_HEIGHT * TEXT_SCALE;
  const hlines = (spec.hlines ?? []).filter((h) => Number.isFinite(h.y));
  // A long title shrinks to label size before it is cut.
  const titleScale = textWidth(spec.title, TITLE_SCALE) <= width - 2 * MARGIN ? TITLE_SCALE : TEXT_SCALE;
  const inputs: PlotInputs = {
    width,
    height,
    titleScale,
    yFromZero: spec.yFromZero ?? true,
    hlines,
    points: spec.series.flatMap((s) => s.points.filter(isPlottable)),
    xTicks: spec.xTicks?.filter((t) => Number.isFinite(t.value)),
  };
  let plot = planPlot(inputs, 0);

  const swatch = 30;
  const rowHeight = lineHeight + 10;
  const legendWidth = 12 + swatch + 10 + Math.max(0, ...spec.series.map((s) => textWidth(s.name, TEXT_SCALE))) + 12;
  const legendHeight = spec.series.length * rowHeight + 10;
  let legendAt: Point | undefined;
  if (spec.series.length > 0) {
    // The corner that hides the fewest drawn pixels, ties going to the earlier one. If every corner hides some
    // data, the plot narrows to make room on the right instead, unless the legend is so wide that the plot
    // would be squeezed more than the hidden data is worth.
    const occupied = occupiedPixels(spec, hlines, plot);
    const hidden = (c: Point) =>
      occupied.filter((p) => p.x >= c.x - 6 && p.x <= c.x + legendWidth + 6 && p.y >= c.y - 6 && p.y <= c.y + legendHeight + 6).length;
    const corners = [
      { x: plot.right - 10 - legendWidth, y: plot.top + 10 },
      { x: plot.left + 10, y: plot.top + 10 },
      { x: plot.right - 10 - legendWidth, y: plot.bottom - 10 - legendHeight },
      { x: plot.left + 10, y: plot.bottom - 10 - legendHeight },
    ];
    legendAt = corners.reduce((best, c) => (hidden(c) < hidden(best) ? c : best));
    if (hidden(legendAt) > 0 && legendWidth <= width / 3) {
      plot = planPlot(inputs, legendWidth + 16);
      legendAt = { x: width - MARGIN - legendWidth, y: plot.top };
    }
  }
  const { left, right, top, bottom } = plot;

  for (const tick of plot.yAxis.ticks) {
    const y = Math.round(plot.toPixel({ x: plot.xAxis.min, y: tick.value }).y);
    raster.fillRect(left, y, right - left, 1, GRID);
    raster.fillRect(left - 6, y, 6, 1, INK);
    raster.text(tick.label, left - 10 - textWidth(tick.label, TEXT_SCALE), y - lineHeight / 2, INK, TEXT_SCALE);
  }
  for (const tick of plot.xAxis.ticks) {
    const x = Math.round(plot.toPixel({ x: tick.value, y: plot.yAxis.min }).x);
    raster.fillRect(x, top, 1, bottom - top, GRID);
    raster.fillRect(x, bottom, 1, 6, INK);
    raster.text(tick.label, x - textWidth(tick.label, TEXT_SCALE) / 2, bottom + 10, INK, TEXT_SCALE);
  }
  // Reference lines go under the data: their label backgrounds must not blank out a series.
  for (const h of hlines) {
    const y = plot.toPixel({ x: plot.xAxis.min, y: h.y }).y;
    raster.line(left, y, right, y, REFERENCE, 2, { ...DASH, travelled: 0 });
    const at = hlineLabelAt(plot, h);
    raster.fillRect(at.x - 3, at.y - 3, textWidth(h.label, TEXT_SCALE) + 6, lineHeight + 6, WHITE);
    raster.text(h.label, at.x, at.y, REFERENCE, TEXT_SCALE);
  }
  raster.fillRect(left, top, 1, bottom - top + 1, INK);
  raster.fillRect(left, bottom, right - left + 1, 1, INK);

  // All lines first, then all markers, so no marker is cut by another series' line.
  const colourOf = (index: number) => SERIES_PALETTE[index % SERIES_PALETTE.length];
  const runs = pixelRuns(spec.series, plot);
  runs.forEach((seriesRuns, index) => {
    const dash = spec.series[index].dashed ? { ...DASH, travelled: 0 } : undefined;
    for (const run of seriesRuns) {
      for (let i = 1; i < run.length; i++) raster.line(run[i - 1].x, run[i - 1].y, run[i].x, run[i].y, colourOf(index), 2, dash);
    }
  });
  runs.forEach((seriesRuns, index) => {
    for (const p of seriesRuns.flat()) raster.disc(p.x, p.y, 4, colourOf(index));
  });
  if (inputs.points.length === 0) {
    const note = 'no data';
    raster.text(note, (left + right - textWidth(note, TEXT_SCALE)) / 2, (top + bottom - lineHeight) / 2, REFERENCE, TEXT_SCALE);
  }

  if (legendAt) {
    raster.fillRect(legendAt.x, legendAt.y, legendWidth, legendHeight, INK);
    raster.fillRect(legendAt.x + 1, legendAt.y + 1, legendWidth - 2, legendHeight - 2, WHITE);
    spec.series.forEach((series, index) => {
      const rowY = legendAt.y + 10 + index * rowHeight;
      const dash = series.dashed ? { on: 8, off: 5, travelled: 0 } : undefined;
      raster.line(
        legendAt.x + 12,
        rowY + lineHeight / 2 - 1,
        legendAt.x + 12 + swatch,
        rowY + lineHeight / 2 - 1,
        colourOf(index),
        3,
        dash,
      );
      raster.text(series.name, legendAt.x + 12 + swatch + 10, rowY, INK, TEXT_SCALE);
    });
  }

  const title = clip(spec.title, titleScale, width - 2 * MARGIN);
  raster.text(title, (width - textWidth(title, titleScale)) / 2, MARGIN, INK, titleScale);
  const xLabel = clip(spec.xLabel, TEXT_SCALE, width - 2 * MARGIN);
  raster.text(xLabel, Math.max(MARGIN, (left + right - textWidth(xLabel, TEXT_SCALE)) / 2), height - MARGIN - lineHeight, INK, TEXT_SCALE);
  const yLabel = clip(spec.yLabel, TEXT_SCALE, bottom - top);
  raster.text(yLabel, MARGIN, (top + bottom + textWidth(yLabel, TEXT_SCALE)) / 2, INK, TEXT_SCALE, true);
  return encodePng(raster);
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 as PNG requires; zlib.crc32 would do, but it only exists from Node 20.15. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  chunk.set(data, 8);
  // The CRC covers the type and the data, not the length.
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

function encodePng(raster: Raster): Buffer {
  const { width, height, pixels } = raster;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per channel
  header[9] = 2; // colour type: RGB; compression, filter and interlace bytes stay 0
  const stride = 1 + width * 3;
  const scanlines = Buffer.alloc(height * stride); // each row's leading filter byte stays 0: no filter
  for (let y = 0; y < height; y++) scanlines.set(pixels.subarray(y * width * 3, (y + 1) * width * 3), y * stride + 1);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(scanlines)),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/** A small hand-rolled SVG line chart: enough for the soak's latency and RSS over time, no dependency. */

export interface Series {
  name: string;
  /** [x, y] points; non-finite y values break the line. */
  points: Array<[number, number]>;
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** x positions of vertical markers (the soak's kills), with a short label each. */
  markers?: Array<{ x: number; label: string }>;
  /** The x axis' range, so stacked panels line up; default: the data's. */
  xRange?: [number, number];
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const W = 900;
const H = 320;
const M = { left: 70, right: 170, top: 34, bottom: 44 };

export const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick steps (1, 2, 5 × 10^k) covering [lo, hi] with about `n` ticks. */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const num = (v: number) => (Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(3)).toString());

function panel(p: Panel, y0: number): string {
  const pts = p.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y);
  const xMin = p.xRange?.[0] ?? (xs.length ? Math.min(...xs) : 0);
  const xMax = p.xRange?.[1] ?? (xs.length ? Math.max(...xs, xMin + 1e-9) : 1);
  const yMax = ys.length ? Math.max(...ys) * 1.05 || 1 : 1;
  const yMin = 0;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const sy = (y: number) => y0 + M.top + ph - ((y - yMin) / (yMax - yMin || 1)) * ph;
  const out: string[] = [];
  out.push(`<g class="panel">`);
  out.push(`<text x="${M.left}" y="${y0 + 20}" font-size="15" font-weight="bold">${escapeXml(p.title)}</text>`);
  // Axes, ticks and grid.
  out.push(`<line x1="${M.left}" y1="${sy(yMin)}" x2="${M.left + pw}" y2="${sy(yMin)}" stroke="#000"/>`);
  out.push(`<line x1="${M.left}" y1="${y0 + M.top}" x2="${M.left}" y2="${sy(yMin)}" stroke="#000"/>`);
  for (const t of ticks(xMin, xMax)) {
    out.push(`<line x1="${sx(t).toFixed(1)}" y1="${sy(yMin)}" x2="${sx(t).toFixed(1)}" y2="${sy(yMin) + 5}" stroke="#000"/>`);
    out.push(`<text x="${sx(t).toFixed(1)}" y="${sy(yMin) + 18}" font-size="11" text-anchor="middle">${num(t)}</text>`);
  }
  for (const t of ticks(yMin, yMax)) {
    out.push(`<line x1="${M.left}" y1="${sy(t).toFixed(1)}" x2="${M.left + pw}" y2="${sy(t).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${M.left - 6}" y="${(sy(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${num(t)}</text>`);
  }
  out.push(`<text x="${M.left + pw / 2}" y="${y0 + H - 8}" font-size="12" text-anchor="middle">${escapeXml(p.xLabel)}</text>`);
  out.push(`<text x="16" y="${y0 + M.top + ph / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${y0 + M.top + ph / 2})">${escapeXml(p.yLabel)}</text>`);
  for (const m of p.markers ?? []) {
    if (m.x < xMin || m.x > xMax) continue;
    out.push(
      `<line x1="${sx(m.x).toFixed(1)}" y1="${y0 + M.top}" x2="${sx(m.x).toFixed(1)}" y2="${sy(yMin)}" stroke="#999" stroke-dasharray="4 3"><title>${escapeXml(m.label)}</title></line>`,
    );
  }
  p.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    // A gap (non-finite y) starts a new segment.
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
      pen = true;
    }
    if (d) out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="1.6"/>`);
    const ly = y0 + M.top + 10 + i * 18;
    out.push(`<line x1="${W - M.right + 14}" y1="${ly}" x2="${W - M.right + 34}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`);
    out.push(`<text x="${W - M.right + 40}" y="${ly + 4}" font-size="12">${escapeXml(s.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** Panels stacked vertically in one standalone SVG document. */
export function svgChart(panels: Panel[], title: string): string {
  const height = panels.length * H + 30;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" font-size="16" text-anchor="middle">${escapeXml(title)}</text>`,
    ...panels.map((p, i) => panel(p, 30 + i * H)),
    '</svg>',
    '',
  ].join('\n');
}

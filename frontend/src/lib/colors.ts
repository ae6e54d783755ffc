// Chain colours: a colour-blind-friendly categorical palette for the first
// chains, then well-spread hues (golden angle) for as many more as needed.

export const PALETTE = [
  '#1f77b4', // blue
  '#e66100', // orange
  '#1a9850', // green
  '#9b59b6', // purple
  '#c0392b', // red
  '#0e9aa7', // teal
  '#b8860b', // dark gold
  '#d6336c', // pink
  '#5d6d7e', // slate
  '#6b8e23', // olive
];

/** Neutral colour for block ranges that no chain uses (e.g. PETALS / BPRR placements). */
export const UNUSED_COLOR = '#9aa5b1';

export function chainColor(index: number): string {
  if (index < 0) return UNUSED_COLOR;
  if (index < PALETTE.length) return PALETTE[index];
  const hue = Math.round((index * 137.508) % 360);
  const light = 38 + ((index * 7) % 3) * 6;
  return `hsl(${hue} 65% ${light}%)`;
}

/** Parses "#rrggbb" to [r, g, b]. */
export function hexToRgb(hex: string): [number, number, number] {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/** WCAG relative luminance of a #rrggbb colour. */
export function luminance(hex: string): number {
  const [r, g, b] = hexToRgb(hex).map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio between two #rrggbb colours. */
export function contrastRatio(a: string, b: string): number {
  const la = luminance(a);
  const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** Translucent variant of a #rrggbb colour for fills. */
export function withAlpha(hex: string, alpha: number): string {
  if (!hex.startsWith('#')) return hex.replace(/\)$/, ` / ${alpha})`);
  const [r, g, b] = hexToRgb(hex);
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

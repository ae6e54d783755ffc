import { defineConfig } from 'vitest/config';

// The app is served by Django at "/" (the API lives under /api/). During
// `npm run dev` API calls are proxied to a local Django on port 8000.
export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    fs: { allow: ['..'] },
    proxy: { '/api': { target: process.env.CHAINPLAN_API ?? 'http://127.0.0.1:8000', changeOrigin: false } },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
  },
});

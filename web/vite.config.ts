// The dashboard build: served by the API at /ui, committed under src/ml_platform/ui/static.
// File names are fixed (no content hashes, no timestamps) so a rebuild is byte-identical and
// tests/ui/test_ui_build.py can compare a fresh build with the committed one.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "../src/ml_platform/ui/static", // the drift test passes --outDir <tmp>
    emptyOutDir: true,
    target: "es2022",
    modulePreload: false,
    sourcemap: false,
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
        inlineDynamicImports: true,
      },
    },
  },
});

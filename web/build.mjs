// Builds the annotation page into dist/: src/main.js (with src/style.css) bundled and minified
// by esbuild under content-hashed names in dist/assets/, with source maps, and dist/index.html
// naming them. No inline script or style anywhere: the gateway's CSP allows only 'self'.
import { build } from 'esbuild';
import { rm, mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'assets'), { recursive: true });

const result = await build({
  entryPoints: [join(root, 'src/main.js')],
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: true,
  sourcemap: 'linked',
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  outdir: join(dist, 'assets'),
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => /^main-.*\.js$/.test(f));
const css = outputs.find((f) => /^main-.*\.css$/.test(f));
if (!js || !css) throw new Error(`esbuild wrote no main script or style: ${outputs.join(', ')}`);

const body = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIAA annotation</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/${css}">
<script type="module" src="assets/${js}"></script>
</head>
<body>
<header class="bar">
  <h1>AIAA annotate</h1>
  <div class="tools" role="toolbar" aria-label="Tools">
    <button type="button" id="tool-navigate" aria-label="Navigate (N)" title="Navigate: click moves the crosshair, wheel changes slice (N)">Navigate</button>
    <button type="button" id="tool-points" aria-label="Model clicks (P)" title="Model clicks: extreme points or foreground clicks; Shift+click or right-click for background (P)">Clicks</button>
    <button type="button" id="tool-brush" aria-label="Brush (B)" title="Brush: paint the label in the view clicked (B)">Brush</button>
    <button type="button" id="tool-eraser" aria-label="Eraser (E)" title="Eraser: erase in the view clicked (E)">Eraser</button>
    <button type="button" id="tool-fill" aria-label="Fill (F)" title="Fill: flood-fill the clicked region of the slice (F)">Fill</button>
    <label class="size" title="Brush and eraser radius in voxels of the view's plane ([ smaller, ] larger)">Size
      <input type="range" id="radius" min="0" max="30" step="1" aria-label="Brush radius in voxels ([ and ])">
      <output id="radius-value" for="radius"></output>
    </label>
    <label title="Label value the brush and fill paint">Label
      <select id="paint-value" aria-label="Label value to paint">
        <option value="1">1 red</option><option value="2">2 green</option><option value="3">3 blue</option>
        <option value="4">4 yellow</option><option value="5">5 cyan</option>
      </select>
    </label>
    <button type="button" id="undo" aria-label="Undo (Ctrl+Z)" title="Undo (Ctrl+Z)">Undo</button>
    <button type="button" id="redo" aria-label="Redo (Ctrl+Y or Ctrl+Shift+Z)" title="Redo (Ctrl+Y or Ctrl+Shift+Z)">Redo</button>
  </div>
  <label class="preset" title="Window/level preset">Window
    <select id="preset" aria-label="Window/level preset"></select>
  </label>
</header>
<aside class="panel">
  <form id="login" hidden aria-label="Log in">
    <h2>API key</h2>
    <p>This server needs its API key.</p>
    <input type="password" id="login-key" autocomplete="current-password" aria-label="API key" required>
    <button type="submit" aria-label="Log in with the API key" title="Log in">Log in</button>
  </form>
  <section aria-labelledby="images-title">
    <h2 id="images-title">Images</h2>
    <ul id="image-list" class="images"></ul>
    <p id="images-empty" class="muted">The datastore holds no image yet.</p>
    <label class="upload" title="Upload a volume (.nii, .nii.gz, .nrrd, .mha) into the datastore">
      Upload a volume…
      <input type="file" id="upload-input" aria-label="Upload a volume into the datastore">
    </label>
    <label class="upload" title="Upload a DICOM series: pick its folder; the server assembles it into one NIfTI volume named after the folder">
      Upload a DICOM folder…
      <input type="file" id="upload-dicom" webkitdirectory multiple aria-label="Upload a DICOM folder into the datastore">
    </label>
  </section>
  <section aria-labelledby="model-title">
    <h2 id="model-title">Model</h2>
    <select id="model" aria-label="Model"></select>
    <button type="button" id="run" hidden aria-label="Run the automatic segmentation" title="Run the model on the whole image">Run segmentation</button>
    <div id="clicks" hidden>
      <p id="click-help" class="muted"></p>
      <p>Clicks: <strong id="click-count"></strong></p>
      <ol id="click-list" class="clicks"></ol>
      <button type="button" id="reset-clicks" aria-label="New object: reset the clicks" title="New object: forget the clicks so far">New object / reset clicks</button>
    </div>
  </section>
  <section aria-labelledby="label-title">
    <h2 id="label-title">Label</h2>
    <p id="label-state" class="muted"></p>
    <label title="Label overlay opacity">Opacity
      <input type="range" id="opacity" min="0" max="1" step="0.05" value="0.8" aria-label="Label overlay opacity">
    </label>
    <button type="button" id="save" aria-label="Save the label as final (Ctrl+S)" title="Save into the datastore as the final label (Ctrl+S)">Save</button>
    <button type="button" id="download" aria-label="Download the label as NIfTI" title="Download the label (.nii.gz)">Download</button>
  </section>
</aside>
<main class="view">
  <canvas id="gl" aria-label="Image views: axial, coronal, sagittal and 3D render"></canvas>
</main>
<footer class="bar">
  <span id="crosshair" title="Crosshair voxel (i, j, k) and intensity"></span>
  <span id="latency" title="The last model answer's times"></span>
  <progress id="progress" hidden max="1" aria-label="Progress"></progress>
  <span id="status" role="status"></span>
  <div id="alert" role="alert" hidden></div>
</footer>
</body>
</html>
`;
await writeFile(join(dist, 'index.html'), body);
console.log(`dist/index.html -> assets/${js}, assets/${css}`);

// The annotation page end to end in headless Chromium against a running gateway: login (when
// a key is set), upload, open, deepbet, DEXTR3D from six extreme points clicked on the canvas,
// brush/eraser/undo/redo, save, the saved label read back (grid, Dice), and canvas -> voxel on
// an oblique anisotropic volume checked against the voxels the server echoes (deepgrow).
// Every step asserts with a message and leaves a screenshot NN-step.png; a JSON summary of the
// measurements is printed at the end.
//
//   AIAA_URL=http://127.0.0.1:5077 AIAA_ROBEX=.../robex/atlas.nii.gz \
//   AIAA_ROBEX_MASK=.../robex/atlas_mask.nii.gz AIAA_SHOTS=/tmp/shots node test/browser/annotate.mjs
//
// Optional: AIAA_OBLIQUE (the oblique test volume; written there when missing), AIAA_API_KEY
// (log in through the page's form), CHROMIUM (the browser binary, default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { readFileSync, writeFileSync, mkdirSync, existsSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const URL_ = (process.env.AIAA_URL ?? 'http://127.0.0.1:5000').replace(/\/$/, '');
const ROBEX = need('AIAA_ROBEX');
const ROBEX_MASK = need('AIAA_ROBEX_MASK');
const SHOTS = process.env.AIAA_SHOTS ?? join(tmpdir(), 'aiaa-shots');
const KEY = process.env.AIAA_API_KEY;
// `full`: the whole session below; `login`: the key's form (a wrong key refused in words, then
// the right one), then an upload and opening the image, every call carrying the token.
const FLOW = process.env.AIAA_FLOW ?? 'full';
// Optional: a folder holding one DICOM series, uploaded as a folder.
const DICOM_DIR = process.env.AIAA_DICOM_DIR;
const run = Date.now().toString(36); // fresh datastore ids each run: no label left from before
const OBLIQUE = process.env.AIAA_OBLIQUE ?? join(tmpdir(), `oblique_${run}.nii.gz`);

// Headless Chromium with WebGL2 in software: SwiftShader through ANGLE (no GPU here).
const CHROMIUM_ARGS = [
  '--headless=new', // the full browser's headless mode (the old one has no WebGL2 on ANGLE)
  '--use-angle=swiftshader', // ANGLE on SwiftShader: WebGL2 on the CPU
  '--enable-unsafe-swiftshader', // Chromium >= 116 refuses SwiftShader for WebGL without it
  '--ignore-gpu-blocklist', // SwiftShader is on the blocklist of WebGL2 otherwise
  '--no-sandbox', // running as root in a container
  '--disable-dev-shm-usage', // small /dev/shm in containers
];

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name}`);
  return v;
}

// ---------- NIfTI in node (independent of the page's own reader and writer) ----------

function parseNifti(buf) {
  const b = buf[0] === 0x1f ? gunzipSync(buf) : buf;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  assert.equal(v.getInt32(0, true), 348, 'a little-endian NIfTI-1 file');
  const dims = [1, 2, 3].map((i) => v.getInt16(40 + 2 * i, true));
  const datatype = v.getInt16(70, true);
  const off = v.getFloat32(108, true);
  const n = dims[0] * dims[1] * dims[2];
  const read = { 2: (i) => v.getUint8(off + i), 4: (i) => v.getInt16(off + 2 * i, true), 16: (i) => v.getFloat32(off + 4 * i, true), 512: (i) => v.getUint16(off + 2 * i, true) }[datatype];
  assert.ok(read, `datatype ${datatype} read by the test`);
  const data = Float32Array.from({ length: n }, (_, i) => read(i));
  let affine;
  if (v.getInt16(254, true) > 0) {
    affine = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => v.getFloat32(280 + 16 * r + 4 * c, true)));
  } else {
    const [qb, qc, qd, ox, oy, oz] = [0, 1, 2, 3, 4, 5].map((i) => v.getFloat32(256 + 4 * i, true));
    const qa = Math.sqrt(Math.max(0, 1 - qb * qb - qc * qc - qd * qd));
    const p = [0, 1, 2, 3].map((i) => v.getFloat32(76 + 4 * i, true));
    const R = [[qa * qa + qb * qb - qc * qc - qd * qd, 2 * (qb * qc - qa * qd), 2 * (qb * qd + qa * qc)],
      [2 * (qb * qc + qa * qd), qa * qa + qc * qc - qb * qb - qd * qd, 2 * (qc * qd - qa * qb)],
      [2 * (qb * qd - qa * qc), 2 * (qc * qd + qa * qb), qa * qa + qd * qd - qc * qc - qb * qb]];
    const s = [p[1], p[2], p[3] * (p[0] < 0 ? -1 : 1)];
    affine = R.map((row, r) => [...row.map((x, c) => x * s[c]), [ox, oy, oz][r]]);
  }
  return { dims, affine, data };
}

/** The oblique anisotropic test volume: 64 x 64 x 24, 1 x 1 x 3 mm, rotated 20 deg about x and 15 about y, a bright ellipsoid. */
function writeOblique(path) {
  const dims = [64, 64, 24];
  const [a, b] = [(20 * Math.PI) / 180, (15 * Math.PI) / 180];
  const rx = [[1, 0, 0], [0, Math.cos(a), -Math.sin(a)], [0, Math.sin(a), Math.cos(a)]];
  const ry = [[Math.cos(b), 0, Math.sin(b)], [0, 1, 0], [-Math.sin(b), 0, Math.cos(b)]];
  const r = rx.map((row) => [0, 1, 2].map((c) => row.reduce((s, x, k) => s + x * ry[k][c], 0)));
  const sp = [1, 1, 3];
  const affine = r.map((row, i) => [...row.map((x, c) => x * sp[c]), [-30, -35, -20][i]]);
  const h = Buffer.alloc(352);
  h.writeInt32LE(348, 0);
  [3, ...dims, 1, 1, 1, 1].forEach((d, i) => h.writeInt16LE(d, 40 + 2 * i));
  h.writeInt16LE(16, 70);
  h.writeInt16LE(32, 72);
  [1, ...sp, 1, 1, 1, 1].forEach((p, i) => h.writeFloatLE(p, 76 + 4 * i));
  h.writeFloatLE(352, 108);
  h.writeFloatLE(1, 112);
  h.writeUInt8(2, 123);
  h.writeInt16LE(2, 254); // sform_code aligned
  affine.forEach((row, i) => row.forEach((x, c) => h.writeFloatLE(x, 280 + 16 * i + 4 * c)));
  h.write('n+1\0', 344, 'latin1');
  const img = Buffer.alloc(4 * dims[0] * dims[1] * dims[2]);
  let n = 0;
  for (let k = 0; k < dims[2]; k++) {
    for (let j = 0; j < dims[1]; j++) {
      for (let i = 0; i < dims[0]; i++, n++) {
        const e = ((i - 32) / 22) ** 2 + ((j - 30) / 18) ** 2 + ((k - 12) / 8) ** 2;
        img.writeFloatLE((e <= 1 ? 800 : 100) + ((i * 7 + j * 13 + k * 3) % 17), 4 * n);
      }
    }
  }
  writeFileSync(path, gzipSync(Buffer.concat([h, img])));
}

// ---------- PNG pixels of a screenshot (8-bit RGB/RGBA, not interlaced: what Chromium writes) ----------

function decodePng(png) {
  let pos = 8;
  let width;
  let height;
  let channels;
  const idat = [];
  while (pos < png.length) {
    const len = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    const data = png.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      channels = { 2: 3, 6: 4 }[data[9]];
      assert.ok(data[8] === 8 && channels && data[12] === 0, 'an 8-bit RGB(A) PNG');
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const c = raw[y * (stride + 1) + 1 + x];
      const left = x >= channels ? out[y * stride + x - channels] : 0;
      const up = y > 0 ? out[(y - 1) * stride + x] : 0;
      const ul = x >= channels && y > 0 ? out[(y - 1) * stride + x - channels] : 0;
      const p = left + up - ul;
      const paeth = Math.abs(p - left) <= Math.abs(p - up) && Math.abs(p - left) <= Math.abs(p - ul) ? left : Math.abs(p - up) <= Math.abs(p - ul) ? up : ul;
      out[y * stride + x] = (c + [0, left, up, (left + up) >> 1, paeth][f]) & 255;
    }
  }
  return { width, height, px: (x, y) => [0, 1, 2].map((c) => out[y * stride + x * channels + c]) };
}

// ---------- helpers ----------

const summary = {};
let shot = 0;
let page;

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } finally {
    shot += 1;
    await page.screenshot({ path: join(SHOTS, `${String(shot).padStart(2, '0')}-${name}.png`) });
  }
  console.log(`ok ${shot} ${name} (${Date.now() - t0} ms)`);
}

const state = (expr) => page.evaluate(expr);
const notBusy = () => page.waitForFunction(() => !window.aiaa.state.busy, null, { timeout: 120_000 });

/** Client position of voxel v in the tile of `view` (on the slice that tile shows now). */
async function at(v, view) {
  const p = await page.evaluate(([v, view]) => window.aiaa.voxelToCanvas(v[0], v[1], v[2], view), [v, view]);
  assert.ok(p, `voxel ${v} has a place in the ${view} tile`);
  return p;
}

/** Makes the tile of `view` show the slice through v: a navigate click on another tile. */
async function showSlice(v, view) {
  const other = { axial: 'coronal', coronal: 'axial', sagittal: 'axial' }[view];
  await page.keyboard.press('n');
  const [x, y] = await at(v, other);
  await page.mouse.click(x, y);
  const hit = await page.evaluate(([x, y]) => window.aiaa.canvasToVoxel(x, y), [x, y]);
  assert.ok(hit, `the navigate click at voxel ${v} lands on the ${other} tile`);
  // the tile's own slice stays; the other two coordinates are the voxel's
  hit.voxel.forEach((c, a) => a === hit.axis || assert.equal(c, v[a], `navigate click at ${v} in the ${other} tile: got ${hit.voxel}`));
}

/** Mean RGB over a 3x3 patch of a screenshot around a client position. */
function patch(img, [x, y]) {
  const sum = [0, 0, 0];
  for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) img.px(Math.round(x) + dx, Math.round(y) + dy).forEach((c, i) => { sum[i] += c / 9; });
  return sum.map(Math.round);
}

function extremePoints(mask) {
  const [nx, ny] = mask.dims;
  const pts = [];
  for (let axis = 0; axis < 3; axis++) {
    for (const pickMax of [false, true]) {
      let best = pickMax ? -1 : Infinity;
      let set = [];
      mask.data.forEach((val, n) => {
        if (!val) return;
        const v = [n % nx, Math.floor(n / nx) % ny, Math.floor(n / (nx * ny))];
        if (v[axis] === best) set.push(v);
        else if (pickMax ? v[axis] > best : v[axis] < best) { best = v[axis]; set = [v]; }
      });
      set.sort((a, b) => a[(axis + 1) % 3] - b[(axis + 1) % 3] || a[(axis + 2) % 3] - b[(axis + 2) % 3]);
      pts.push({ voxel: set[Math.floor(set.length / 2)], axis });
    }
  }
  return pts;
}

async function headers() {
  if (!KEY) return {};
  const res = await fetch(`${URL_}/auth/token`, { method: 'POST', body: new URLSearchParams({ username: '', password: KEY }) });
  return { Authorization: `Bearer ${(await res.json()).access_token}` };
}

/** Voxel indices whose label value changed between two snapshots taken in the page. */
async function labelChanges(run) {
  await state(() => { window.__before = window.aiaa.state.label.data.slice(); });
  await run();
  return state(() => {
    const out = [];
    const { data, dims } = window.aiaa.state.label;
    window.__before.forEach((b, n) => {
      if (b !== data[n]) out.push([n % dims[0], Math.floor(n / dims[0]) % dims[1], Math.floor(n / (dims[0] * dims[1])), b, data[n]]);
    });
    return out;
  });
}

/** Brush/eraser figures: the share of the disc's voxels (within r, in the plane) holding `value` after, and changes beyond r + 1. */
async function discStats(changes, center, r, axis, value) {
  const d = (v) => Math.hypot(...v.slice(0, 3).map((c, a) => (a === axis ? 0 : c - center[a])));
  assert.ok(changes.every((c) => c[axis] === center[axis]), 'the edit stays in the plane of the view clicked');
  const disc = [];
  const [p, q] = [0, 1, 2].filter((a) => a !== axis);
  for (let a = -r; a <= r; a++) {
    for (let b = -r; b <= r; b++) {
      if (a * a + b * b > r * r) continue;
      const v = [...center];
      v[p] += a;
      v[q] += b;
      disc.push(v);
    }
  }
  const values = await page.evaluate((disc) => disc.map((v) => window.aiaa.state.label.data[window.aiaa.state.label.index(...v)]), disc);
  return { within: values.filter((x) => x === value).length / disc.length, beyond: changes.filter((c) => d(c) > r + 1).length, changed: changes.length, disc: disc.length };
}

// ---------- the test ----------

mkdirSync(SHOTS, { recursive: true });
if (!existsSync(OBLIQUE)) writeOblique(OBLIQUE);
const robexName = `robex_${run}.nii.gz`;
const robexPath = join(tmpdir(), robexName);
copyFileSync(ROBEX, robexPath);
const robexId = `robex_${run}`;
const obliqueName = `oblique_${run}.nii.gz`;
const obliquePath = join(tmpdir(), obliqueName);
if (OBLIQUE !== obliquePath) copyFileSync(OBLIQUE, obliquePath);
const image = parseNifti(readFileSync(ROBEX));
const mask = parseNifti(readFileSync(ROBEX_MASK));
const oblique = parseNifti(readFileSync(obliquePath));

const started = Date.now();
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
const problems = [];
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  let refusalExpected = false; // the browser logs the wrong key's 400 answer as an error
  page.on('console', (m) => {
    if (refusalExpected && /status of 40[01]/.test(m.text())) return;
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  await step('open-page', async () => {
    await page.goto(`${URL_}/`);
    if (KEY) {
      await page.waitForSelector('#login:not([hidden])');
      refusalExpected = true;
      await page.fill('#login-key', `${KEY}-wrong`);
      await page.click('#login button[type=submit]');
      await page.waitForSelector('#alert:not([hidden])');
      const said = await page.textContent('#alert');
      assert.match(said, /key/i, `a wrong key is refused in words: ${said}`);
      assert.ok(await page.isVisible('#login'), 'the form stays for another try');
      refusalExpected = false;
      await page.fill('#login-key', KEY);
      await page.click('#login button[type=submit]');
    }
    await page.waitForFunction(() => document.querySelector('#model option[value=segmentation_mri_brain]'), null, { timeout: 30_000 });
    const webgl2 = await state(() => Boolean(document.createElement('canvas').getContext('webgl2')));
    assert.ok(webgl2, 'WebGL2 is available');
  });

  await step('upload', async () => {
    await page.setInputFiles('#upload-input', robexPath);
    await page.waitForSelector(`button.image[data-id="${robexId}"]`, { timeout: 60_000 });
  });

  await step('open-image', async () => {
    await page.click(`button.image[data-id="${robexId}"]`);
    await page.waitForFunction(() => window.aiaa.state.sessionId && !window.aiaa.state.busy, null, { timeout: 60_000 });
    assert.deepEqual(await state(() => window.aiaa.state.grid.dims), image.dims, 'the page sees the image grid');
    // the first image after a fresh navigation to the image's address
    await page.reload();
    await page.waitForFunction(() => window.aiaa.timings.firstImage !== null && window.aiaa.state.sessionId, null, { timeout: 60_000 });
    summary.firstImageMs = Math.round(await state(() => window.aiaa.timings.firstImage));
  });

  if (FLOW === 'full') {
    // the brain's centre voxel and one outside the head, on the same axial slice
    const centre = (() => {
      const s = [0, 0, 0];
      let n = 0;
      const [nx, ny] = mask.dims;
      mask.data.forEach((v, i) => { if (v) { s[0] += i % nx; s[1] += Math.floor(i / nx) % ny; s[2] += Math.floor(i / (nx * ny)); n++; } });
      return s.map((x) => Math.round(x / n));
    })();
    const outside = [3, centre[1], centre[2]];

    let before;
    await step('segmentation', async () => {
      await showSlice(centre, 'axial');
      before = decodePng(await page.screenshot());
      await page.selectOption('#model', 'segmentation_mri_brain');
      await page.click('#run');
      await page.waitForFunction(() => window.aiaa.timings.answers.length === 1, null, { timeout: 120_000 });
      await notBusy();
      const after = decodePng(await page.screenshot());
      const [pin, pout] = [await at(centre, 'axial'), await at(outside, 'axial')];
      const inB = patch(before, pin);
      const inA = patch(after, pin);
      const outA = patch(after, pout);
      const outB = patch(before, pout);
      summary.overlayPixels = { insideBefore: inB, insideAfter: inA, outsideBefore: outB, outsideAfter: outA };
      assert.ok(inA[0] - inA[1] > 40 && inB[0] - inB[1] < 10, `the red overlay is drawn inside the brain (before ${inB}, after ${inA})`);
      assert.ok(Math.abs(outA[0] - outA[1]) < 10 && outA.every((c, i) => Math.abs(c - outB[i]) < 6), `no overlay outside the head (before ${outB}, after ${outA})`);
      summary.deepbet = await state(() => window.aiaa.timings.answers[0]);
      await state(() => { window.__deepbet = window.aiaa.state.label.data.slice(); });
    });

    await step('dextr3d', async () => {
      await page.selectOption('#model', 'annotation_mri_brain');
      const points = extremePoints(mask);
      const viewFor = ['axial', 'sagittal', 'coronal']; // extremes along i, j, k
      let clickedAt = 0;
      for (const [n, { voxel, axis }] of points.entries()) {
        const view = viewFor[axis];
        await showSlice(voxel, view);
        await page.keyboard.press('p');
        const [x, y] = await at(voxel, view);
        clickedAt = Date.now();
        await page.mouse.click(x, y);
        const count = await page.textContent('#click-count');
        assert.equal(count, `${n + 1}/6`, 'the counter follows the points');
      }
      await page.waitForFunction(() => window.aiaa.timings.answers.length === 2, null, { timeout: 120_000 });
      const seenMs = Date.now() - clickedAt;
      await notBusy();
      const sent = await state(() => window.aiaa.state.clicks.foreground);
      assert.deepEqual(sent, points.map((p) => p.voxel), 'the six clicks are the six extreme points, voxel for voxel');
      const answer = await state(() => window.aiaa.timings.answers[1]);
      summary.dextr3d = { ...answer, testSeenMs: seenMs, ratio: +(answer.clickToOverlayMs / (answer.serverMs ?? answer.requestMs)).toFixed(3) };
      const differs = await state(() => window.aiaa.state.label.data.reduce((s, v, i) => s + (v !== window.__deepbet[i] ? 1 : 0), 0));
      assert.ok(differs > 0, 'the DEXTR3D overlay differs from deepbet\'s');
      summary.dextr3d.voxelsDifferentFromDeepbet = differs;
    });

    await step('brush-eraser', async () => {
      const r = 4;
      const spot = [12, centre[1], centre[2]];
      await showSlice(spot, 'axial');
      await page.keyboard.press('b');
      await page.keyboard.press(']'); // 3 -> 4
      assert.equal(await state(() => window.aiaa.state.radius), r, '] grows the radius');
      const [x, y] = await at(spot, 'axial');
      const brushed = await labelChanges(() => page.mouse.click(x, y));
      summary.brush = await discStats(brushed, spot, r, 2, 1);
      assert.ok(summary.brush.within >= 0.95 && summary.brush.beyond === 0, `brush: ${JSON.stringify(summary.brush)}`);
      await page.keyboard.press('e');
      const erased = await labelChanges(() => page.mouse.click(x, y));
      summary.eraser = await discStats(erased, spot, r, 2, 0);
      assert.ok(summary.eraser.within >= 0.95 && summary.eraser.beyond === 0, `eraser: ${JSON.stringify(summary.eraser)}`);
      // a dragged correction inside the brain (label 2: it changes voxels), undone and redone from the keyboard
      await page.keyboard.press('b');
      await page.selectOption('#paint-value', '2');
      const [x0, y0] = await at(centre, 'axial');
      const [x1, y1] = await at([centre[0] + 12, centre[1], centre[2]], 'axial');
      const stroke = await labelChanges(async () => {
        await page.mouse.move(x0, y0);
        await page.mouse.down();
        await page.mouse.move(x1, y1, { steps: 8 });
        await page.mouse.up();
      });
      const undone = await labelChanges(() => page.keyboard.press('Control+z'));
      assert.equal(undone.length, stroke.length, 'Ctrl+Z undoes the whole stroke');
      const redone = await labelChanges(() => page.keyboard.press('Control+y'));
      assert.equal(redone.length, stroke.length, 'Ctrl+Y redoes it');
      assert.ok(stroke.length > 0, 'the stroke changed the label');
      summary.stroke = { changed: stroke.length };
    });

    await step('save', async () => {
      await page.click('#save');
      await page.waitForSelector(`button.image[data-id="${robexId}"] .badge.done`, { timeout: 60_000 });
      const res = await fetch(`${URL_}/datastore/label?label=${robexId}&tag=final`, { headers: await headers() });
      assert.equal(res.status, 200, 'the saved label can be read back');
      const saved = parseNifti(Buffer.from(await res.arrayBuffer()));
      assert.deepEqual(saved.dims, image.dims, 'the saved label has the image\'s dims');
      saved.affine.forEach((row, r) => row.forEach((v, c) => assert.ok(Math.abs(v - image.affine[r][c]) < 1e-3, `affine [${r}][${c}] ${v} vs ${image.affine[r][c]}`)));
      let inter = 0;
      let a = 0;
      let b = 0;
      saved.data.forEach((v, i) => { const p = v > 0; const q = mask.data[i] > 0; a += p; b += q; inter += p && q; });
      summary.dice = +((2 * inter) / (a + b)).toFixed(4);
      assert.ok(summary.dice >= 0.9, `Dice of the saved label ${summary.dice} >= 0.90`);
    });

    await step('oblique-deepgrow', async () => {
      await page.setInputFiles('#upload-input', obliquePath);
      const id = obliqueName.replace('.nii.gz', '');
      await page.waitForSelector(`button.image[data-id="${id}"]`, { timeout: 60_000 });
      await page.click(`button.image[data-id="${id}"]`);
      await page.waitForFunction((id) => window.aiaa.state.imageId === id && window.aiaa.state.sessionId && !window.aiaa.state.busy, id, { timeout: 60_000 });
      assert.deepEqual(await state(() => window.aiaa.state.grid.dims), oblique.dims);
      await page.selectOption('#model', 'deepgrow_mri_brain');
      const clicks = [[[30, 28, 12], 'axial', false], [[40, 33, 9], 'coronal', false], [[25, 36, 14], 'sagittal', false], [[8, 8, 5], 'axial', true]];
      const echoed = [];
      for (const [n, [voxel, view, background]] of clicks.entries()) {
        await showSlice(voxel, view);
        await page.keyboard.press('p');
        const [x, y] = await at(voxel, view);
        if (background) await page.keyboard.down('Shift');
        await page.mouse.click(x, y);
        if (background) await page.keyboard.up('Shift');
        await page.waitForFunction((n) => window.aiaa.timings.answers.length === n, 3 + n, { timeout: 120_000 });
        await notBusy();
        const answer = await state(() => window.aiaa.lastAnswer);
        const list = background ? answer.background : answer.foreground;
        assert.deepEqual(list[list.length - 1], voxel, `the server echoes voxel ${voxel} clicked in the ${view} view (got ${JSON.stringify(list)})`);
        echoed.push({ view, voxel, background, echoed: list[list.length - 1] });
      }
      summary.oblique = { clicks: echoed, deepgrowMs: (await state(() => window.aiaa.timings.answers.slice(3))).map((a) => a.requestMs) };
    });

    await step('bad-file', async () => {
      // Not a volume, under a volume's name: the server refuses it and the page says why.
      const broken = join(tmpdir(), `broken_${run}.nii.gz`);
      writeFileSync(broken, Buffer.from('this is not an image, only text that claims to be one'));
      refusalExpected = true;
      await page.setInputFiles('#upload-input', broken);
      await page.waitForSelector('#alert:not([hidden])', { timeout: 60_000 });
      const said = await page.textContent('#alert');
      assert.match(said, /could not be read|not .*image|400/i, `the refusal is shown in words: ${said}`);
      summary.badFileMessage = said;
      assert.equal(await page.$(`button.image[data-id="broken_${run}"]`), null, 'nothing was stored');
      refusalExpected = false;
    });

    if (DICOM_DIR) {
      await step('dicom-folder', async () => {
        // A folder of DICOM slices picked as a folder: one series, assembled by the server.
        const id = basename(DICOM_DIR);
        await page.setInputFiles('#upload-dicom', DICOM_DIR);
        await page.waitForSelector(`button.image[data-id="${id}"]`, { timeout: 60_000 });
        // The oblique volume's deepgrow label was never saved: the page asks before leaving it.
        let asked = null;
        page.once('dialog', (d) => { asked = d.message(); d.accept(); });
        await page.click(`button.image[data-id="${id}"]`);
        await page.waitForFunction((id) => window.aiaa.state.imageId === id && window.aiaa.state.sessionId && !window.aiaa.state.busy, id, { timeout: 60_000 });
        assert.match(asked ?? '', /unsaved changes/, `leaving an unsaved label asks first (asked: ${asked})`);
        const dims = await state(() => window.aiaa.state.grid.dims);
        const slices = readdirSync(DICOM_DIR).length;
        assert.equal(dims[2], slices, `the series' ${slices} slices are one volume (${dims})`);
        summary.dicom = { id, dims };
      });
    }
  }

  summary.totalSeconds = Math.round((Date.now() - started) / 1000);
  assert.deepEqual(problems, [], `no console errors or CSP violations: ${problems.join(' | ')}`);
} finally {
  summary.consoleProblems = problems;
  // One line: tests/tests/web_page.rs reads the last line starting with `{`.
  console.log(JSON.stringify(summary));
  await browser.close();
}

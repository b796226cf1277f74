// The annotation page's wiring: login, the datastore list and uploads, opening an image (view +
// server session + stored label), the models (automatic, six extreme points, clicks), the
// editing tools on the canvas, save and download. Each job lives in its own module; this one
// only connects them to the DOM.
//
// For the browser test the page exposes `window.aiaa` (read-only use; the test still drives the
// page with real mouse and keyboard events):
//   nv                         the Niivue instance (screenSlices, mm2frac, frac2canvasPos, ...)
//   state                      {imageId, grid, label (LabelVolume), sessionId, model, clicks, dirty}
//   canvasToVoxel(x, y)        client (CSS) position -> {voxel: [i, j, k], view, axis} or null
//   voxelToCanvas(i, j, k, v)  image voxel -> client position in the tile of view v, on the
//                              slice that tile shows now
//   lastAnswer                 the params JSON of the last model answer (points echoed, crop)
//   timings                    {firstImage: ms from navigation start to the first image drawn,
//                               answers: [{model, requestMs, serverMs, clickToOverlayMs}]}
import './style.css';
import { Api, ApiError, imageIdOf, extensionOf, IMAGE_EXTENSIONS } from './api.js';
import { LabelVolume, maskToImageGrid } from './label.js';
import { writeNifti, readNifti, gzip } from './nifti.js';
import { readModelAnswer } from './multipart.js';
import { Viewer, PRESETS } from './viewer.js';

const $ = (id) => document.getElementById(id);
const api = new Api();
const viewer = new Viewer($('gl'));

const state = {
  datastore: {}, // id -> {image: {ext, info}, labels: {tag: ...}}
  models: [],
  imageId: null,
  imageName: null,
  imageBytes: null, // kept to restart an expired session
  grid: null,
  label: null,
  sessionId: null,
  model: null,
  tool: 'navigate',
  radius: 3,
  paintValue: 1,
  clicks: { foreground: [], background: [] },
  dirty: false,
  busy: false,
};
const timings = { firstImage: null, answers: [] };
const aiaa = {
  nv: viewer.nv,
  state,
  timings,
  lastAnswer: null,
  canvasToVoxel: (x, y) => viewer.voxelAt(x, y),
  voxelToCanvas: (i, j, k, view) => viewer.voxelToClient([i, j, k], view),
};
window.aiaa = aiaa;

// ---------- messages and progress ----------

function say(text) {
  $('status').textContent = text;
}

function alertError(err) {
  $('alert').textContent = err instanceof Error ? err.message : String(err);
  $('alert').hidden = false;
  say('');
}

function clearAlert() {
  $('alert').hidden = true;
  $('alert').textContent = '';
}

/** Runs a long task with the progress bar (fraction given through `progress`, else indeterminate). */
async function busy(text, task) {
  const bar = $('progress');
  state.busy = true;
  document.body.classList.add('busy');
  bar.removeAttribute('value');
  bar.hidden = false;
  say(text);
  clearAlert();
  const progress = (f) => {
    bar.value = f;
    say(`${text} ${Math.round(f * 100)} %`);
  };
  try {
    return await task(progress);
  } finally {
    state.busy = false;
    document.body.classList.remove('busy');
    bar.hidden = true;
  }
}

// ---------- login ----------

api.onUnauthorized = () => showLogin();

function showLogin() {
  $('login').hidden = false;
  $('login-key').focus();
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    await api.login($('login-key').value);
    $('login-key').value = '';
    $('login').hidden = true;
    clearAlert();
    await ready();
  } catch (err) {
    alertError(err);
  }
});

// ---------- datastore list and upload ----------

async function loadLists() {
  const [models, objects] = await Promise.all([api.models(), api.datastore()]);
  state.models = models;
  state.datastore = objects;
  renderModels();
  renderImages();
}

function renderImages() {
  const list = $('image-list');
  list.replaceChildren();
  const ids = Object.keys(state.datastore).sort();
  $('images-empty').hidden = ids.length > 0;
  for (const id of ids) {
    const labelled = Boolean(state.datastore[id].labels?.final);
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'image';
    button.dataset.id = id;
    button.setAttribute('aria-label', `Open ${id} (${labelled ? 'has a final label' : 'no label yet'})`);
    button.title = `Open ${id}`;
    if (id === state.imageId) button.setAttribute('aria-current', 'true');
    const name = document.createElement('span');
    name.textContent = id;
    const badge = document.createElement('span');
    badge.className = labelled ? 'badge done' : 'badge';
    badge.textContent = labelled ? 'final' : 'no label';
    button.append(name, badge);
    button.addEventListener('click', () => openImage(id).catch(alertError));
    li.append(button);
    list.append(li);
  }
}

$('upload-input').accept = IMAGE_EXTENSIONS.join(',');
$('upload-input').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  e.target.value = '';
  if (!file) return;
  try {
    if (!extensionOf(file.name)) throw new Error(`${file.name}: upload a single-file volume (${IMAGE_EXTENSIONS.join(', ')})`);
    const id = imageIdOf(file.name);
    await busy(`Uploading ${file.name}…`, (progress) => api.uploadImage(id, file, progress));
    state.datastore = await api.datastore();
    renderImages();
    say(`Uploaded ${file.name} as ${id}`);
  } catch (err) {
    alertError(err);
  }
});

// A DICOM folder: every file in it goes up as one series; the image is named after the folder.
$('upload-dicom').addEventListener('change', async (e) => {
  const files = [...e.target.files];
  e.target.value = '';
  if (files.length === 0) return;
  try {
    const folder = files[0].webkitRelativePath.split('/')[0] || 'dicom';
    const id = imageIdOf(folder);
    await busy(`Uploading ${files.length} DICOM files of ${folder}…`, (progress) => api.uploadSeries(id, files, progress));
    state.datastore = await api.datastore();
    renderImages();
    say(`Uploaded the DICOM series ${folder} (${files.length} files) as ${id}`);
  } catch (err) {
    alertError(err);
  }
});

// ---------- opening an image ----------

async function openImage(id) {
  if (state.dirty && !confirm(`The label of ${state.imageId} has unsaved changes. Open ${id} anyway?`)) return;
  const entry = state.datastore[id];
  if (!entry) throw new Error(`${id} is not in the datastore`);
  const name = `${id}${entry.image.ext ?? ''}`;
  await busy(`Opening ${id}…`, async () => {
    const bytes = await api.imageBytes(id);
    const session = api.session(bytes, name); // the server decodes while the page does
    session.catch(() => {}); // awaited below; a failure to show the image comes first
    state.grid = await viewer.open(bytes.slice(0), name);
    if (timings.firstImage === null) timings.firstImage = performance.now();
    state.imageId = id;
    state.imageName = name;
    state.imageBytes = bytes;
    state.label = new LabelVolume(state.grid.dims);
    resetClicks();
    if (entry.labels?.final) {
      const mask = await readNifti(await api.labelBytes(id, 'final'));
      state.label = new LabelVolume(state.grid.dims, maskToImageGrid(mask, state.grid));
    }
    viewer.showLabel(state.label.data);
    state.dirty = false;
    state.sessionId = await session;
  });
  history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  renderImages();
  renderLabelState();
  say(`${id}: ${state.grid.dims.join(' × ')} voxels`);
}

// ---------- models ----------

const ROUTE = { annotation: 'dextr3d', deepgrow: 'deepgrow' };

function renderModels() {
  const select = $('model');
  select.replaceChildren(new Option('— pick a model —', ''));
  for (const m of state.models) {
    const kind = { segmentation: 'automatic', annotation: '6 extreme points', deepgrow: 'clicks' }[m.type];
    if (kind) select.append(new Option(`${m.name} (${kind})`, m.name));
  }
  if (state.model) select.value = state.model.name;
}

$('model').addEventListener('change', (e) => {
  state.model = state.models.find((m) => m.name === e.target.value) ?? null;
  resetClicks();
  const type = state.model?.type;
  $('run').hidden = type !== 'segmentation';
  $('clicks').hidden = !ROUTE[type];
  $('click-help').textContent = type === 'annotation'
    ? 'Click the six extreme points of the object (left, right, front, back, top, bottom), each in the view where it lies.'
    : type === 'deepgrow'
      ? 'Click inside the object (foreground); Shift+click or right-click outside it (background).'
      : '';
  if (ROUTE[type]) setTool('points');
  nameLabelValues(state.model?.labels ?? []);
});

/** The paint values named after the model's labels (value i is `labels[i - 1]`, as AIAA says). */
function nameLabelValues(labels) {
  for (const option of $('paint-value').options) {
    const v = Number(option.value);
    option.textContent = `${option.dataset.colour ??= option.textContent}${labels[v - 1] ? `: ${labels[v - 1]}` : ''}`;
  }
}

function resetClicks() {
  state.clicks = { foreground: [], background: [] };
  renderClicks();
}

$('reset-clicks').addEventListener('click', resetClicks);

function renderClicks() {
  const list = $('click-list');
  list.replaceChildren();
  const dextr = state.model?.type === 'annotation';
  for (const [kind, points] of Object.entries(state.clicks)) {
    for (const p of points) {
      const li = document.createElement('li');
      li.className = kind;
      li.textContent = `${dextr ? 'point' : kind} [${p.join(', ')}]`;
      list.append(li);
    }
  }
  $('click-count').textContent = dextr
    ? `${state.clicks.foreground.length}/6`
    : `${state.clicks.foreground.length} fg, ${state.clicks.background.length} bg`;
}

/** A model call on the session; an expired session (440) is started again once. */
async function onSession(call) {
  if (!state.sessionId) throw new Error('open an image first');
  try {
    return await call(state.sessionId);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 440) throw err;
    state.sessionId = await api.session(state.imageBytes, state.imageName);
    return call(state.sessionId);
  }
}

/** The server's own time for an answer: the sum of its stages (`params.latencies.total`, s). */
function serverTime(params) {
  const total = params?.latencies?.total;
  return typeof total === 'number' ? Math.round(total * 1000) : null;
}

/** Puts a model's mask on the label (one undoable edit) and records the answer's timings. */
async function applyAnswer(maskBytes, params, started, requestMs) {
  const t0 = performance.now();
  const mask = await readNifti(maskBytes);
  if (state.label.replace(maskToImageGrid(mask, state.grid))) state.dirty = true;
  const t1 = performance.now();
  viewer.showLabel(state.label.data);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t2 = performance.now();
  const clickToOverlayMs = Math.round(t2 - started);
  aiaa.lastAnswer = params;
  const answer = {
    model: state.model.name,
    requestMs: Math.round(requestMs),
    serverMs: serverTime(params),
    decodeMs: Math.round(t1 - t0), // mask file -> label
    drawMs: Math.round(t2 - t1), // label -> overlay on screen
    clickToOverlayMs,
  };
  timings.answers.push(answer);
  const server = answer.serverMs === null ? '' : ` (server ${answer.serverMs} ms)`;
  $('latency').textContent = `${answer.model}: ${answer.requestMs} ms request${server}, ${clickToOverlayMs} ms to overlay`;
  renderLabelState();
}

$('run').addEventListener('click', (e) => runSegmentation(e.timeStamp).catch(alertError));

async function runSegmentation(started) {
  const model = state.model;
  await busy(`Running ${model.name}…`, async () => {
    const t0 = performance.now();
    const answer = await onSession((s) => api.model('segmentation', model.name, s, {}));
    const requestMs = performance.now() - t0;
    const { params, file } = readModelAnswer(answer.bytes, answer.contentType);
    await applyAnswer(file, params, started, requestMs);
  });
  say(`${model.name} done`);
}

let pendingClicks = false; // clicks made while an answer was on its way: sent after it

async function sendClicks(started) {
  if (state.busy) {
    pendingClicks = true;
    return;
  }
  const model = state.model;
  const route = ROUTE[model.type];
  const params = route === 'dextr3d'
    ? { points: state.clicks.foreground }
    : { foreground: state.clicks.foreground, background: state.clicks.background };
  await busy(`Running ${model.name}…`, async () => {
    const t0 = performance.now();
    const answer = await onSession((s) => api.model(route, model.name, s, params));
    const requestMs = performance.now() - t0;
    const { params: echoed, file } = readModelAnswer(answer.bytes, answer.contentType);
    await applyAnswer(file, echoed, started, requestMs);
  });
  say(`${model.name} answered`);
  if (pendingClicks) {
    pendingClicks = false;
    await sendClicks(performance.now());
  }
}

function addClick(voxel, background, started) {
  const type = state.model?.type;
  if (!ROUTE[type]) throw new Error('pick a DEXTR3D or deepgrow model for clicks');
  if (type === 'annotation') {
    if (background) throw new Error('DEXTR3D takes six extreme points, no background clicks');
    if (state.clicks.foreground.length >= 6) state.clicks.foreground = [];
    state.clicks.foreground.push(voxel);
    renderClicks();
    if (state.clicks.foreground.length === 6) return sendClicks(started);
    return undefined;
  }
  state.clicks[background ? 'background' : 'foreground'].push(voxel);
  renderClicks();
  return sendClicks(started);
}

// ---------- tools on the canvas ----------

const TOOLS = ['navigate', 'points', 'brush', 'eraser', 'fill'];

function setTool(tool) {
  state.tool = tool;
  for (const t of TOOLS) $(`tool-${t}`).setAttribute('aria-pressed', String(t === tool));
  $('gl').dataset.tool = tool;
}

for (const t of TOOLS) $(`tool-${t}`).addEventListener('click', () => setTool(t));

function setRadius(r) {
  state.radius = Math.max(0, Math.min(30, r));
  $('radius').value = state.radius;
  $('radius-value').textContent = `${state.radius} vox`;
}

$('radius').addEventListener('input', (e) => setRadius(Number(e.target.value)));
$('paint-value').addEventListener('change', (e) => {
  state.paintValue = Number(e.target.value);
});

let stroke = null; // the brush/eraser stroke in progress: {pointerId, tile, last voxel}
let drawQueued = false;

function redrawLabel() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    viewer.showLabel(state.label.data);
  });
}

function paintAlong(from, to, axis) {
  const value = state.tool === 'eraser' ? 0 : state.paintValue;
  const steps = Math.max(1, ...to.map((c, a) => Math.abs(c - from[a])));
  for (let s = 1; s <= steps; s++) {
    const v = from.map((c, a) => Math.round(c + ((to[a] - c) * s) / steps));
    state.label.disc(v, state.radius, axis, value);
  }
}

const canvas = $('gl');

// Pointer events come before niivue's mouse events; preventDefault on pointerdown keeps niivue
// from also moving the crosshair or changing contrast while a tool edits.
canvas.addEventListener('pointerdown', (e) => {
  canvas.focus({ preventScroll: true });
  if (state.tool === 'navigate' || !state.grid) return;
  const hit = viewer.voxelAt(e.clientX, e.clientY);
  if (!hit) return; // the 3D render or the background: niivue's own handling
  e.preventDefault();
  clearAlert();
  try {
    if (state.tool === 'points') {
      viewer.moveCrosshair(hit.voxel);
      addClick(hit.voxel, e.shiftKey || e.button === 2, e.timeStamp)?.catch(alertError);
    } else if (e.button === 0 && state.tool === 'fill') {
      state.label.fill(hit.voxel, hit.axis, state.paintValue);
      if (state.label.commit()) state.dirty = true;
      redrawLabel();
      renderLabelState();
    } else if (e.button === 0) {
      stroke = { pointerId: e.pointerId, tile: viewer.tileAt(viewer.toCanvasPixels(e.clientX, e.clientY)), last: hit.voxel, axis: hit.axis };
      canvas.setPointerCapture(e.pointerId);
      paintAlong(hit.voxel, hit.voxel, hit.axis);
      redrawLabel();
    }
  } catch (err) {
    alertError(err);
  }
});

canvas.addEventListener('pointermove', (e) => {
  if (!stroke || e.pointerId !== stroke.pointerId) return;
  if (viewer.tileAt(viewer.toCanvasPixels(e.clientX, e.clientY)) !== stroke.tile) return;
  const hit = viewer.voxelAt(e.clientX, e.clientY);
  if (!hit) return;
  paintAlong(stroke.last, hit.voxel, stroke.axis);
  stroke.last = hit.voxel;
  redrawLabel();
});

function endStroke(e) {
  if (!stroke || e.pointerId !== stroke.pointerId) return;
  stroke = null;
  if (state.label.commit()) state.dirty = true;
  renderLabelState();
}

canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);
canvas.addEventListener('contextmenu', (e) => {
  if (state.tool !== 'navigate') e.preventDefault();
});

function undo() {
  if (state.label?.undo()) {
    state.dirty = true;
    redrawLabel();
    renderLabelState();
  }
}

function redo() {
  if (state.label?.redo()) {
    state.dirty = true;
    redrawLabel();
    renderLabelState();
  }
}

$('undo').addEventListener('click', undo);
$('redo').addEventListener('click', redo);

// ---------- keyboard ----------

const KEYS = { n: 'navigate', p: 'points', b: 'brush', e: 'eraser', f: 'fill' };

document.addEventListener('keydown', (e) => {
  const target = e.target;
  if (target instanceof HTMLInputElement && target.type !== 'range') return;
  if (target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
  const key = e.key.toLowerCase();
  if (e.ctrlKey || e.metaKey) {
    if (key === 'z' && !e.shiftKey) undo();
    else if (key === 'y' || (key === 'z' && e.shiftKey)) redo();
    else if (key === 's') save().catch(alertError);
    else return;
    e.preventDefault();
    return;
  }
  if (e.altKey) return;
  if (KEYS[key]) setTool(KEYS[key]);
  else if (key === '[') setRadius(state.radius - 1);
  else if (key === ']') setRadius(state.radius + 1);
  else return;
  e.preventDefault();
});

// ---------- label: display, save, download ----------

function renderLabelState() {
  const label = state.label;
  $('undo').disabled = !label?.undoStack.length;
  $('redo').disabled = !label?.redoStack.length;
  $('save').disabled = !label;
  $('download').disabled = !label;
  const voxels = label ? Object.values(label.counts()).reduce((a, b) => a + b, 0) : 0;
  $('label-state').textContent = !label ? 'no image open' : `${voxels} labelled voxels${state.dirty ? ', unsaved changes' : ', saved'}`;
}

$('opacity').addEventListener('input', (e) => viewer.setLabelOpacity(Number(e.target.value)));

async function labelFile() {
  const { grid, label } = state;
  return gzip(writeNifti({ dims: grid.dims, affine: grid.affine, data: label.data }));
}

async function save() {
  if (!state.label) return;
  const id = state.imageId;
  const bytes = await labelFile();
  await busy(`Saving the label of ${id}…`, (progress) => api.saveLabel(id, bytes, progress));
  state.dirty = false;
  state.datastore = await api.datastore();
  renderImages();
  renderLabelState();
  say(`Saved the label of ${id} as final`);
}

$('save').addEventListener('click', () => save().catch(alertError));

$('download').addEventListener('click', async () => {
  try {
    const url = URL.createObjectURL(new Blob([await labelFile()], { type: 'application/gzip' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `${state.imageId}_label.nii.gz`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    alertError(err);
  }
});

window.addEventListener('beforeunload', (e) => {
  if (state.dirty) e.preventDefault();
});

// ---------- window/level and crosshair readout ----------

const preset = $('preset');
for (const [key, p] of Object.entries(PRESETS)) preset.append(new Option(p.label, key));
preset.value = 'auto';
preset.addEventListener('change', () => viewer.setPreset(preset.value));

viewer.onLocation = (at) => {
  $('crosshair').textContent = at ? `voxel ${at.voxel.join(', ')} · value ${Number(at.value.toPrecision(5))}` : '';
};

// ---------- start ----------

async function start() {
  setTool('navigate');
  setRadius(state.radius);
  renderLabelState();
  await viewer.attach();
  if ((await api.authEnabled()) && !api.token) {
    showLogin();
    return;
  }
  await ready();
}

/** After login (when needed): the lists, then the image the address names (#id), if any. */
async function ready() {
  await loadLists();
  const id = decodeURIComponent(location.hash.slice(1));
  if (id && state.datastore[id]) await openImage(id);
}

start().catch(alertError);

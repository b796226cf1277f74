// The niivue wrapper: shows the image (multiplanar tiles + 3D render), draws the label as
// niivue's drawing layer (one colour per label value), sets window/level, and maps canvas
// positions to the image's own voxels and back. The mapping goes through world millimetres:
// niivue's screenXY2TextureFrac/frac2mm give the clicked point in mm (niivue reorients images to
// RAS internally, so its voxels are not the image's), then geometry.js's inverse affine gives
// the image's voxel. The label and the server see the same voxels.
import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, MULTIPLANAR_TYPE } from '@niivue/niivue';
import { makeGrid } from './geometry.js';
import { maybeGunzip } from './nifti.js';

/** The 2D views niivue tiles, by its `axCorSag` code. */
export const VIEWS = ['axial', 'coronal', 'sagittal'];

/** Window/level presets: width and level, or the robust range niivue computed at load. */
export const PRESETS = {
  soft: { label: 'CT soft tissue (W400 L40)', width: 400, level: 40 },
  lung: { label: 'CT lung (W1500 L-600)', width: 1500, level: -600 },
  bone: { label: 'CT bone (W1800 L400)', width: 1800, level: 400 },
  auto: { label: 'MR auto (robust range)' },
};

export class Viewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.nv = new Niivue({
      backColor: [0.08, 0.09, 0.1, 1],
      crosshairColor: [0.2, 0.8, 1, 1],
      show3Dcrosshair: true,
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      multiplanarLayout: MULTIPLANAR_TYPE.GRID,
      dragAndDropEnabled: false,
      isResizeCanvas: true,
      loadingText: '',
    });
    this.grid = null; // the image's grid: dims, affine (native voxel order)
    this.rasToNative = null; // niivue's drawing voxel (RAS order) -> the image's voxel index
    this.onLocation = () => {};
    this.nv.onLocationChange = () => this.onLocation(this.crosshair());
  }

  async attach() {
    await this.nv.attachToCanvas(this.canvas);
    this.nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
    // No ambient occlusion on the label in the 3D render: 18 more texture reads a ray step
    // made each frame take seconds without a GPU (SwiftShader), and the label reads as well.
    this.nv.setRenderDrawAmbientOcclusion(0);
  }

  /**
   * Shows an image from its file bytes (the name's extension tells niivue the format). A
   * `.gz` file is inflated here, every member of it: the server writes gzip in parallel
   * members, and niivue's own gunzip (the browser's DecompressionStream) stops at the first.
   */
  async open(buffer, name) {
    const nv = this.nv;
    if (/\.gz$/i.test(name)) {
      const raw = await maybeGunzip(new Uint8Array(buffer));
      buffer = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength ? raw.buffer : raw.slice().buffer;
      name = name.replace(/\.gz$/i, '');
    }
    const volume = await NVImage.loadFromUrl({ url: name, name, buffer });
    for (const v of [...nv.volumes]) nv.removeVolume(v);
    if (nv.drawBitmap) nv.closeDrawing();
    nv.addVolume(volume);
    const hdr = volume.hdr;
    this.grid = makeGrid([hdr.dims[1], hdr.dims[2], hdr.dims[3]], hdr.affine.map((r) => [...r]));
    this.rasToNative = rasLookup(volume);
    nv.createEmptyDrawing();
    this.setPreset('auto');
    await nextFrame(); // niivue drew the volume; the frame is on screen after this one
    return this.grid;
  }

  /** Copies the label (image voxel order) into niivue's drawing layer and redraws. */
  showLabel(data) {
    const bitmap = this.nv.drawBitmap;
    const lut = this.rasToNative;
    for (let n = 0; n < lut.length; n++) bitmap[n] = data[lut[n]];
    this.nv.refreshDrawing(true);
  }

  setLabelOpacity(opacity) {
    this.nv.setDrawOpacity(opacity);
  }

  /** Window/level preset by key of PRESETS. */
  setPreset(key) {
    const vol = this.nv.volumes[0];
    if (!vol) return;
    const p = PRESETS[key];
    if (p.width) {
      vol.cal_min = p.level - p.width / 2;
      vol.cal_max = p.level + p.width / 2;
    } else {
      vol.cal_min = vol.robust_min;
      vol.cal_max = vol.robust_max;
    }
    this.nv.updateGLVolume();
  }

  /** Canvas pixel (device pixels) of a client (CSS) position. */
  toCanvasPixels(clientX, clientY) {
    const r = this.canvas.getBoundingClientRect();
    const s = this.canvas.width / r.width;
    return [(clientX - r.left) * s, (clientY - r.top) * s];
  }

  /** The index in nv.screenSlices of the 2D tile under a canvas pixel, or -1. */
  tileAt([x, y]) {
    return this.nv.screenSlices.findIndex((t) => {
      if (t.axCorSag > SLICE_TYPE.SAGITTAL) return false;
      let [l, top, w, h] = t.leftTopWidthHeight;
      if (w < 0) [l, w] = [l + w, -w]; // a mirrored tile
      return x >= l && x <= l + w && y >= top && y <= top + h;
    });
  }

  /**
   * The image voxel [i, j, k] under a client position, the view clicked ('axial', 'coronal',
   * 'sagittal') and the image axis that view holds fixed; null off the image or on the render.
   */
  voxelAt(clientX, clientY) {
    if (!this.grid) return null;
    const pos = this.toCanvasPixels(clientX, clientY);
    const tile = this.tileAt(pos);
    if (tile < 0) return null;
    const frac = this.nv.screenXY2TextureFrac(pos[0], pos[1], tile, true);
    if (frac[0] < 0) return null;
    const voxel = this.grid.toVoxel(Array.from(this.nv.frac2mm(frac, 0, true)).slice(0, 3));
    if (!voxel) return null;
    const axCorSag = this.nv.screenSlices[tile].axCorSag;
    return { voxel, view: VIEWS[axCorSag], axis: this.fixedAxis(axCorSag) };
  }

  /** The image's voxel axis (0 i, 1 j, 2 k) a view keeps fixed: niivue's RAS axis mapped back. */
  fixedAxis(axCorSag) {
    const rasAxis = [2, 1, 0][axCorSag]; // axial fixes S (z), coronal A (y), sagittal R (x)
    return Math.abs(this.nv.volumes[0].permRAS[rasAxis]) - 1;
  }

  /**
   * Client (CSS) position where voxel [i, j, k] is drawn in the tile of `view`, projected onto
   * the slice that tile shows now (the tile's own slice position is the crosshair's).
   */
  voxelToClient(voxel, view) {
    const nv = this.nv;
    const code = VIEWS.indexOf(view);
    const tile = nv.screenSlices.find((t) => t.axCorSag === code);
    if (!tile || !this.grid) return null;
    const frac = nv.mm2frac(this.grid.toWorld(voxel), 0, true);
    const mm = nv.frac2mm(frac, 0, false); // niivue's slice-plane millimetres (isSliceMM off)
    const screen = [[0, 1], [0, 2], [1, 2]][code].map((a) => mm[a]);
    const fx = (screen[0] - tile.leftTopMM[0]) / tile.fovMM[0];
    const fy = (screen[1] - tile.leftTopMM[1]) / tile.fovMM[1];
    let [l, top, w, h] = tile.leftTopWidthHeight;
    const mirror = w < 0;
    if (mirror) [l, w] = [l + w, -w];
    const x = l + (mirror ? 1 - fx : fx) * w;
    const y = top + (1 - fy) * h;
    const r = this.canvas.getBoundingClientRect();
    const s = this.canvas.width / r.width;
    return [r.left + x / s, r.top + y / s];
  }

  /** Moves the crosshair to an image voxel (its slices follow). */
  moveCrosshair(voxel) {
    this.nv.scene.crosshairPos = this.nv.mm2frac(this.grid.toWorld(voxel), 0, true);
    this.nv.createOnLocationChange();
    this.nv.drawScene();
  }

  /** The crosshair as an image voxel and the image's value there (scaled), or null. */
  crosshair() {
    const vol = this.nv.volumes[0];
    if (!vol || !this.grid) return null;
    const voxel = this.grid.toVoxel(Array.from(this.nv.frac2mm(this.nv.scene.crosshairPos, 0, true)).slice(0, 3));
    if (!voxel) return null;
    const [nx, ny] = this.grid.dims;
    const raw = vol.img[voxel[0] + nx * (voxel[1] + ny * voxel[2])];
    const slope = vol.hdr.scl_slope || 1;
    return { voxel, value: raw * slope + (vol.hdr.scl_inter || 0) };
  }
}

/** For each voxel of niivue's RAS-ordered drawing, the index of the image voxel it shows. */
function rasLookup(volume) {
  const d = volume.dimsRAS;
  const step = volume.img2RASstep;
  const start = volume.img2RASstart;
  const lut = new Int32Array(d[1] * d[2] * d[3]);
  let n = 0;
  for (let z = 0; z < d[3]; z++) {
    for (let y = 0; y < d[2]; y++) {
      const base = start[0] + start[1] + start[2] + y * step[1] + z * step[2];
      for (let x = 0; x < d[1]; x++) lut[n++] = base + x * step[0];
    }
  }
  return lut;
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

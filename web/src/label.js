// The label being annotated: one byte a voxel on the image's own grid, in the image's own voxel
// order (i fastest), with the editing tools (brush, eraser, 2D fill) and undo/redo. Pure: no
// DOM, no WebGL, so every edit rule is unit-tested in node. The viewer only displays `data`.
import { sameAffine, worldToVoxel, voxelToWorld, nearestVoxel, inBounds } from './geometry.js';

// The two in-plane voxel axes for an edit in the plane where `axis` (0 = i, 1 = j, 2 = k) is
// fixed: axial views fix k, coronal j, sagittal i (for an image stored near RAS order).
const PLANE = { 0: [1, 2], 1: [0, 2], 2: [0, 1] };

export class LabelVolume {
  /** dims [nx, ny, nz]; data, when given, is taken as is (length nx*ny*nz). */
  constructor(dims, data) {
    this.dims = [...dims];
    const n = dims[0] * dims[1] * dims[2];
    if (data && data.length !== n) throw new Error(`a label of ${data.length} voxels does not fit a ${dims.join('x')} grid`);
    this.data = data ?? new Uint8Array(n);
    this.undoStack = [];
    this.redoStack = [];
    this.pending = null; // the edit being made (one pointer stroke): voxel index -> old value
  }

  index(i, j, k) {
    return i + this.dims[0] * (j + this.dims[1] * k);
  }

  // Every change goes through here so that it lands in the edit being recorded.
  set(idx, value) {
    const old = this.data[idx];
    if (old === value) return;
    if (!this.pending.has(idx)) this.pending.set(idx, old);
    this.data[idx] = value;
  }

  /** Starts one undoable edit (a pointer stroke, a fill, a model's answer). */
  begin() {
    if (!this.pending) this.pending = new Map();
  }

  /** Ends the edit: pushes it on the undo stack when it changed anything. Returns that. */
  commit() {
    const pending = this.pending;
    this.pending = null;
    if (!pending || pending.size === 0) return false;
    const idx = Int32Array.from(pending.keys());
    const before = Uint8Array.from(pending.values());
    const after = Uint8Array.from(idx, (i) => this.data[i]);
    this.undoStack.push({ idx, before, after });
    this.redoStack = [];
    return true;
  }

  /**
   * Paints value (0 erases) on a disc of radius r voxels in the plane where `axis` is fixed
   * through `center` [i, j, k]: the voxels of that plane whose centres lie within r of the
   * centre (distance measured in voxels of the plane, inclusive).
   */
  disc(center, r, axis, value) {
    this.begin();
    const [a, b] = PLANE[axis];
    const v = [...center];
    const reach = Math.floor(r);
    for (let db = -reach; db <= reach; db++) {
      for (let da = -reach; da <= reach; da++) {
        if (da * da + db * db > r * r) continue;
        v[a] = center[a] + da;
        v[b] = center[b] + db;
        if (!inBounds(this.dims, v)) continue;
        this.set(this.index(v[0], v[1], v[2]), value);
      }
    }
  }

  /**
   * 2D flood fill: the 4-connected region of the plane (where `axis` is fixed) that holds the
   * seed's value becomes `value`. Filling inside a drawn outline fills the outline.
   */
  fill(seed, axis, value) {
    this.begin();
    if (!inBounds(this.dims, seed)) return;
    const target = this.data[this.index(...seed)];
    if (target === value) return;
    const [a, b] = PLANE[axis];
    const na = this.dims[a];
    const nb = this.dims[b];
    const v = [...seed];
    const seen = new Uint8Array(na * nb);
    const stack = [seed[a] + na * seed[b]];
    seen[stack[0]] = 1;
    while (stack.length) {
      const p = stack.pop();
      const pa = p % na;
      const pb = (p - pa) / na;
      v[a] = pa;
      v[b] = pb;
      this.set(this.index(v[0], v[1], v[2]), value);
      for (const [qa, qb] of [[pa - 1, pb], [pa + 1, pb], [pa, pb - 1], [pa, pb + 1]]) {
        if (qa < 0 || qb < 0 || qa >= na || qb >= nb) continue;
        const q = qa + na * qb;
        if (seen[q]) continue;
        v[a] = qa;
        v[b] = qb;
        if (this.data[this.index(v[0], v[1], v[2])] !== target) continue;
        seen[q] = 1;
        stack.push(q);
      }
    }
  }

  /** Replaces the whole label (a model's answer, a stored label) as one undoable edit. */
  replace(data) {
    if (data.length !== this.data.length) throw new Error('the new label has another size than the image');
    this.begin();
    for (let i = 0; i < data.length; i++) if (data[i] !== this.data[i]) this.set(i, data[i]);
    return this.commit();
  }

  undo() {
    return this.step(this.undoStack, this.redoStack, 'before');
  }

  redo() {
    return this.step(this.redoStack, this.undoStack, 'after');
  }

  step(from, to, which) {
    this.commit();
    const edit = from.pop();
    if (!edit) return false;
    const values = edit[which];
    edit.idx.forEach((idx, n) => {
      this.data[idx] = values[n];
    });
    to.push(edit);
    return true;
  }

  /** How many voxels hold each value > 0: {value: count}. */
  counts() {
    const counts = {};
    for (const v of this.data) if (v) counts[v] = (counts[v] ?? 0) + 1;
    return counts;
  }
}

/**
 * The server's mask (dims, affine, one value a voxel) put on the image's grid. The server
 * answers on the image's grid; when it also keeps the image's voxel order the bytes are taken
 * as they are, else (an axis flipped or permuted, e.g. a NRRD image answered as NIfTI) each
 * mask voxel goes to the image voxel at the same world position. A mask on another grid is
 * refused rather than resampled: it would not be the answer the server gave.
 */
export function maskToImageGrid(mask, grid) {
  const [mx, my, mz] = mask.dims;
  if (mask.dims.every((d, a) => d === grid.dims[a]) && sameAffine(mask.affine, grid.affine)) {
    return Uint8Array.from(mask.data, (v) => (v > 255 ? 255 : v));
  }
  const out = new Uint8Array(grid.dims[0] * grid.dims[1] * grid.dims[2]);
  let placed = 0;
  let n = 0;
  for (let k = 0; k < mz; k++) {
    for (let j = 0; j < my; j++) {
      for (let i = 0; i < mx; i++, n++) {
        const v = nearestVoxel(worldToVoxel(grid.inverse, voxelToWorld(mask.affine, [i, j, k])));
        if (!inBounds(grid.dims, v)) continue;
        out[v[0] + grid.dims[0] * (v[1] + grid.dims[1] * v[2])] = Math.min(mask.data[n], 255);
        placed++;
      }
    }
  }
  if (placed !== out.length || mx * my * mz !== out.length) {
    throw new Error(`the server's mask (${mask.dims.join('x')}) is not on the image's grid (${grid.dims.join('x')})`);
  }
  return out;
}

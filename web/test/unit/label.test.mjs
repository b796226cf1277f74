// The label's editing rules: brush and eraser discs (radius in voxels of the clicked view's
// plane, centres within r inclusive), 2D fill, undo/redo, and a server mask put on the grid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabelVolume, maskToImageGrid } from '../../src/label.js';
import { makeGrid } from '../../src/geometry.js';

const dims = [40, 30, 20];
const voxelsOf = (label) => {
  const out = [];
  for (let k = 0; k < dims[2]; k++) for (let j = 0; j < dims[1]; j++) for (let i = 0; i < dims[0]; i++) if (label.data[label.index(i, j, k)]) out.push([i, j, k]);
  return out;
};

for (const [axis, view] of [[2, 'axial'], [1, 'coronal'], [0, 'sagittal']]) {
  test(`brush disc in the ${view} plane: every voxel within r set, none beyond`, () => {
    for (const r of [0, 1, 2.5, 4, 7]) {
      const label = new LabelVolume(dims);
      const c = [20, 15, 10];
      label.disc(c, r, axis, 1);
      assert.equal(label.commit(), true);
      const set = voxelsOf(label);
      for (const v of set) {
        assert.equal(v[axis], c[axis], `stays in the plane (r ${r})`);
        const d2 = v.reduce((s, x, a) => s + (x - c[a]) ** 2, 0);
        assert.ok(d2 <= r * r, `voxel ${v} beyond r ${r}`);
      }
      let within = 0;
      const reach = Math.floor(r);
      for (let a = -reach; a <= reach; a++) for (let b = -reach; b <= reach; b++) if (a * a + b * b <= r * r) within++;
      assert.equal(set.length, within, `all ${within} voxels within r ${r} set`);
    }
  });
}

test('the disc is clipped at the grid edges', () => {
  const label = new LabelVolume(dims);
  label.disc([0, 0, 0], 3, 2, 2);
  label.commit();
  assert.equal(voxelsOf(label).length, 11); // the quarter of the radius-3 disc on the grid: 4 + 3 + 3 + 1
});

test('eraser clears a disc and only that', () => {
  const label = new LabelVolume(dims, new Uint8Array(dims[0] * dims[1] * dims[2]).fill(1));
  label.disc([10, 10, 5], 3, 2, 0);
  label.commit();
  const zeros = label.data.length - voxelsOf(label).length;
  assert.equal(zeros, 29); // disc of radius 3: 29 voxels
  assert.equal(label.data[label.index(10, 10, 5)], 0);
  assert.equal(label.data[label.index(10, 14, 5)], 1);
  assert.equal(label.data[label.index(10, 10, 6)], 1);
});

test('fill: inside an outline fills the inside only, and only on that slice', () => {
  const label = new LabelVolume(dims);
  for (let t = 5; t <= 15; t++) {
    for (const [i, j] of [[t, 5], [t, 15], [5, t], [15, t]]) label.data[label.index(i, j, 3)] = 1;
  }
  label.fill([10, 10, 3], 2, 1);
  label.commit();
  assert.equal(voxelsOf(label).length, 11 * 11);
  label.fill([0, 0, 3], 2, 2); // outside: the rest of the slice
  label.commit();
  assert.equal(label.counts()[2], dims[0] * dims[1] - 121);
  assert.equal(label.data[label.index(0, 0, 4)], 0);
});

test('undo and redo restore each edit exactly; a new edit clears redo', () => {
  const label = new LabelVolume(dims);
  label.disc([10, 10, 10], 2, 2, 1);
  label.disc([12, 10, 10], 2, 2, 1); // same stroke: one edit
  label.commit();
  const afterStroke = label.data.slice();
  label.fill([0, 0, 0], 1, 3);
  label.commit();
  const afterFill = label.data.slice();
  assert.equal(label.undo(), true);
  assert.deepEqual(label.data, afterStroke);
  assert.equal(label.undo(), true);
  assert.equal(voxelsOf(label).length, 0);
  assert.equal(label.undo(), false);
  assert.equal(label.redo(), true);
  assert.deepEqual(label.data, afterStroke);
  assert.equal(label.redo(), true);
  assert.deepEqual(label.data, afterFill);
  label.undo();
  label.disc([1, 1, 1], 0, 0, 4);
  label.commit();
  assert.equal(label.redo(), false);
  assert.equal(label.commit(), false, 'an empty edit is not recorded');
});

test('replace is one undoable edit', () => {
  const label = new LabelVolume(dims);
  const mask = new Uint8Array(label.data.length).fill(1);
  assert.equal(label.replace(mask), true);
  assert.equal(label.replace(mask), false, 'no change, no edit');
  label.undo();
  assert.equal(voxelsOf(label).length, 0);
});

test('a server mask on the same grid is taken as it is; a flipped one is mapped by position', () => {
  const affine = [[1, 0, 0, -20], [0, 1, 0, -15], [0, 0, 2, -20], [0, 0, 0, 1]];
  const grid = makeGrid(dims, affine);
  const data = new Uint8Array(dims[0] * dims[1] * dims[2]);
  data[3 + 40 * (4 + 30 * 5)] = 1;
  assert.deepEqual(maskToImageGrid({ dims, affine, data }, grid), data);
  // the same mask stored with i flipped: voxel i -> nx-1-i, and the affine says so
  const flipped = new Uint8Array(data.length);
  flipped[36 + 40 * (4 + 30 * 5)] = 1;
  const flippedAffine = [[-1, 0, 0, -20 + 39], [0, 1, 0, -15], [0, 0, 2, -20], [0, 0, 0, 1]];
  assert.deepEqual(maskToImageGrid({ dims, affine: flippedAffine, data: flipped }, grid), data);
  assert.throws(() => maskToImageGrid({ dims: [10, 10, 10], affine, data: new Uint8Array(1000) }, grid), /not on the image's grid/);
});

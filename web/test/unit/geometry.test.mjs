// The canvas -> voxel mapping's last step: world (mm) -> the image's own voxel, on oblique and
// anisotropic grids, round trip for every edge voxel and a lattice inside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { voxelToWorld, invert, worldToVoxel, nearestVoxel, makeGrid, spacing, inBounds } from '../../src/geometry.js';
import { obliqueAffine, matmul, scale } from './affines.mjs';

function edgeAndLattice(dims, step) {
  const out = [];
  for (let k = 0; k < dims[2]; k++) {
    for (let j = 0; j < dims[1]; j++) {
      for (let i = 0; i < dims[0]; i++) {
        const edge = [i, j, k].some((v, a) => v === 0 || v === dims[a] - 1);
        if (edge || (i % step === 0 && j % step === 0 && k % step === 0)) out.push([i, j, k]);
      }
    }
  }
  return out;
}

for (const [name, affine, dims] of [
  ['oblique 1x1x3 mm', obliqueAffine(), [64, 64, 24]],
  ['anisotropic 1x1x3 mm axis-aligned', scale(1, 1, 3), [40, 30, 12]],
  ['ROBEX-like 1.5 mm', [[1.5, 0, 0, -86], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]], [116, 150, 155]],
]) {
  test(`voxel -> world -> voxel is the identity (${name})`, () => {
    const grid = makeGrid(dims, affine);
    const voxels = edgeAndLattice(dims, 5);
    assert.ok(voxels.length > 1000, 'enough voxels checked');
    for (const v of voxels) assert.deepEqual(grid.toVoxel(grid.toWorld(v)), v, `voxel ${v}`);
  });

  test(`a point within half a voxel maps to that voxel (${name})`, () => {
    const grid = makeGrid(dims, affine);
    for (const v of edgeAndLattice(dims, 7)) {
      const off = v.map((c, a) => c + [0.49, -0.49, 0.3][a]);
      assert.deepEqual(grid.toVoxel(voxelToWorld(affine, off)), v, `voxel ${v} + offset`);
    }
  });
}

test('points off the grid give null, and bounds are exact', () => {
  const grid = makeGrid([64, 64, 24], obliqueAffine());
  assert.equal(grid.toVoxel(voxelToWorld(obliqueAffine(), [-1, 0, 0])), null);
  assert.equal(grid.toVoxel(voxelToWorld(obliqueAffine(), [0, 0, 24])), null);
  assert.equal(inBounds([2, 2, 2], [1, 1, 1]), true);
  assert.equal(inBounds([2, 2, 2], [2, 1, 1]), false);
});

test('inverse times affine is the identity; spacing reads the columns', () => {
  const a = obliqueAffine();
  const id = matmul(a, invert(a));
  id.forEach((row, r) => row.forEach((v, c) => assert.ok(Math.abs(v - (r === c ? 1 : 0)) < 1e-12)));
  spacing(a).forEach((s, i) => assert.ok(Math.abs(s - [1, 1, 3][i]) < 1e-12));
  assert.throws(() => invert(scale(1, 0, 1)), /singular/);
});

test('nearest voxel rounds halves consistently up', () => {
  assert.deepEqual(nearestVoxel([-0.5, 0.5, 1.4999]), [0, 1, 1]);
  assert.deepEqual(worldToVoxel(invert(scale(2, 2, 2)), [4, 6, 8]), [2, 3, 4]);
});

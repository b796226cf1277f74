// Voxel <-> world (mm) through a 4x4 affine, the image grid's bounds, and the nearest voxel.
// Pure functions: the page, the unit tests and the browser test share them, so the canvas ->
// voxel mapping the page uses is the one the tests check. An affine is 4 rows of 4 numbers
// (NIfTI's sform layout): world = A * [i, j, k, 1], i the fastest voxel axis.

/** World coordinates (mm) of the centre of voxel [i, j, k] (fractional voxels allowed). */
export function voxelToWorld(affine, [i, j, k]) {
  return [0, 1, 2].map((r) => affine[r][0] * i + affine[r][1] * j + affine[r][2] * k + affine[r][3]);
}

/** The inverse of a 4x4 affine (general 4x4 inverse by Gauss-Jordan with partial pivoting). */
export function invert(affine) {
  const n = 4;
  const m = affine.map((row, r) => [...row.map(Number), ...[0, 1, 2, 3].map((c) => (c === r ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let pivot = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[pivot][c])) pivot = r;
    if (Math.abs(m[pivot][c]) < 1e-12) throw new Error('the affine is singular: the image has no usable geometry');
    [m[c], m[pivot]] = [m[pivot], m[c]];
    const p = m[c][c];
    for (let k = 0; k < 2 * n; k++) m[c][k] /= p;
    for (let r = 0; r < n; r++) {
      if (r === c || m[r][c] === 0) continue;
      const f = m[r][c];
      for (let k = 0; k < 2 * n; k++) m[r][k] -= f * m[c][k];
    }
  }
  return m.map((row) => row.slice(n));
}

/** Fractional voxel coordinates of a world point, given the affine's inverse. */
export function worldToVoxel(inverse, [x, y, z]) {
  return [0, 1, 2].map((r) => inverse[r][0] * x + inverse[r][1] * y + inverse[r][2] * z + inverse[r][3]);
}

/** The voxel whose centre is nearest (ties go up, so -0.5 and 0.5 never both give 0). */
export function nearestVoxel(v) {
  return v.map((c) => Math.floor(c + 0.5));
}

/** Whether integer voxel [i, j, k] lies on a grid of dims [nx, ny, nz]. */
export function inBounds(dims, [i, j, k]) {
  return i >= 0 && j >= 0 && k >= 0 && i < dims[0] && j < dims[1] && k < dims[2];
}

/** Voxel size along each voxel axis: the lengths of the affine's first three columns. */
export function spacing(affine) {
  return [0, 1, 2].map((c) => Math.hypot(affine[0][c], affine[1][c], affine[2][c]));
}

/** Whether two affines agree to `tolerance` in every entry (mm; same grid up to float noise). */
export function sameAffine(a, b, tolerance = 1e-3) {
  return a.every((row, r) => row.every((v, c) => Math.abs(v - b[r][c]) <= tolerance));
}

/**
 * A grid: dims and affine with its inverse computed once. `toVoxel` maps world mm to the
 * nearest voxel, or null off the grid.
 */
export function makeGrid(dims, affine) {
  const inverse = invert(affine);
  return {
    dims: [...dims],
    affine: affine.map((row) => [...row]),
    inverse,
    toWorld: (v) => voxelToWorld(affine, v),
    toVoxel(mm) {
      const v = nearestVoxel(worldToVoxel(inverse, mm));
      return inBounds(dims, v) ? v : null;
    },
  };
}

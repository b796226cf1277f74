// Affines shared by the unit tests (not a test file itself).
const rad = (d) => (d * Math.PI) / 180;
export const matmul = (a, b) => a.map((row) => b[0].map((_, c) => row.reduce((s, v, k) => s + v * b[k][c], 0)));
const rotX = (t) => [[1, 0, 0, 0], [0, Math.cos(t), -Math.sin(t), 0], [0, Math.sin(t), Math.cos(t), 0], [0, 0, 0, 1]];
const rotY = (t) => [[Math.cos(t), 0, Math.sin(t), 0], [0, 1, 0, 0], [-Math.sin(t), 0, Math.cos(t), 0], [0, 0, 0, 1]];
export const scale = (x, y, z) => [[x, 0, 0, 0], [0, y, 0, 0], [0, 0, z, 0], [0, 0, 0, 1]];

/** Rotated 20 deg about x and 15 deg about y, 1 x 1 x 3 mm, an origin off zero; LPS-like flip. */
export function obliqueAffine() {
  const a = matmul(matmul(rotX(rad(20)), rotY(rad(15))), scale(-1, 1, 3));
  a[0][3] = 31.5;
  a[1][3] = -40.25;
  a[2][3] = -12;
  return a;
}

